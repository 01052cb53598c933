"""The /v1/legs routes: validate, call one command, return its answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from callboard.api.commands import Commands
from callboard.api.schemas import (
    BAD_PLAYBACK,
    BAD_RECORDING,
    BAD_TTS,
    BAD_VOLUME,
    LATER_FIELD_GIVEN,
    RECORDING_FILE_FAILED,
    AMDParams,
    AnswerLegRequest,
    CreateLegRequest,
    DeleteLegRequest,
    DTMFRequest,
    EarlyMediaLegRequest,
    Leg,
    PlaybackRequest,
    PlaybackResponse,
    RecordingRequest,
    RecordingResponse,
    StatusResponse,
    STTRequest,
    STTResponse,
    TransferRequest,
    TTSRequest,
    TTSResponse,
    VolumeRequest,
    errors,
)

router = APIRouter(prefix="/v1/legs", tags=["legs"])

NO_LEG = (404, "Leg not found")
NO_PLAYBACK = (404, "Leg or playback not found")
NO_RECORDING = (404, "Leg not found or no recording in progress")


def commands(request: Request) -> Commands:
    cmds: Commands = request.app.state.commands
    return cmds


@router.get("", response_model=list[Leg], response_model_exclude_none=True)
async def list_legs(request: Request) -> list[dict[str, Any]]:
    """List all active legs."""
    return commands(request).list_legs()


@router.post(
    "",
    status_code=201,
    response_model=Leg,
    response_model_exclude_none=True,
    responses=errors(
        (400, "Invalid JSON, bad SIP URI, unknown codec, forbidden header or other bad field"),
        (501, "a field of a later VoiceBlender version was given"),
        (503, "No RTP port available"),
    ),
)
async def create_leg(body: CreateLegRequest, request: Request) -> dict[str, Any]:
    """Originate an outbound SIP call."""
    return await commands(request).create_leg(body)


@router.get(
    "/{leg_id}", response_model=Leg, response_model_exclude_none=True, responses=errors(NO_LEG)
)
async def get_leg(leg_id: str, request: Request) -> dict[str, Any]:
    """Get a single leg."""
    return commands(request).get_leg(leg_id)


@router.delete(
    "/{leg_id}",
    response_model=StatusResponse,
    responses=errors((400, "Invalid JSON or unknown reason"), NO_LEG),
)
async def delete_leg(
    leg_id: str, request: Request, body: DeleteLegRequest | None = None
) -> dict[str, Any]:
    """Hang up a leg, or refuse an unanswered inbound call with the given `reason`."""
    return commands(request).delete_leg(leg_id, body.reason if body else None)


@router.post(
    "/{leg_id}/answer",
    response_model=StatusResponse,
    responses=errors(
        (400, "Invalid JSON, or not an inbound SIP leg"),
        NO_LEG,
        (409, "Leg is not ringing or in early media"),
        LATER_FIELD_GIVEN,
        (503, "No RTP port is free for the answer"),
    ),
)
async def answer_leg(
    leg_id: str, request: Request, body: AnswerLegRequest | None = None
) -> dict[str, Any]:
    """Answer a ringing or early-media inbound SIP leg."""
    return await commands(request).answer_leg(leg_id)


@router.post(
    "/{leg_id}/early-media",
    response_model=StatusResponse,
    responses=errors(
        (400, "Invalid JSON, or not an inbound SIP leg"),
        NO_LEG,
        (409, "Leg is not ringing"),
        LATER_FIELD_GIVEN,
        (503, "No RTP port is free for the answer"),
    ),
)
async def early_media(
    leg_id: str, request: Request, body: EarlyMediaLegRequest | None = None
) -> dict[str, Any]:
    """Send 183 Session Progress with SDP and start media before answering."""
    return await commands(request).early_media_leg(leg_id)


@router.post("/{leg_id}/mute", response_model=StatusResponse, responses=errors(NO_LEG))
async def mute(leg_id: str, request: Request) -> dict[str, Any]:
    return commands(request).mute_leg(leg_id)


@router.delete("/{leg_id}/mute", response_model=StatusResponse, responses=errors(NO_LEG))
async def unmute(leg_id: str, request: Request) -> dict[str, Any]:
    return commands(request).unmute_leg(leg_id)


@router.post("/{leg_id}/deaf", response_model=StatusResponse, responses=errors(NO_LEG))
async def deaf(leg_id: str, request: Request) -> dict[str, Any]:
    return commands(request).deaf_leg(leg_id)


@router.delete("/{leg_id}/deaf", response_model=StatusResponse, responses=errors(NO_LEG))
async def undeaf(leg_id: str, request: Request) -> dict[str, Any]:
    return commands(request).undeaf_leg(leg_id)


@router.post(
    "/{leg_id}/hold",
    response_model=StatusResponse,
    responses=errors(
        (400, "Not a SIP leg"), NO_LEG, (409, "Leg is not connected or already on hold")
    ),
)
async def hold(leg_id: str, request: Request) -> dict[str, Any]:
    """Put a SIP call on hold (re-INVITE with a=sendonly)."""
    return commands(request).hold_leg(leg_id)


@router.delete(
    "/{leg_id}/hold",
    response_model=StatusResponse,
    responses=errors((400, "Not a SIP leg"), NO_LEG, (409, "Leg is not held")),
)
async def unhold(leg_id: str, request: Request) -> dict[str, Any]:
    """Resume a held SIP call (re-INVITE with a=sendrecv)."""
    return commands(request).unhold_leg(leg_id)


@router.post(
    "/{leg_id}/dtmf",
    response_model=StatusResponse,
    responses=errors(
        (400, "Invalid JSON, empty or invalid digits"), NO_LEG, (409, "Leg has no media yet")
    ),
)
async def send_dtmf(leg_id: str, body: DTMFRequest, request: Request) -> dict[str, Any]:
    """Send DTMF digits (RFC 4733)."""
    return commands(request).send_leg_dtmf(leg_id, body)


@router.post(
    "/{leg_id}/transfer",
    status_code=202,
    response_model=StatusResponse,
    responses=errors(
        (400, "Missing or invalid target URI (including URIs without a host such as sip:)"),
        NO_LEG,
        (409, "Leg not connected (or held), not a SIP leg, or replaces_leg_id is invalid"),
    ),
)
async def transfer(leg_id: str, body: TransferRequest, request: Request) -> dict[str, Any]:
    """Transfer a SIP leg by REFER: 202 once validated; the outcome comes as
    leg.transfer_initiated / _progress / _completed / _failed events."""
    return commands(request).transfer_leg(leg_id, body)


@router.post(
    "/{leg_id}/amd",
    response_model=StatusResponse,
    responses=errors(
        (400, "Invalid AMD params or not a SIP leg"),
        NO_LEG,
        (409, "Leg is not in connected state, or AMD already runs on it"),
    ),
)
async def start_amd(leg_id: str, body: AMDParams, request: Request) -> dict[str, Any]:
    """Start answering-machine detection on a connected SIP leg (amd.result, amd.beep)."""
    return commands(request).start_amd(leg_id, body)


@router.post("/{leg_id}/dtmf/accept", response_model=StatusResponse, responses=errors(NO_LEG))
async def accept_dtmf(leg_id: str, request: Request) -> dict[str, Any]:
    return commands(request).accept_leg_dtmf(leg_id)


@router.post("/{leg_id}/dtmf/reject", response_model=StatusResponse, responses=errors(NO_LEG))
async def reject_dtmf(leg_id: str, request: Request) -> dict[str, Any]:
    return commands(request).reject_leg_dtmf(leg_id)


@router.post(
    "/{leg_id}/play",
    response_model=PlaybackResponse,
    responses=errors(
        BAD_PLAYBACK, NO_LEG, (409, "Leg has no audio writer yet, or 16 playbacks play already")
    ),
)
async def play(leg_id: str, body: PlaybackRequest, request: Request) -> dict[str, Any]:
    """Play an audio file (url + mime_type) or a built-in tone to the leg alone."""
    return commands(request).play_on_leg(leg_id, body)


@router.post(
    "/{leg_id}/stt",
    response_model=STTResponse,
    response_model_exclude_none=True,
    responses=errors(
        (400, "Invalid JSON or unknown provider"),
        NO_LEG,
        (409, "Leg is not connected (ringing, early media or held), or STT already runs"),
        (503, "No API key for the chosen cloud provider"),
    ),
)
async def start_stt(leg_id: str, body: STTRequest, request: Request) -> dict[str, Any]:
    """Transcribe what the leg says: stt.text events."""
    return commands(request).stt_on_leg(leg_id, body)


@router.delete(
    "/{leg_id}/stt",
    response_model=StatusResponse,
    responses=errors((404, "Leg not found or no STT in progress")),
)
async def stop_stt(leg_id: str, request: Request) -> dict[str, Any]:
    return await commands(request).stop_stt_on_leg(leg_id)


@router.post(
    "/{leg_id}/tts",
    response_model=TTSResponse,
    response_model_exclude_none=True,
    responses=errors(
        BAD_TTS,
        NO_LEG,
        (409, "Leg has no audio writer yet, or 16 playbacks play already"),
        (503, "No API key for the chosen cloud provider"),
    ),
)
async def tts(leg_id: str, body: TTSRequest, request: Request) -> dict[str, Any]:
    """Speak text to the leg alone. The job is a playback: PATCH/DELETE .../play/{tts_id}."""
    return commands(request).tts_on_leg(leg_id, body)


@router.patch(
    "/{leg_id}/play/{playback_id}",
    response_model=StatusResponse,
    responses=errors(BAD_VOLUME, NO_PLAYBACK),
)
async def playback_volume(
    leg_id: str, playback_id: str, body: VolumeRequest, request: Request
) -> dict[str, Any]:
    """Change the volume of an active playback."""
    return commands(request).set_playback_volume(leg_id, playback_id, body)


@router.delete(
    "/{leg_id}/play/{playback_id}",
    response_model=StatusResponse,
    responses=errors(NO_PLAYBACK),
)
async def stop_playback(leg_id: str, playback_id: str, request: Request) -> dict[str, Any]:
    """Stop a playback."""
    return commands(request).stop_playback(leg_id, playback_id)


@router.post(
    "/{leg_id}/record",
    response_model=RecordingResponse,
    response_model_exclude_none=True,
    responses=errors(
        BAD_RECORDING,
        NO_LEG,
        (409, "Leg has no audio yet, or is being recorded already"),
        RECORDING_FILE_FAILED,
        LATER_FIELD_GIVEN,
    ),
)
async def start_recording(
    leg_id: str, request: Request, body: RecordingRequest | None = None
) -> dict[str, Any]:
    """Record a leg to a WAV file: stereo, left = what the far end says, right = what it is
    sent (at the codec's rate), or in a room 16 kHz, left = the participant, right = what it
    hears."""
    body = body or RecordingRequest.model_validate({})
    return await commands(request).start_recording("leg", leg_id, body)


@router.delete(
    "/{leg_id}/record",
    response_model=RecordingResponse,
    response_model_exclude_none=True,
    responses=errors(NO_RECORDING),
)
async def stop_recording(leg_id: str, request: Request) -> dict[str, Any]:
    """Stop a leg recording; answers once the WAV is final (an S3 upload follows)."""
    return await commands(request).stop_recording("leg", leg_id)


@router.post(
    "/{leg_id}/record/pause", response_model=StatusResponse, responses=errors(NO_RECORDING)
)
async def pause_recording(leg_id: str, request: Request) -> dict[str, Any]:
    """Write silence instead of audio until resumed (idempotent: already_paused)."""
    return commands(request).pause_recording("leg", leg_id)


@router.post(
    "/{leg_id}/record/resume", response_model=StatusResponse, responses=errors(NO_RECORDING)
)
async def resume_recording(leg_id: str, request: Request) -> dict[str, Any]:
    """Record audio again after a pause (idempotent: not_paused)."""
    return commands(request).resume_recording("leg", leg_id)
