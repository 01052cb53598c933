"""Every event Callboard publishes, one frozen dataclass per type, and their registry.

Field names are the JSON keys of the envelope (a trailing underscore is dropped: `from_` is
sent as `from`); a field left None is not sent. Nested objects are TypedDicts, so they are
typed here yet go on the wire as the plain dicts they are. API-NOTES "Events" documents these
types; tests/unit/events/test_event_types.py keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from callboard.events.base import Event, LegEvent, LegOrRoomEvent, RoomEvent, event_keys

# ---- nested payloads ----


class Cdr(TypedDict):
    reason: str
    duration_total: float  # seconds since the leg was created
    duration_answered: float  # seconds since it was answered (0 if never)


class Quality(TypedDict):
    mos_score: float | None  # None (null) when no MOS could be computed
    rtp_packets_received: int
    rtp_packets_lost: int
    rtp_jitter_ms: float


class ChannelSpan(TypedDict):
    """One participant's channel of a multi-channel room recording."""

    channel: int  # 0-based, in join order
    start_ms: int
    end_ms: int


# ---- legs ----


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRinging(LegEvent):
    """Inbound: `from`, `to`, `sip_headers` (the INVITE's X-* headers). Outbound: `uri` as the
    API caller gave it and `from`, each only when known."""

    type = "leg.ringing"
    from_: str | None = None
    to: str | None = None
    sip_headers: dict[str, str] | None = None
    uri: str | None = None
    replaces_leg_id: str | None = None  # inbound with Replaces: the leg it takes over


@dataclass(frozen=True, slots=True, kw_only=True)
class _LegStateEvent(LegEvent):
    leg_type: str  # LegType value: sip_inbound, sip_outbound, webrtc


@dataclass(frozen=True, slots=True, kw_only=True)
class LegEarlyMedia(_LegStateEvent):
    type = "leg.early_media"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegConnected(_LegStateEvent):
    type = "leg.connected"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegHold(_LegStateEvent):
    type = "leg.hold"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegUnhold(_LegStateEvent):
    type = "leg.unhold"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegDisconnected(_LegStateEvent):
    """The one event every leg ends with."""

    type = "leg.disconnected"
    cdr: Cdr
    quality: Quality | None = None  # None when no media arrived


@dataclass(frozen=True, slots=True, kw_only=True)
class LegJoinedRoom(LegEvent):
    type = "leg.joined_room"
    room_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegLeftRoom(LegEvent):
    type = "leg.left_room"
    room_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegMuted(LegEvent):
    type = "leg.muted"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegUnmuted(LegEvent):
    type = "leg.unmuted"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegDeaf(LegEvent):
    type = "leg.deaf"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegUndeaf(LegEvent):
    type = "leg.undeaf"


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived(LegEvent):
    type = "dtmf.received"
    digit: str
    seq: int  # per-leg counter from 1


@dataclass(frozen=True, slots=True, kw_only=True)
class _SpeakingEvent(LegEvent):
    room_id: str | None = None  # only while the leg is in a room


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakingStarted(_SpeakingEvent):
    type = "speaking.started"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeakingStopped(_SpeakingEvent):
    type = "speaking.stopped"


# ---- transfer ----


@dataclass(frozen=True, slots=True, kw_only=True)
class LegTransferInitiated(LegEvent):
    type = "leg.transfer_initiated"
    kind: str  # blind or attended
    target: str
    replaces_leg_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LegTransferProgress(LegEvent):
    """One NOTIFY of the transferee: the status its call to the target reached."""

    type = "leg.transfer_progress"
    status_code: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegTransferCompleted(LegEvent):
    type = "leg.transfer_completed"
    status_code: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegTransferFailed(LegEvent):
    type = "leg.transfer_failed"
    status_code: int | None = None
    reason: str | None = None
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LegTransferRequested(LegEvent):
    """The far end asked us by REFER to call `target` (attended: replacing its dialog
    `replaces_call_id`); `declined` when we refused, else `target_leg_id` once dialled."""

    type = "leg.transfer_requested"
    kind: str  # blind or attended
    target: str
    replaces_call_id: str | None = None
    declined: bool
    target_leg_id: str | None = None  # accepted: the leg we dialled to the target


# ---- answering-machine detection ----


@dataclass(frozen=True, slots=True, kw_only=True)
class AmdResult(LegEvent):
    type = "amd.result"
    result: str  # human, machine, no_speech, not_sure
    initial_silence_ms: int
    greeting_duration_ms: int
    total_analysis_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AmdBeep(LegEvent):
    """The voicemail beep ended `beep_ms` after the machine verdict; or, with `timeout`, none
    came within `beep_timeout` (`waited_ms`)."""

    type = "amd.beep"
    beep_ms: int | None = None
    timeout: bool | None = None
    waited_ms: int | None = None


