"""VoiceBlender's Python SDK (``voiceblender`` 0.15.1) as a Callboard client.

Two instances call each other over loopback SIP. The SDK's sync client drives every leg, room,
playback and recording call on both; its VSI event stream feeds the SDK's event hub, which
the test waits on. A raw VSI client beside each stream keeps every frame, and at the end every
one must decode with the SDK's ``parse_event`` into its own typed class, with the very same
sequence reaching the SDK (its stream drops a frame it cannot parse). A second, async test
covers the async client and the SDK's VSI commands on rooms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from voiceblender import (
    AddLegRequest,
    AMDParams,
    AnswerLegRequest,
    APIError,
    Client,
    CreateLegRequest,
    CreateRoomRequest,
    DeleteLegRequest,
    DTMFRequest,
    EarlyMediaLegRequest,
    Event,
    RecordingRequest,
    RingLegRequest,
    RTTRequest,
    SetLegRoleRequest,
    STTRequest,
    TTSRequest,
    VolumeRequest,
    VSIError,
    WebhookEventType,
    WebRTCOfferRequest,
    is_not_found,
    parse_event,
    play_tone,
    play_url,
)
from voiceblender._vsi import IDPayload
from voiceblender.sync import SyncClient

from tests.helpers.audio import band_energy_db, read_wav, to_float, tone
from tests.helpers.audio_files import wav_bytes
from tests.helpers.http_files import FileServer, Served
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.vsi import VsiClient

VsiFactory = Callable[..., VsiClient]

KNOWN_TYPES = {kind.value for kind in WebhookEventType}
ROOM_TONE_HZ = 1000.0  # the room playback (a file)
SHORT_TONE_HZ = 600.0  # the short file played to A's leg
DIAL_HZ = 440.0  # us_dial (350 + 440 Hz), played by A to its leg
TIMING_SLACK_S = 0.3  # HTTP round trips and tick granularity around measured times


# -- helpers -------------------------------------------------------------------------------


class SdkEvents:
    """Everything one SDK client's event hub delivers, in order; `wait` finds an event."""

    def __init__(self, client: SyncClient, name: str) -> None:
        self.name = name
        self.sub = client.subscribe()  # every event the client's hub gets
        self.seen: list[Event] = []

    def _pull(self, timeout: float) -> bool:
        try:
            self.seen.append(self.sub.next(timeout=max(timeout, 0.01)))
        except TimeoutError:
            return False
        return True

    def wait(
        self,
        kind: str,
        timeout: float = 10.0,
        where: Callable[[Any], bool] | None = None,
        **fields: Any,
    ) -> Any:
        """The first event of type `kind` with these field values (and `where`)."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            for event in self.seen[checked:]:
                if (
                    event.type == kind
                    and all(getattr(event, k, None) == v for k, v in fields.items())
                    and (where is None or where(event))
                ):
                    return event
            checked = len(self.seen)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(
                    f"{self.name}: no {kind} {fields} within {timeout:g}s; "
                    f"got {[e.type for e in self.seen]}",
                    pytrace=False,
                )
            self._pull(remaining)

    def drain(self, quiet: float = 1.0) -> list[Event]:
        while self._pull(quiet):
            pass
        return self.seen


def drain_raw(client: VsiClient, quiet: float = 1.0) -> list[dict[str, Any]]:
    messages = []
    while True:
        try:
            messages.append(client.recv(timeout=quiet))
        except TimeoutError:
            return messages


def refused(call: Callable[[], Any], status: int) -> str:
    """Call the SDK; it must raise APIError with this status and a message; return it."""
    with pytest.raises(APIError) as caught:
        call()
    error = caught.value
    assert error.status_code == status, f"{error.status_code}: {error.message}"
    assert error.message and error.instance_id, error
    assert is_not_found(error) == (status == 404)
    return error.message


def recording_request(**fields: Any) -> RecordingRequest:
    """The SDK's RecordingRequest makes every field required; empty means "not given"."""
    values: dict[str, Any] = {
        "storage": "file",
        "multi_channel": False,
        "s3_bucket": "",
        "s3_region": "",
        "s3_endpoint": "",
        "s3_prefix": "",
        "s3_access_key": "",
        "s3_secret_key": "",
        "gcs_bucket": "",
        "gcs_object_name_prefix": "",
        "filename": "",
    }
    values.update(fields)
    return RecordingRequest(**values)


