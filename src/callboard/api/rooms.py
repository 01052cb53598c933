"""The /v1/rooms routes and the room WebSocket participant endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from callboard.api.commands import Commands
from callboard.api.room_ws_framing import RoomWsFraming
from callboard.api.schemas import (
    BAD_PLAYBACK,
    BAD_RECORDING,
    BAD_TTS,
    BAD_VOLUME,
    LATER_FIELD_GIVEN,
    RECORDING_FILE_FAILED,
    AddLegRequest,
    PlaybackRequest,
    PlaybackResponse,
    RecordingRequest,
    RecordingResponse,
    Room,
    RoomAddResponse,
    RoomCreateRequest,
    StatusResponse,
    STTRequest,
    STTResponse,
    TTSRequest,
    TTSResponse,
    VolumeRequest,
    errors,
)
from callboard.media.bridge import AudioBridge

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/rooms", tags=["rooms"])

NO_ROOM = (404, "Room not found")
NO_PLAYBACK = (404, "Room or playback not found")
NO_RECORDING = (404, "Room not found or no recording in progress")


def commands(request: Request | WebSocket) -> Commands:
    cmds: Commands = request.app.state.commands
    return cmds


@router.get("", response_model=list[Room], response_model_exclude_none=True)
async def list_rooms(request: Request) -> list[dict[str, Any]]:
    """List rooms with their participants."""
    return commands(request).list_rooms()


@router.post(
    "",
    status_code=201,
    response_model=Room,
    response_model_exclude_none=True,
    responses=errors(
        (400, "Invalid JSON, room id, webhook_url or sample_rate"),
        (409, "A room with this id exists"),
        LATER_FIELD_GIVEN,
    ),
)
async def create_room(request: Request, body: RoomCreateRequest | None = None) -> dict[str, Any]:
    """Create a room (optionally with a chosen id and its own webhook)."""
    return commands(request).create_room(body or RoomCreateRequest.model_validate({}))


@router.get(
    "/{room_id}", response_model=Room, response_model_exclude_none=True, responses=errors(NO_ROOM)
)
async def get_room(room_id: str, request: Request) -> dict[str, Any]:
    return commands(request).get_room(room_id)


@router.delete("/{room_id}", response_model=StatusResponse, responses=errors(NO_ROOM))
async def delete_room(room_id: str, request: Request) -> dict[str, Any]:
    """Delete a room; every leg in it is hung up."""
    return commands(request).delete_room(room_id)


@router.post(
    "/{room_id}/legs",
    response_model=RoomAddResponse,
    response_model_exclude_none=True,
    response_model_by_alias=True,
    responses=errors(
        (400, "Invalid JSON or room id"),
        (404, "Leg not found"),
        (409, "Leg hung up or already in this room, or the room was deleted meanwhile"),
        (503, "No RTP port is free to answer the ringing leg"),
    ),
)
async def add_leg(room_id: str, body: AddLegRequest, request: Request) -> dict[str, Any]:
    """Add a leg to a room (created if missing), or move it here from its current room."""
    return await commands(request).add_leg_to_room(room_id, body)


@router.delete(
    "/{room_id}/legs/{leg_id}",
    response_model=StatusResponse,
    responses=errors((404, "Room not found or leg not in it")),
)
async def remove_leg(room_id: str, leg_id: str, request: Request) -> dict[str, Any]:
    """Take a leg out of a room without hanging it up."""
    return commands(request).remove_leg_from_room(room_id, leg_id)


@router.post(
    "/{room_id}/record",
    response_model=RecordingResponse,
    response_model_exclude_none=True,
    responses=errors(
        BAD_RECORDING,
        NO_ROOM,
        (409, "Room is being deleted, or is being recorded already"),
        RECORDING_FILE_FAILED,
        LATER_FIELD_GIVEN,
    ),
)
async def start_recording(
    room_id: str, request: Request, body: RecordingRequest | None = None
) -> dict[str, Any]:
    """Record the room mix (mono, at the room's rate); `multi_channel` adds one mono WAV per
    participant on the same timeline."""
    body = body or RecordingRequest.model_validate({})
    return await commands(request).start_recording("room", room_id, body)


@router.delete(
    "/{room_id}/record",
    response_model=RecordingResponse,
    response_model_exclude_none=True,
    responses=errors(NO_RECORDING),
)
async def stop_recording(room_id: str, request: Request) -> dict[str, Any]:
    """Stop the room recording; answers once its files are final (an S3 upload follows)."""
    return await commands(request).stop_recording("room", room_id)


@router.post(
    "/{room_id}/record/pause", response_model=StatusResponse, responses=errors(NO_RECORDING)
)
async def pause_recording(room_id: str, request: Request) -> dict[str, Any]:
    return commands(request).pause_recording("room", room_id)


@router.post(
    "/{room_id}/record/resume", response_model=StatusResponse, responses=errors(NO_RECORDING)
)
async def resume_recording(room_id: str, request: Request) -> dict[str, Any]:
    return commands(request).resume_recording("room", room_id)


@router.post(
    "/{room_id}/play",
    response_model=PlaybackResponse,
    responses=errors(
        BAD_PLAYBACK, NO_ROOM, (409, "Room is being deleted, or 16 playbacks play already")
    ),
)
async def play(room_id: str, body: PlaybackRequest, request: Request) -> dict[str, Any]:
    """Play an audio file (url + mime_type) or a built-in tone to every participant."""
    return commands(request).play_in_room(room_id, body)


@router.post(
    "/{room_id}/stt",
    response_model=STTResponse,
    response_model_exclude_none=True,
    responses=errors(
        (400, "Invalid JSON or unknown provider"),
        NO_ROOM,
        (409, "STT already runs in the room"),
        (503, "No API key for the chosen cloud provider"),
    ),
)
async def start_room_stt(room_id: str, body: STTRequest, request: Request) -> dict[str, Any]:
    """Transcribe every participant (one stream each): stt.text with leg_id and room_id."""
    return commands(request).stt_in_room(room_id, body)


@router.delete(
    "/{room_id}/stt",
    response_model=StatusResponse,
    responses=errors((404, "Room not found or no STT in progress")),
)
async def stop_room_stt(room_id: str, request: Request) -> dict[str, Any]:
    return await commands(request).stop_stt_in_room(room_id)


@router.post(
    "/{room_id}/tts",
    response_model=TTSResponse,
    response_model_exclude_none=True,
    responses=errors(
        BAD_TTS,
        NO_ROOM,
        (409, "Room has no participants or is being deleted, or 16 playbacks play already"),
        (503, "No API key for the chosen cloud provider"),
    ),
)
async def tts(room_id: str, body: TTSRequest, request: Request) -> dict[str, Any]:
    """Speak text to every participant. The job is a playback: PATCH/DELETE .../play/{tts_id}."""
    return commands(request).tts_in_room(room_id, body)


@router.delete(
    "/{room_id}/play",
    response_model=StatusResponse,
    responses=errors((404, "Room not found or no playback in progress")),
)
async def stop_all_playbacks(room_id: str, request: Request) -> dict[str, Any]:
    """Stop every playback of the room."""
    return commands(request).stop_room_playbacks(room_id)


@router.patch(
    "/{room_id}/play/{playback_id}",
    response_model=StatusResponse,
    responses=errors(BAD_VOLUME, NO_PLAYBACK),
)
async def playback_volume(
    room_id: str, playback_id: str, body: VolumeRequest, request: Request
) -> dict[str, Any]:
    """Change the volume of a room playback."""
    return commands(request).set_room_playback_volume(room_id, playback_id, body)


@router.delete(
    "/{room_id}/play/{playback_id}",
    response_model=StatusResponse,
    responses=errors(NO_PLAYBACK),
)
async def stop_playback(room_id: str, playback_id: str, request: Request) -> dict[str, Any]:
    """Stop one room playback."""
    return commands(request).stop_room_playback(room_id, playback_id)


@router.websocket("/{room_id}/ws")
async def room_websocket(websocket: WebSocket, room_id: str) -> None:
    """Join a room as an audio participant: base64 s16le 16 kHz 20 ms frames both ways."""
    cmds = commands(websocket)
    service = cmds.service
    if room_id not in service.rooms.rooms:
        await websocket.send_denial_response(
            JSONResponse(
                {"instance_id": cmds.instance_id, "error": f"room {room_id} not found"},
                status_code=404,
            )
        )
        return
    await websocket.accept()
    endpoint = service.ws_participants.join(room_id)
    await websocket.send_text(RoomWsFraming.hello(endpoint.id))
    interval = service.settings.vsi_ping_interval
    sender = asyncio.create_task(_send_audio(websocket, endpoint))
    pinger = asyncio.create_task(_ping(websocket, interval))
    receiver = asyncio.create_task(_receive(websocket, endpoint))
    slow = asyncio.create_task(endpoint.too_slow.wait())
    try:
        await asyncio.wait({sender, receiver, slow}, return_when=asyncio.FIRST_COMPLETED)
        if slow.done() and endpoint.id in service.ws_participants.endpoints:
            log.info(
                "room %s: dropping WebSocket participant %s (not reading)", room_id, endpoint.id
            )
    finally:
        service.ws_participants.leave(endpoint.id)
        for task in (sender, pinger, receiver, slow):
            task.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()


async def _send_audio(websocket: WebSocket, endpoint: AudioBridge) -> None:
    # A send that times out ends the participant like a disconnect (see the wait above).
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, TimeoutError):
        while True:
            frame = await endpoint.outbound.get()
            # A client whose socket has stopped draining must not hold this task forever.
            await asyncio.wait_for(websocket.send_text(RoomWsFraming.audio(frame)), timeout=2.0)


async def _ping(websocket: WebSocket, interval: float) -> None:
    event_id = 0
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await asyncio.sleep(interval)
            event_id += 1
            await websocket.send_text(RoomWsFraming.ping(event_id))


async def _receive(websocket: WebSocket, endpoint: AudioBridge) -> None:
    bad = 0
    while True:
        try:
            text = await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError, KeyError):
            return
        try:
            message = RoomWsFraming.parse(text)
            if message.kind == "audio":
                endpoint.push_pcm(message.audio)
            elif message.kind == "stop":
                return
        except ValueError as exc:
            bad += 1
            if bad <= 3:
                log.info("WebSocket participant %s: bad message: %s", endpoint.id, exc)
            with contextlib.suppress(Exception):
                await websocket.send_text(RoomWsFraming.error(str(exc)))
