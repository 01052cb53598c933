"""Request and response bodies, exactly as the seed names them."""

from __future__ import annotations

import enum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from callboard.core.errors import NotSupported

# Request fields of later VoiceBlender versions (its SDK sends them) naming capabilities this
# version lacks: refused with a 501 that names them, never silently ignored.
LATER_LEG_FIELDS = {
    "trunk_id": "SIP trunks",
    "outbound_proxy": "per-call outbound proxies",
    "filters": "audio filters",
    "custom_data": "custom data",
    "rtt": "real-time text",
    "streams": "multi-stream calls",
}
LATER_ANSWER_FIELDS = {
    "codec": "choosing the answer codec",
    "filters": "audio filters",
    "custom_data": "custom data",
    "streams": "multi-stream calls",
}
LATER_ROOM_FIELDS = {"comfort_noise": "comfort noise"}
LATER_RECORDING_FIELDS = {
    "filename": "custom recording file names",
    "gcs_bucket": "Google Cloud Storage",
    "gcs_object_name_prefix": "Google Cloud Storage",
}


def refuse_later_fields(data: Any, fields: dict[str, str]) -> None:
    """NotSupported (501) if `data` gives a value to one of `fields`. Empty values and false
    mean "not given": VoiceBlender's Python SDK sends some fields empty."""
    if not isinstance(data, dict):
        return
    given = [name for name in fields if data.get(name) not in (None, "", [], {}, False)]
    if data.get("speech_detection") is False:
        # Speaking events are always on for connected legs here.
        given.append("speech_detection")
        fields = {**fields, "speech_detection": "turning speaking events off"}
    if given:
        named = ", ".join(f"{name} ({fields[name]})" for name in given)
        raise NotSupported(f"not available in this version: {named}")


