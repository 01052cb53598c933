"""Request and response bodies, exactly as the seed names them."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr


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


class AMDParams(BaseModel):
    initial_silence_timeout: StrictInt = Field(2500, ge=0)
    greeting_duration: StrictInt = Field(1500, ge=0)
    after_greeting_silence: StrictInt = Field(800, ge=0)
    total_analysis_time: StrictInt = Field(5000, ge=0)
    minimum_word_length: StrictInt = Field(100, ge=0)
    beep_timeout: StrictInt = Field(0, ge=0)


class CreateLegRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: LegTypeIn
    uri: StrictStr = Field(min_length=1, description="SIP URI to dial")
    from_: StrictStr | None = Field(None, alias="from", description="Caller ID user part")
    privacy: StrictStr | None = None
    ring_timeout: StrictInt = Field(0, ge=0, description="Seconds to wait for answer; 0 = none")
    max_duration: StrictInt = Field(0, ge=0, description="Max seconds after connect; 0 = none")
    codecs: list[CodecName] | None = Field(None, description="Codec preference order")
    headers: dict[StrictStr, StrictStr] | None = None
    room_id: StrictStr | None = None
    auth: SIPAuth | None = None
    webhook_url: StrictStr | None = None
    webhook_secret: StrictStr | None = None
    amd: AMDParams | None = None
    accept_dtmf: StrictBool = True
    app_id: StrictStr | None = None


class LegOut(BaseModel):
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
    repeat: StrictInt = Field(0, ge=-1, description="0/1 once, N times, -1 forever (url only)")
    volume: StrictInt = Field(0, ge=-8, le=8, description="About 3 dB a step")


class VolumeRequest(BaseModel):
    volume: StrictInt = Field(ge=-8, le=8, description="-8..8, about 3 dB a step")


class PlaybackResponse(BaseModel):
    instance_id: str | None = None
    playback_id: str
    status: str


class RoomCreateRequest(BaseModel):
    id: StrictStr | None = Field(None, description="Custom room ID (UUID if omitted)")
    webhook_url: StrictStr | None = None
    webhook_secret: StrictStr | None = None
    app_id: StrictStr | None = None


class AddLegRequest(BaseModel):
    leg_id: StrictStr = Field(min_length=1, description="ID of the leg to add")
    mute: StrictBool | None = Field(None, description="Mute state applied before joining")
    deaf: StrictBool | None = Field(None, description="Deaf state applied before joining")
    accept_dtmf: StrictBool | None = Field(
        None, description="Whether the leg receives DTMF broadcast in the room"
    )


class RoomOut(BaseModel):
    instance_id: str | None = None
    id: str
    participants: list[LegOut]
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


class RecordingRequest(BaseModel):
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


class RecordingResponse(BaseModel):
    instance_id: str | None = None
    status: str
    file: str | None = None
    multi_channel_file: str | None = None
    channels: dict[str, str] | None = None


class ErrorResponse(BaseModel):
    instance_id: str | None = None
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 409, 500, 501, 503)
}
