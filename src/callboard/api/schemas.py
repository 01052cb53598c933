"""Request and response bodies, exactly as the seed names them."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LegTypeIn(enum.StrEnum):
    sip = "sip"


class CodecName(enum.StrEnum):
    PCMU = "PCMU"
    PCMA = "PCMA"
    G722 = "G722"
    opus = "opus"


class SIPAuth(BaseModel):
    username: str = Field(min_length=1)
    password: str


class AMDParams(BaseModel):
    initial_silence_timeout: int = Field(2500, ge=0)
    greeting_duration: int = Field(1500, ge=0)
    after_greeting_silence: int = Field(800, ge=0)
    total_analysis_time: int = Field(5000, ge=0)
    minimum_word_length: int = Field(100, ge=0)
    beep_timeout: int = Field(0, ge=0)


class CreateLegRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: LegTypeIn
    uri: str = Field(min_length=1, description="SIP URI to dial")
    from_: str | None = Field(None, alias="from", description="Caller ID user part")
    privacy: str | None = None
    ring_timeout: int = Field(0, ge=0, description="Seconds to wait for answer; 0 = none")
    max_duration: int = Field(0, ge=0, description="Max seconds after connect; 0 = none")
    codecs: list[CodecName] | None = Field(None, description="Codec preference order")
    headers: dict[str, str] | None = None
    room_id: str | None = None
    auth: SIPAuth | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    amd: AMDParams | None = None
    accept_dtmf: bool = True
    app_id: str | None = None


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
    digits: str = Field(description="DTMF digits to send (0-9, *, #, A-D)")


class PlaybackRequest(BaseModel):
    url: str | None = Field(None, description="URL of the audio file (exclusive with tone)")
    tone: str | None = Field(None, description="Built-in tone: {country}_{type} or {type}")
    mime_type: str | None = Field(None, description="MIME type; required with url")
    repeat: int = Field(0, ge=-1, description="0/1 once, N times, -1 forever (url only)")
    volume: int = Field(0, ge=-8, le=8, description="About 3 dB a step")


class VolumeRequest(BaseModel):
    volume: int = Field(ge=-8, le=8, description="-8..8, about 3 dB a step")


class PlaybackResponse(BaseModel):
    instance_id: str | None = None
    playback_id: str
    status: str


class StatusResponse(BaseModel):
    instance_id: str | None = None
    status: str


class ErrorResponse(BaseModel):
    instance_id: str | None = None
    error: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 409, 500, 501, 503)
}
