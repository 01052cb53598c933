"""The agent routes, the same under /v1/legs/{leg_id} and /v1/rooms/{room_id}: one attach
route per provider (each with its own request body), message injection and detach."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from callboard.api.commands import Commands
from callboard.api.schemas import (
    AgentMessageRequest,
    AgentResponse,
    DeepgramAgentRequest,
    ElevenLabsAgentRequest,
    PipecatAgentRequest,
    StatusResponse,
    VAPIAgentRequest,
    errors,
)

leg_router = APIRouter(prefix="/v1/legs", tags=["agents"])
room_router = APIRouter(prefix="/v1/rooms", tags=["agents"])


def commands(request: Request) -> Commands:
    cmds: Commands = request.app.state.commands
    return cmds


def _attach_errors(scope: str, required: str | None, provider: str) -> dict[int | str, Any]:
    missing = f"Invalid JSON or missing {required}" if required else "Invalid JSON"
    conflict = (
        "Leg not connected, agent already attached, or no audio reader/writer"
        if scope == "leg"
        else "Room is being deleted, has no participants, or has an agent already"
    )
    found = [(400, missing), (404, f"{scope.capitalize()} not found"), (409, conflict)]
    if provider != "pipecat":
        found.append((503, f"No {provider} API key provided"))
    return errors(*found)


# (URL name, request body, required field for the 400's text, provider name in messages)
_PROVIDERS = (
    ("elevenlabs", ElevenLabsAgentRequest, "agent_id", "ElevenLabs"),
    ("vapi", VAPIAgentRequest, "assistant_id", "VAPI"),
    ("pipecat", PipecatAgentRequest, "websocket_url", "pipecat"),
    ("deepgram", DeepgramAgentRequest, None, "Deepgram"),
)


def _leg_handler(body_type: type) -> Any:
    async def attach(leg_id: str, body: Any, request: Request) -> dict[str, Any]:
        return commands(request).agent_on_leg(leg_id, body)

    # The body's model, for FastAPI to parse and document (string annotations are resolved
    # against the module, where the loop's variable does not live).
    attach.__annotations__ = {"leg_id": str, "body": body_type, "request": Request}
    return attach


def _room_handler(body_type: type) -> Any:
    async def attach(room_id: str, body: Any, request: Request) -> dict[str, Any]:
        return commands(request).agent_in_room(room_id, body)

    attach.__annotations__ = {"room_id": str, "body": body_type, "request": Request}
    return attach


for _name, _body, _required, _title in _PROVIDERS:
    leg_router.add_api_route(
        f"/{{leg_id}}/agent/{_name}",
        _leg_handler(_body),
        methods=["POST"],
        response_model=AgentResponse,
        response_model_exclude_none=True,
        responses=_attach_errors("leg", _required, _title),
        summary=f"Attach a {_title} agent to a leg",
        description="The agent hears the leg alone; it speaks to the leg, or into the leg's "
        "room so that every participant hears it.",
        operation_id=f"attach_{_name}_agent_to_leg",
    )
    room_router.add_api_route(
        f"/{{room_id}}/agent/{_name}",
        _room_handler(_body),
        methods=["POST"],
        response_model=AgentResponse,
        response_model_exclude_none=True,
        responses=_attach_errors("room", _required, _title),
        summary=f"Attach a {_title} agent to a room",
        description="The agent is a participant: it hears the room's mix and everyone hears "
        "it; it ends when the room is deleted or its last participant leaves.",
        operation_id=f"attach_{_name}_agent_to_room",
    )

_MESSAGE_ERRORS = (
    (400, "Invalid JSON or missing message"),
    (409, "Agent session not running"),
    (501, "Provider does not support message injection"),
)


@leg_router.post(
    "/{leg_id}/agent/message",
    response_model=StatusResponse,
    responses=errors(
        _MESSAGE_ERRORS[0], (404, "No agent attached to this leg"), *_MESSAGE_ERRORS[1:]
    ),
)
async def leg_agent_message(
    leg_id: str, body: AgentMessageRequest, request: Request
) -> dict[str, Any]:
    """Inject a message: Deepgram InjectAgentMessage, Pipecat a TranscriptionFrame, VAPI
    add-message on the control URL, ElevenLabs contextual_update."""
    return await commands(request).agent_message_on_leg(leg_id, body)


@leg_router.delete(
    "/{leg_id}/agent",
    response_model=StatusResponse,
    responses=errors((404, "No agent attached to this leg")),
)
async def detach_leg_agent(leg_id: str, request: Request) -> dict[str, Any]:
    return await commands(request).stop_agent_on_leg(leg_id)


@room_router.post(
    "/{room_id}/agent/message",
    response_model=StatusResponse,
    responses=errors(
        _MESSAGE_ERRORS[0], (404, "No agent attached to this room"), *_MESSAGE_ERRORS[1:]
    ),
)
async def room_agent_message(
    room_id: str, body: AgentMessageRequest, request: Request
) -> dict[str, Any]:
    return await commands(request).agent_message_in_room(room_id, body)


@room_router.delete(
    "/{room_id}/agent",
    response_model=StatusResponse,
    responses=errors((404, "No agent attached to this room")),
)
async def detach_room_agent(room_id: str, request: Request) -> dict[str, Any]:
    return await commands(request).stop_agent_in_room(room_id)