def load(path: str) -> tuple[int, np.ndarray]:
    assert Path(path).is_file(), f"no recording at {path}"
    rate, samples = read_wav(path)
    return rate, to_float(samples)


def longest_silence_s(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(start, length) in seconds of the longest run of digitally silent 20 ms frames."""
    size = rate // 50
    frames = samples[: len(samples) // size * size].reshape(-1, size, samples.shape[1])
    silent = [*(~frames.any(axis=(1, 2))).tolist(), False]
    best, start = (0, 0), None
    for i, flag in enumerate(silent):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            best = max(best, (i - start, start))
            start = None
    return best[1] * 0.02, best[0] * 0.02


def heard(samples: np.ndarray, rate: int, freq: float) -> float:
    return band_energy_db(samples, rate, freq, 40.0)


def assert_parses(raw: list[dict[str, Any]], delivered: list[Event], name: str) -> set[str]:
    """Every raw VSI event decodes with parse_event into its typed class with the same field
    values, and the SDK's own stream delivered exactly this sequence. Returns the types."""
    assert raw, f"{name}: no events"
    for message in raw:
        kind = message["type"]
        assert kind in KNOWN_TYPES, f"{name}: the SDK has no event type {kind!r}"
        event = parse_event(message)
        assert type(event) is not Event, f"{name}: {kind} decoded as the base Event"
        assert event.timestamp == datetime.fromisoformat(message["timestamp"])
        assert event.instance_id == message["instance_id"]
        dumped = event.model_dump(by_alias=True)
        for key, value in message.items():
            if key != "timestamp" and key in dumped:
                assert dumped[key] == value, f"{name}: {kind}.{key}: {dumped[key]!r} != {value!r}"
    assert [e.type for e in delivered] == [m["type"] for m in raw], name
    return {m["type"] for m in raw}


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def files() -> Iterator[FileServer]:
    served = FileServer()
    room_tone = tone(ROOM_TONE_HZ, 10_000, rate=16000, dbfs=-12)
    served.add("/room-tone.wav", Served(wav_bytes(room_tone, 16000), content_type="audio/wav"))
    short = tone(SHORT_TONE_HZ, 400, rate=8000, dbfs=-10)
    served.add("/short.wav", Served(wav_bytes(short, 8000), content_type="audio/wav"))
    yield served
    served.close()


# -- the sync client, end to end -------------------------------------------------------------


def test_sync_sdk_drives_legs_rooms_playback_recording_and_vsi(
    server_factory: ServerFactory, vsi_client_factory: VsiFactory, files: FileServer
) -> None:
    a, b = server_factory(), server_factory()
    raw_a, raw_b = vsi_client_factory(a), vsi_client_factory(b)
    for raw in (raw_a, raw_b):
        assert raw.recv()["type"] == "connected"
    ca = SyncClient(base_url=f"{a.http}/v1", timeout=15.0)
    cb = SyncClient(base_url=f"{b.http}/v1", timeout=15.0)
    events_a, events_b = SdkEvents(ca, "A"), SdkEvents(cb, "B")
    streams = [ca.events_stream(), cb.events_stream()]
    try:
        _drive(a, b, ca, cb, events_a, events_b, files)
        # Both legs are gone: every event has been published; let the streams catch up.
        delivered_a, delivered_b = events_a.drain(), events_b.drain()
    finally:
        for stream in streams:
            stream.close()
        ca.close()
        cb.close()

    types = assert_parses(drain_raw(raw_a), delivered_a, "A")
    types |= assert_parses(drain_raw(raw_b), delivered_b, "B")
    expected = {
        "leg.ringing",
        "leg.early_media",
        "leg.connected",
        "leg.muted",
        "leg.unmuted",
        "leg.deaf",
        "leg.undeaf",
        "leg.hold",
        "leg.unhold",
        "dtmf.received",
        "room.created",
        "leg.joined_room",
        "leg.left_room",
        "playback.started",
        "playback.finished",
        "recording.started",
        "recording.paused",
        "recording.resumed",
        "recording.finished",
        "room.deleted",
        "leg.disconnected",
    }
    assert expected <= types, expected - types
    for server in (a, b):
        assert server.running(), server.log_tail()
        assert "Traceback" not in server.log_text(), server.log_tail()


def _drive(
    a: ServerProcess,
    b: ServerProcess,
    ca: SyncClient,
    cb: SyncClient,
    events_a: SdkEvents,
    events_b: SdkEvents,
    files: FileServer,
) -> None:
    # -- legs: originate with `to`, ring, early media, answer ---------------------------
    assert ca.list_legs() == [] and cb.list_legs() == []
    refused(lambda: ca.get_leg("no-such-leg"), 404)
    both = CreateLegRequest(type="sip", to=b.sip_uri("bob"), uri=b.sip_uri("eve"))
    assert "synonyms" in refused(lambda: ca.create_leg(both), 400)
    trunked = CreateLegRequest(type="sip", to=b.sip_uri("bob"), trunk_id="trunk-1")
    assert "trunk_id" in refused(lambda: ca.create_leg(trunked), 501)
    assert ca.list_legs() == []  # nothing was dialled

    leg_a = ca.create_leg(CreateLegRequest(type="sip", to=b.sip_uri("bob"), codecs=["PCMU"]))
    assert leg_a.type == "sip_outbound" and leg_a.state == "ringing" and not leg_a.muted
    assert [leg.id for leg in ca.list_legs()] == [leg_a.id]
    ringing = events_b.wait("leg.ringing")
    assert ringing.to == b.sip_uri("bob") and ringing.from_
    leg_b = cb.get_leg(ringing.leg_id)
    assert (leg_b.type, leg_b.state, leg_b.sip_headers) == ("sip_inbound", "ringing", {})
    events_a.wait("leg.ringing", leg_id=leg_a.id, uri=b.sip_uri("bob"))

    assert leg_b.early_media(EarlyMediaLegRequest()).status == "early_media"
    events_b.wait("leg.early_media", leg_id=leg_b.id, leg_type="sip_inbound")
    events_a.wait("leg.early_media", leg_id=leg_a.id)
    assert cb.get_leg(leg_b.id).state == "early_media"
    assert ca.get_leg(leg_a.id).state == "early_media"
    assert "codec" in refused(lambda: leg_b.answer(AnswerLegRequest(codec="PCMA")), 501)
    assert leg_b.answer(AnswerLegRequest()).status == "answered"
    events_b.wait("leg.connected", leg_id=leg_b.id)
    events_a.wait("leg.connected", leg_id=leg_a.id, leg_type="sip_outbound")
    assert cb.get_leg(leg_b.id).state == "connected" == ca.get_leg(leg_a.id).state

    # -- mute, deaf, hold, DTMF -----------------------------------------------------------
    assert leg_a.mute().status == "muted"
    events_a.wait("leg.muted", leg_id=leg_a.id)
    assert ca.get_leg(leg_a.id).muted is True
    assert leg_a.unmute().status == "unmuted"
    events_a.wait("leg.unmuted", leg_id=leg_a.id)
    assert ca.get_leg(leg_a.id).muted is False
    assert leg_a.deaf_leg().status == "deaf"
    events_a.wait("leg.deaf", leg_id=leg_a.id)
    assert ca.get_leg(leg_a.id).deaf is True
    assert leg_a.undeaf_leg().status == "undeaf"
    events_a.wait("leg.undeaf", leg_id=leg_a.id)
    assert ca.get_leg(leg_a.id).deaf is False

    assert leg_a.hold().status == "held"
    events_a.wait("leg.hold", leg_id=leg_a.id)
    events_b.wait("leg.hold", leg_id=leg_b.id)  # the far end sees the re-INVITE
    assert ca.get_leg(leg_a.id).held is True and cb.get_leg(leg_b.id).held is True
    assert leg_a.unhold().status == "resumed"
    events_a.wait("leg.unhold", leg_id=leg_a.id)
    events_b.wait("leg.unhold", leg_id=leg_b.id)
    after = ca.get_leg(leg_a.id)
    assert after.held is False and after.state == "connected"

    assert leg_a.send_dtmf(DTMFRequest(digits="12#")).status == "sent"
    for seq, digit in enumerate("12#", start=1):
        events_b.wait("dtmf.received", leg_id=leg_b.id, digit=digit, seq=seq)
    assert leg_b.disable_dtmf().status == "rejected"
    assert cb.get_leg(leg_b.id).accept_dtmf is False
    assert leg_b.enable_dtmf().status == "accepted"
    assert cb.get_leg(leg_b.id).accept_dtmf is True

    # -- rooms: sample_rate, create, get, list, add, move --------------------------------
    for rate in (8000, 48000):  # rooms that mix at another rate (tested as audio elsewhere)
        made = cb.create_room(CreateRoomRequest(id=f"r{rate}", sample_rate=rate))
        assert made.sample_rate == rate and cb.get_room(f"r{rate}").sample_rate == rate
        assert made.delete().status == "deleted"
    assert "8000, 16000 or 48000" in refused(
        lambda: cb.create_room(CreateRoomRequest(id="r", sample_rate=44100)), 400
    )
    assert "comfort_noise" in refused(
        lambda: cb.create_room(CreateRoomRequest(id="r", comfort_noise=True)), 501
    )
    assert cb.list_rooms() == []  # none of those was created
    room = cb.create_room(CreateRoomRequest(id="sdk-room", sample_rate=16000))
    assert (room.id, room.sample_rate, room.participants) == ("sdk-room", 16000, [])
    events_b.wait("room.created", room_id="sdk-room")
    other = cb.create_room(CreateRoomRequest(id="sdk-other"))
    assert other.sample_rate == 16000
    assert sorted((r.id, r.sample_rate) for r in cb.list_rooms()) == [
        ("sdk-other", 16000),
        ("sdk-room", 16000),
    ]

    added = room.add_leg(AddLegRequest(leg_id=leg_b.id))
    assert added.status == "added"
    events_b.wait("leg.joined_room", leg_id=leg_b.id, room_id="sdk-room")
    moved = other.add_leg(AddLegRequest(leg_id=leg_b.id))
    assert (moved.status, moved.from_, moved.to) == ("moved", "sdk-room", "sdk-other")
    events_b.wait("leg.joined_room", leg_id=leg_b.id, room_id="sdk-other")
    assert room.add_leg(AddLegRequest(leg_id=leg_b.id, mute=False)).status == "moved"
    fetched = cb.get_room("sdk-room")
    assert [p.id for p in fetched.participants] == [leg_b.id]
    assert fetched.participants[0].room_id == "sdk-room" == cb.get_leg(leg_b.id).room_id
    assert cb.get_room("sdk-other").participants == []

    # -- playback: a file to A's leg (play_sync waits on the SDK's hub), a tone, room file --
    played = leg_a.play_sync(play_url(files.base + "/short.wav", "audio/wav"))
    assert played.status == "playing"
    events_a.wait("playback.started", leg_id=leg_a.id, playback_id=played.playback_id)
    events_a.wait("playback.finished", leg_id=leg_a.id, playback_id=played.playback_id)
    dial = leg_a.play(play_tone("us_dial"))
    events_a.wait("playback.started", playback_id=dial.playback_id)
    assert leg_a.volume_play(dial.playback_id, VolumeRequest(volume=-2)).status == "updated"
    room_play = room.play(play_url(files.base + "/room-tone.wav", "audio/wav", volume=-1))
    events_b.wait("playback.started", room_id="sdk-room", playback_id=room_play.playback_id)
    assert room.volume_play(room_play.playback_id, VolumeRequest(volume=0)).status == "updated"
    time.sleep(0.4)  # both sounds flowing before the recordings start

    # -- recording: A's leg and B's room, paused and resumed together ---------------------
    assert "filename" in refused(lambda: leg_a.record(recording_request(filename="x")), 501)
    rec_leg = leg_a.record(recording_request())
    t_leg = time.monotonic()
    rec_room = room.record(recording_request(multi_channel=True))
    t_room = time.monotonic()
    assert rec_leg.status == rec_room.status == "recording"
    events_a.wait("recording.started", leg_id=leg_a.id, file=rec_leg.file)
    events_b.wait("recording.started", room_id="sdk-room", file=rec_room.file)
    time.sleep(1.0)
    t_pause = time.monotonic()
    assert leg_a.pause_record().status == "paused"
    assert room.pause_record().status == "paused"
    assert room.pause_record().status == "already_paused"
    time.sleep(0.8)
    t_resume = time.monotonic()
    assert leg_a.resume_record().status == "resumed"
    assert room.resume_record().status == "resumed"
    events_a.wait("recording.paused", leg_id=leg_a.id, file=rec_leg.file)
    events_b.wait("recording.resumed", room_id="sdk-room", file=rec_room.file)
    time.sleep(1.0)
    stopped_leg = leg_a.stop_record()
    t_leg_end = time.monotonic()
    stopped_room = room.stop_record()
    t_room_end = time.monotonic()
    assert (stopped_leg.status, stopped_leg.file) == ("stopped", rec_leg.file)
    assert (stopped_room.status, stopped_room.file) == ("stopped", rec_room.file)
    events_a.wait("recording.finished", leg_id=leg_a.id, file=rec_leg.file)
    room_done = events_b.wait("recording.finished", room_id="sdk-room", file=rec_room.file)
    # The SDK reads VoiceBlender's multi-channel description as it is.
    assert room_done.multi_channel_file and room_done.channels is not None
    assert list(room_done.channels) == [leg_b.id]
    span = room_done.channels[leg_b.id]
    assert (span.channel, span.start_ms) == (0, 0)
    assert abs(span.end_ms / 1000 - (t_room_end - t_room)) < TIMING_SLACK_S
    assert load(room_done.multi_channel_file)[1].shape[1] == 1  # one participant, one channel

    # A's leg: PCMU, so 8 kHz stereo; left = what B sends (the room's file), right = A's tone.
    rate, samples = load(rec_leg.file)
    assert rate == 8000 and samples.shape[1] == 2
    assert abs(len(samples) / rate - (t_leg_end - t_leg)) < TIMING_SLACK_S
    start, length = longest_silence_s(samples, rate)
    assert abs(length - (t_resume - t_pause)) < TIMING_SLACK_S, (start, length)
    assert abs(start - (t_pause - t_leg)) < TIMING_SLACK_S, (start, length)
    talk = samples[: int(0.8 * rate)]
    assert heard(talk[:, 0], rate, ROOM_TONE_HZ) > -40
    assert heard(talk[:, 1], rate, DIAL_HZ) > -40
    assert heard(talk[:, 0], rate, DIAL_HZ) < heard(talk[:, 1], rate, DIAL_HZ) - 20
    # B's room: the mix, 16 kHz mono, holding A's tone as B's leg receives it.
    rate, samples = load(rec_room.file)
    assert rate == 16000 and samples.shape[1] == 1
    assert abs(len(samples) / rate - (t_room_end - t_room)) < TIMING_SLACK_S
    _, length = longest_silence_s(samples, rate)
    assert abs(length - (t_resume - t_pause)) < TIMING_SLACK_S, length
    assert heard(samples[: int(0.8 * rate), 0], rate, DIAL_HZ) > -40

    assert room.stop_play(room_play.playback_id).status == "stopped"
    events_b.wait("playback.finished", room_id="sdk-room", playback_id=room_play.playback_id)
    assert leg_a.stop_play(dial.playback_id).status == "stopped"
    events_a.wait("playback.finished", leg_id=leg_a.id, playback_id=dial.playback_id)

    # -- remove from the room, delete the rooms ------------------------------------------
    assert room.remove_leg(leg_b.id).status == "removed"
    events_b.wait("leg.left_room", leg_id=leg_b.id, room_id="sdk-room")
    assert cb.get_room("sdk-room").participants == []
    kept = cb.get_leg(leg_b.id)
    assert kept.state == "connected" and kept.room_id == ""  # taken out, not hung up
    for each in (room, other):
        assert each.delete().status == "deleted"
        events_b.wait("room.deleted", room_id=each.id)
    refused(lambda: cb.get_room("sdk-room"), 404)

    # -- later VoiceBlender features: a clear 501, never a 500 --------------------------
    handle = ca.room("any-room")
    later: dict[str, Callable[[], Any]] = {
        "ring": lambda: leg_b.ring(RingLegRequest()),
        "rtt": lambda: leg_a.send_rtt(RTTRequest(text="hi")),
        "role": lambda: leg_a.set_role(SetLegRoleRequest(role="agent")),
        "custom data": lambda: leg_a.delete_leg_custom_data(),
        "streams": lambda: leg_a.list_leg_streams(),
        "siprec": lambda: leg_a.get_siprec_session(),
        "routing": lambda: handle.get_routing(),
        "bridges": lambda: handle.list_room_bridges(),
        "trunks": lambda: ca.list_sip_trunks(),
        "registrations": lambda: ca.list_sip_registrations(),
        "moq": lambda: ca.moq_leg(),
    }
    for name, call in later.items():
        assert "not available" in refused(call, 501), name
    # WebRTC is served: the SDK's offer reaches it (and this one is not SDP).
    bad_offer = refused(lambda: ca.webrtc_offer(WebRTCOfferRequest(sdp="v=0")), 400)
    assert "invalid SDP offer" in bad_offer
    # Speech works through the SDK (the offline providers: no key is set here).
    spoken = leg_a.play_tts(TTSRequest(text="hi", voice="v", model_id="m", volume=0))
    assert spoken.tts_id.startswith("tts-") and spoken.status == "playing"
    assert leg_a.stt(STTRequest(language="en", partial=False)).status == "stt_started"
    assert leg_a.stop_stt().status == "stt_stopped"
    assert leg_a.start_amd(AMDParams()).status == "started"  # answering-machine detection
    assert ca.get_leg(leg_a.id).state == "connected"  # none of them touched the call

    # -- hang-up: a ringing call refused as busy, then the connected call -----------------
    ringer = ca.create_leg(CreateLegRequest(type="sip", uri=b.sip_uri("carol")))
    carol = events_b.wait("leg.ringing", to=b.sip_uri("carol")).leg_id
    assert "busy" in refused(lambda: cb.leg(carol).hangup(DeleteLegRequest(reason="bogus")), 400)
    assert cb.leg(carol).hangup(DeleteLegRequest(reason="busy")).status == "hung_up"
    gone = events_b.wait("leg.disconnected", leg_id=carol)
    assert gone.cdr.reason == "busy"
    assert events_a.wait("leg.disconnected", leg_id=ringer.id).cdr.reason == "busy"  # a 486

    assert leg_a.hangup(DeleteLegRequest()).status == "hung_up"
    ended_a = events_a.wait("leg.disconnected", leg_id=leg_a.id)
    ended_b = events_b.wait("leg.disconnected", leg_id=leg_b.id)
    assert ended_a.cdr.reason == "api_hangup" and ended_b.cdr.reason == "remote_bye"
    assert ended_a.cdr.duration_answered > 3 and ended_a.quality.rtp_packets_received > 0
    assert ca.list_legs() == [] and cb.list_legs() == []
    refused(lambda: ca.get_leg(leg_a.id), 404)


# -- the async client and the SDK's VSI commands ---------------------------------------------


async def test_async_sdk_rooms_and_vsi_commands(server: ServerProcess) -> None:
    async with Client(base_url=f"{server.http}/v1") as client:
        stream = await client.events_stream()
        events = stream.__aiter__()
        try:
            room = await client.create_room(CreateRoomRequest(id="async-room", sample_rate=16000))
            assert (room.sample_rate, room.participants) == (16000, [])
            created = await asyncio.wait_for(events.__anext__(), 5)
            assert (type(created).__name__, created.room_id) == ("RoomCreatedEvent", "async-room")
            assert [r.id for r in await client.list_rooms()] == ["async-room"]
            with pytest.raises(APIError) as caught:
                await client.create_room(CreateRoomRequest(id="x", sample_rate=22050))
            assert caught.value.status_code == 400 and "16000" in caught.value.message

            # VSI commands answer with the same Room, sample_rate included.
            via_vsi = await stream.get_room(IDPayload(id="async-room"))
            assert (via_vsi.id, via_vsi.sample_rate) == ("async-room", 16000)
            made = await stream.create_room(CreateRoomRequest(id="vsi-room", sample_rate=16000))
            assert made.sample_rate == 16000
            with pytest.raises(VSIError) as refused_vsi:
                await stream.create_room(CreateRoomRequest(id="y", sample_rate=44100))
            assert refused_vsi.value.code == 400 and "16000" in refused_vsi.value.message
            assert (await asyncio.wait_for(events.__anext__(), 5)).room_id == "vsi-room"

            assert (await room.delete()).status == "deleted"
            deleted = await asyncio.wait_for(events.__anext__(), 5)
            assert (deleted.type, deleted.room_id) == ("room.deleted", "async-room")
            assert (await stream.delete_room(IDPayload(id="vsi-room"))).status == "deleted"
            assert await client.list_rooms() == []
        finally:
            await stream.close()