# ---- playbacks and recordings (of a leg or of a room) ----


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackStarted(LegOrRoomEvent):
    type = "playback.started"
    playback_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackFinished(LegOrRoomEvent):
    type = "playback.finished"
    playback_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackError(LegOrRoomEvent):
    type = "playback.error"
    playback_id: str
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingStarted(LegOrRoomEvent):
    type = "recording.started"
    file: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingPaused(LegOrRoomEvent):
    type = "recording.paused"
    file: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingResumed(LegOrRoomEvent):
    type = "recording.resumed"
    file: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingFinished(LegOrRoomEvent):
    """The files are final (and uploaded, with S3). Beyond `file`, what applies is sent."""

    type = "recording.finished"
    file: str  # the s3:// URL once uploaded, else the local path
    duration_ms: int | None = None  # None when the file could not be finalised
    local_file: str | None = None  # with S3: where the file was written first
    multi_channel_file: str | None = None
    channels: dict[str, ChannelSpan] | None = None  # participant -> its channel
    participant_files: dict[str, str] | None = None  # participant -> its mono file
    omitted_legs: list[str] | None = None  # participants beyond the multi-channel file's limit
    error: str | None = None  # finalising or uploading went wrong (the files may still exist)


# ---- rooms ----


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomCreated(RoomEvent):
    type = "room.created"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomDeleted(RoomEvent):
    """A room's last event (after its recording's recording.finished)."""

    type = "room.deleted"


# ---- text-to-speech ----


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsStarted(LegOrRoomEvent):
    """The first synthesised audio is being played."""

    type = "tts.started"
    tts_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsFinished(LegOrRoomEvent):
    """`reason`: completed (all played), stopped (DELETE), hangup (the leg ended),
    room_deleted (the room went away)."""

    type = "tts.finished"
    tts_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsFailed(LegOrRoomEvent):
    """Synthesis failed: `error` is the provider's message."""

    type = "tts.error"
    tts_id: str
    error: str


# ---- speech-to-text ----


@dataclass(frozen=True, slots=True, kw_only=True)
class SttText(LegEvent):
    """What a leg said; `room_id` only for room STT. Empty texts are never sent."""

    type = "stt.text"
    text: str
    is_final: bool
    room_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SttFailed(LegEvent):
    """A leg's transcription ended on an error (after one reconnect): not in the seed or
    API-NOTES, so that a failed stream does not just fall silent."""

    type = "stt.error"
    error: str
    room_id: str | None = None


# ---- AI agents ----


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConnected(LegOrRoomEvent):
    """The provider accepted the session. `conversation_id`: ElevenLabs' conversation id,
    VAPI's call id, Deepgram's Welcome request id, Pipecat's websocket URL."""

    type = "agent.connected"
    provider: str
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentDisconnected(LegOrRoomEvent):
    """Every session ends with one, also one that never connected. `reason`: stopped (DELETE),
    hangup (the leg ended), room_deleted, room_empty, provider_closed, error (with `error`)."""

    type = "agent.disconnected"
    provider: str
    reason: str
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentUserTranscript(LegOrRoomEvent):
    """What the provider heard the caller say (a final text)."""

    type = "agent.user_transcript"
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentResponse(LegOrRoomEvent):
    """What the agent answered, as text."""

    type = "agent.agent_response"
    text: str


# ---- the registry ----

_EVENT_CLASSES: tuple[type[Event], ...] = (
    LegRinging,
    LegEarlyMedia,
    LegConnected,
    LegHold,
    LegUnhold,
    LegDisconnected,
    LegJoinedRoom,
    LegLeftRoom,
    LegMuted,
    LegUnmuted,
    LegDeaf,
    LegUndeaf,
    DtmfReceived,
    SpeakingStarted,
    SpeakingStopped,
    AmdResult,
    AmdBeep,
    LegTransferInitiated,
    LegTransferProgress,
    LegTransferCompleted,
    LegTransferFailed,
    LegTransferRequested,
    PlaybackStarted,
    PlaybackFinished,
    PlaybackError,
    TtsStarted,
    TtsFinished,
    TtsFailed,
    SttText,
    SttFailed,
    RecordingStarted,
    RecordingPaused,
    RecordingResumed,
    RecordingFinished,
    AgentConnected,
    AgentDisconnected,
    AgentUserTranscript,
    AgentResponse,
    RoomCreated,
    RoomDeleted,
)

EVENT_TYPES: dict[str, type[Event]] = {cls.type: cls for cls in _EVENT_CLASSES}
"""Every event type published, by its `type` name; `event_keys(cls)` lists the keys an event
of that type may carry (its scope's ids, then its fields): what documentation is made from."""


def _check_registry() -> None:
    # At import, so that a mistake fails every test run rather than one publish.
    if len(EVENT_TYPES) != len(_EVENT_CLASSES):
        raise TypeError("two event classes share a type name")
    for cls in _EVENT_CLASSES:
        event_keys(cls)  # raises for a field that would overwrite an envelope key


_check_registry()