def _integral(value: Any) -> Any:
    """3.0 is an integer to JSON Schema (and to JavaScript): take it as 3."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer field: no strings or booleans (StrictInt), but integral floats are accepted.
JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]
# Checked by the commands (a 400 naming the field); said in the schema for clients and fuzzers.
WEBHOOK_URL_SCHEMA: dict[str, Any] = {"pattern": "^https?://."}


class RefusesLaterFields(BaseModel):
    """A request whose `later_fields` (VoiceBlender's later names) are refused with 501."""

    later_fields: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _later_fields(cls, data: Any) -> Any:
        refuse_later_fields(data, cls.later_fields)
        return data


class LegTypeIn(enum.StrEnum):
    sip = "sip"


class CodecName(enum.StrEnum):
    PCMU = "PCMU"
    PCMA = "PCMA"
    G722 = "G722"
    opus = "opus"


class SIPAuth(BaseModel):
    username: StrictStr = Field(min_length=1)
    password: StrictStr


class TransferRequest(BaseModel):
    target: StrictStr = Field(
        description='SIP URI to transfer the call to ("sip:bob@example.com")',
        json_schema_extra={"pattern": "^sips?:.+@?.+"},
    )
    replaces_leg_id: StrictStr | None = Field(
        None, description="A connected SIP leg whose dialog the target replaces (attended)"
    )


class AMDParams(BaseModel):
    """Milliseconds; zero or negative means the default (for beep_timeout: disabled)."""

    initial_silence_timeout: JsonInt = 2500
    greeting_duration: JsonInt = 1500
    after_greeting_silence: JsonInt = 800
    total_analysis_time: JsonInt = 5000
    minimum_word_length: JsonInt = 100
    beep_timeout: JsonInt = 0


class CreateLegRequest(RefusesLaterFields):
    later_fields = LATER_LEG_FIELDS
    model_config = ConfigDict(populate_by_name=True)

    type: LegTypeIn
    uri: StrictStr = Field(
        min_length=1, description="SIP URI to dial", json_schema_extra={"pattern": "^sips?:"}
    )
    to: StrictStr | None = Field(
        None, min_length=1, description="Synonym of uri (VoiceBlender's later name for it)"
    )
    from_: StrictStr | None = Field(None, alias="from", description="Caller ID user part")
    privacy: StrictStr | None = None
    ring_timeout: JsonInt = Field(0, ge=0, description="Seconds to wait for answer; 0 = none")
    max_duration: JsonInt = Field(0, ge=0, description="Max seconds after connect; 0 = none")
    codecs: list[CodecName] | None = Field(
        None, description="Codec preference order", json_schema_extra={"minItems": 1}
    )
    headers: dict[StrictStr, StrictStr] | None = None
    room_id: StrictStr | None = None
    auth: SIPAuth | None = None
    webhook_url: StrictStr | None = Field(None, json_schema_extra=WEBHOOK_URL_SCHEMA)
    webhook_secret: StrictStr | None = None
    amd: AMDParams | None = None
    accept_dtmf: StrictBool = True
    app_id: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _to_is_uri(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("to"), str):
            uri = data.get("uri")
            if uri is None:
                data = {**data, "uri": data["to"]}
            elif isinstance(uri, str) and uri != data["to"]:
                raise PydanticCustomError(
                    "uri_to_conflict",
                    "uri and to are synonyms: give one of them, or the same URI in both",
                )
        return data


class EarlyMediaLegRequest(RefusesLaterFields):
    """Optional body of early-media: VoiceBlender's later fields (codec, ...) are refused."""

    later_fields = LATER_ANSWER_FIELDS


class AnswerLegRequest(EarlyMediaLegRequest):
    """Optional body of answer: VoiceBlender's later fields (codec, ...) are refused."""

    speech_detection: StrictBool | None = Field(
        None, description="Only true (the default here): speaking events cannot be turned off"
    )


class DeleteLegRequest(BaseModel):
    reason: StrictStr | None = Field(
        None,
        description="Unanswered inbound SIP legs only: the final response to send instead of "
        "603 (busy 486, declined/rejected 603, unavailable 480, not_found 404, forbidden 403, "
        "server_error 500); cdr.reason names that code as for a far end's (busy, declined, "
        "...). Ignored for other legs.",
    )


class Leg(BaseModel):
    instance_id: str | None = None
    id: str
    type: str
    state: str
    room_id: str = ""
    muted: bool
    deaf: bool
    accept_dtmf: bool
    held: bool
    sip_headers: dict[str, str] | None = None
    app_id: str | None = None


class DTMFRequest(BaseModel):
    digits: StrictStr = Field(description="DTMF digits to send (0-9, *, #, A-D)")


class PlaybackRequest(BaseModel):
    url: StrictStr | None = Field(None, description="URL of the audio file (exclusive with tone)")
    tone: StrictStr | None = Field(None, description="Built-in tone: {country}_{type} or {type}")
    mime_type: StrictStr | None = Field(None, description="MIME type; required with url")
    repeat: JsonInt = Field(0, ge=-1, description="0/1 once, N times, -1 forever (url only)")
    volume: JsonInt = Field(0, ge=-8, le=8, description="About 3 dB a step")


class TTSRequest(BaseModel):
    """Checked in API-NOTES' order by the command (503 for a missing key comes before the 400s
    for missing text or voice and the volume range), so nothing here is required."""

    text: StrictStr | None = Field(None, description="Text to synthesize")
    voice: StrictStr | None = Field(
        None, description="Provider's voice (required for cloud providers; local: a Piper voice)"
    )
    model_id: StrictStr | None = Field(None, description="Provider's model or engine")
    language: StrictStr | None = Field(None, description='Language code, e.g. "en-US"')
    prompt: StrictStr | None = Field(None, description="Style instruction (Google Gemini TTS)")
    volume: JsonInt = Field(0, description="-8..8, about 3 dB a step")
    provider: Literal["elevenlabs", "aws", "google", "deepgram", "azure", "local"] | None = Field(
        None, description="Default: elevenlabs with ELEVENLABS_API_KEY, else local"
    )
    api_key: StrictStr | None = Field(None, description="Overrides the provider's configured key")


class STTRequest(BaseModel):
    language: StrictStr | None = Field(None, description='Language code, e.g. "en" (default)')
    partial: StrictBool = Field(False, description="Also send interim (non-final) transcripts")
    provider: Literal["elevenlabs", "deepgram", "azure", "local"] | None = Field(
        None, description="Default: elevenlabs with ELEVENLABS_API_KEY, else local"
    )
    api_key: StrictStr | None = Field(None, description="Overrides the provider's configured key")


class STTResponse(BaseModel):
    instance_id: str | None = None
    status: str
    leg_id: str | None = None
    room_id: str | None = None
    leg_ids: list[str] | None = None


class TTSResponse(BaseModel):
    instance_id: str | None = None
    tts_id: str
    status: str


class VolumeRequest(BaseModel):
    volume: JsonInt = Field(ge=-8, le=8, description="-8..8, about 3 dB a step")


class PlaybackResponse(BaseModel):
    instance_id: str | None = None
    playback_id: str
    status: str


class RoomCreateRequest(RefusesLaterFields):
    later_fields = LATER_ROOM_FIELDS

    id: StrictStr | None = Field(None, description="Custom room ID (UUID if omitted)")
    webhook_url: StrictStr | None = Field(None, json_schema_extra=WEBHOOK_URL_SCHEMA)
    webhook_secret: StrictStr | None = None
    app_id: StrictStr | None = None
    sample_rate: JsonInt | None = Field(
        None,
        description="Mixing rate in Hz: 8000, 16000 or 48000 (default DEFAULT_SAMPLE_RATE, "
        "16000); participants of other rates are converted",
        json_schema_extra={"enum": [8000, 16000, 48000, None]},
    )


class AddLegRequest(BaseModel):
    leg_id: StrictStr = Field(min_length=1, description="ID of the leg to add")
    mute: StrictBool | None = Field(None, description="Mute state applied before joining")
    deaf: StrictBool | None = Field(None, description="Deaf state applied before joining")
    accept_dtmf: StrictBool | None = Field(
        None, description="Whether the leg receives DTMF broadcast in the room"
    )


class Room(BaseModel):
    instance_id: str | None = None
    id: str
    sample_rate: int = Field(description="Mixer sample rate in Hz")
    participants: list[Leg]
    ws_participants: list[str] = []
    app_id: str | None = None


class RoomAddResponse(BaseModel):
    instance_id: str | None = None
    status: str
    from_: str | None = Field(None, alias="from")
    to: str | None = None


class StatusResponse(BaseModel):
    instance_id: str | None = None
    status: str


class RecordingStorage(enum.StrEnum):
    file = "file"
    s3 = "s3"


class RecordingRequest(RefusesLaterFields):
    later_fields = LATER_RECORDING_FIELDS

    storage: RecordingStorage = Field(
        RecordingStorage.file, description='"file" (local disk) or "s3" (upload after stop)'
    )
    multi_channel: StrictBool = Field(
        False, description="Room recordings: also one mono WAV per participant"
    )
    s3_bucket: StrictStr | None = Field(None, description="Overrides S3_BUCKET")
    s3_region: StrictStr | None = Field(None, description="Overrides S3_REGION")
    s3_endpoint: StrictStr | None = Field(None, description="Overrides S3_ENDPOINT")
    s3_prefix: StrictStr | None = Field(None, description="Overrides S3_PREFIX")
    s3_access_key: StrictStr | None = Field(None, description="With s3_secret_key")
    s3_secret_key: StrictStr | None = Field(None, description="With s3_access_key")


class ChannelInfo(BaseModel):
    """Where a participant is in a multi-channel room recording (VoiceBlender's shape)."""

    channel: int = Field(description="0-based channel of multi_channel_file")
    start_ms: int = Field(description="first moment present, from the recording's start")
    end_ms: int = Field(description="last moment present, from the recording's start")


class RecordingResponse(BaseModel):
    instance_id: str | None = None
    status: str
    file: str | None = None
    multi_channel_file: str | None = Field(
        None, description="one WAV with a channel per participant, in join order"
    )
    channels: dict[str, ChannelInfo] | None = Field(
        None, description="participant id -> its channel in multi_channel_file"
    )
    participant_files: dict[str, str] | None = Field(
        None, description="participant id -> its own mono WAV (or S3 URL)"
    )
    omitted_legs: list[str] | None = Field(
        None, description="participants missing from multi_channel_file"
    )


class Error(BaseModel):
    instance_id: str | None = None
    error: str


# What an error status means on a route that does not say more.
ERROR_MEANINGS: dict[int, str] = {
    400: "Invalid request: malformed JSON, a body sent without Content-Type: application/json, "
    "a wrong type or an invalid value",
    404: "Not found",
    409: "Not possible in the current state",
    500: "Internal error",
    501: "Not available in this version yet",
    503: "A resource the request needs is unavailable",
}

# Error statuses shared by the leg and room routes.
BAD_PLAYBACK = (
    400,
    "Invalid JSON, not exactly one of url and tone, unknown tone, url without mime_type, "
    "or volume or repeat out of range",
)
BAD_VOLUME = (400, "Invalid JSON or volume out of range")
BAD_TTS = (400, "Invalid JSON, missing text or voice (cloud providers), volume not in -8..8")
BAD_RECORDING = (400, "Invalid JSON, storage type, S3 settings or S3 credentials")
RECORDING_FILE_FAILED = (500, "The recording file could not be created")
LATER_FIELD_GIVEN = (501, "A field of a later VoiceBlender version was given")


def errors(*cases: int | tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's `responses`: the error statuses its code can answer, each with the Error
    body. A case is a status, or a status with what it means on that route."""
    responses: dict[int | str, dict[str, Any]] = {}
    for case in cases:
        code, description = case if isinstance(case, tuple) else (case, ERROR_MEANINGS[case])
        responses[code] = {"model": Error, "description": description}
    return responses


# ---- AI agents ----

Variables = dict[str, StrictStr | JsonInt | float | StrictBool]


class ElevenLabsAgentRequest(BaseModel):
    agent_id: StrictStr = Field(min_length=1, description="ElevenLabs agent ID")
    first_message: StrictStr | None = Field(None, description="Override the agent's first message")
    language: StrictStr | None = Field(None, description='Language code (e.g. "en", "es")')
    dynamic_variables: Variables | None = Field(
        None, description="Key-value pairs passed to the agent as dynamic variables"
    )
    api_key: StrictStr | None = Field(None, description="Falls back to ELEVENLABS_API_KEY")


class VAPIAgentRequest(BaseModel):
    assistant_id: StrictStr = Field(min_length=1, description="VAPI assistant ID")
    first_message: StrictStr | None = Field(None, description="Override the agent's first message")
    variable_values: Variables | None = Field(
        None, description="Passed as assistantOverrides.variableValues"
    )
    api_key: StrictStr | None = Field(None, description="Falls back to VAPI_API_KEY")


class PipecatAgentRequest(BaseModel):
    websocket_url: StrictStr = Field(
        pattern=r"^wss?://[^\s/]+", description="WebSocket URL of the Pipecat bot (ws://host:8765)"
    )


class DeepgramAgentRequest(BaseModel):
    settings: dict[str, Any] | None = Field(
        None,
        description="A full Deepgram agent Settings object (its `type` and `audio` are ours); "
        "default: nova-3, gpt-4o-mini, aura-2-asteria-en",
    )
    greeting: StrictStr | None = Field(None, description="Agent greeting message")
    language: StrictStr | None = Field(None, description='Language code (e.g. "en", "es")')
    api_key: StrictStr | None = Field(None, description="Falls back to DEEPGRAM_API_KEY")


class AgentMessageRequest(BaseModel):
    message: StrictStr = Field(
        min_length=1, description="Context or instruction to inject into the running session"
    )


class AgentResponse(BaseModel):
    instance_id: str | None = None
    status: str
    leg_id: str | None = None
    room_id: str | None = None


class WebRTCOfferRequest(BaseModel):
    sdp: StrictStr = Field(
        description="SDP offer from the browser", json_schema_extra={"minLength": 1}
    )
    room_id: StrictStr | None = Field(None, description="Join this room once media is up")
    app_id: StrictStr | None = Field(None, description="Tag the leg's events")
    webhook_url: StrictStr | None = Field(
        None, description="This leg's webhook", json_schema_extra=WEBHOOK_URL_SCHEMA
    )
    webhook_secret: StrictStr | None = Field(None, description="Signs this leg's webhooks")


class WebRTCOfferResponse(BaseModel):
    instance_id: str | None = None
    leg_id: str
    sdp: str = Field(description="SDP answer (candidates trickle: GET .../ice-candidates)")


class ICECandidateInit(BaseModel):
    candidate: StrictStr = Field(description='ICE candidate string ("" = end of candidates)')
    sdpMid: StrictStr | None = Field(None, description="Media stream identification tag")
    sdpMLineIndex: JsonInt | None = Field(None, description="Index of the media description")


class ICECandidatesResponse(BaseModel):
    instance_id: str | None = None
    candidates: list[ICECandidateInit]
    done: bool = Field(description="Gathering has ended: no more candidates will come")
