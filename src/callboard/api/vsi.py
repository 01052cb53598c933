"""GET /v1/vsi: the event stream and command channel over one WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from callboard.api.commands import Commands
from callboard.core.errors import CallboardError
from callboard.events.vsi import VsiClosed, VsiHub, VsiSubscriber

log = logging.getLogger(__name__)
router = APIRouter()
# The pattern runs against every event; a short cap limits what a hostile regex can cost.
MAX_PATTERN = 200


@router.websocket("/v1/vsi")
async def vsi(websocket: WebSocket) -> None:
    hub: VsiHub = websocket.app.state.vsi_hub
    commands: Commands = websocket.app.state.commands
    pattern = websocket.query_params.get("app_id")
    try:
        if pattern is not None and len(pattern) > MAX_PATTERN:
            raise ValueError(f"app_id pattern longer than {MAX_PATTERN} characters")
        subscriber = VsiSubscriber(pattern)
    except ValueError as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    await websocket.accept()
    await websocket.send_text(json.dumps({"type": "connected"}))
    hub.subscribe(subscriber)
    sender = asyncio.create_task(_send_events(websocket, subscriber))
    interval = commands.service.settings.vsi_ping_interval
    pinger = asyncio.create_task(_ping(websocket, subscriber, interval))
    try:
        await _receive_commands(websocket, commands, subscriber)
    finally:
        hub.unsubscribe(subscriber)
        subscriber.close()
        pinger.cancel()
        sender.cancel()
        with contextlib.suppress(Exception):
            await websocket.close()


async def _send_events(websocket: WebSocket, subscriber: VsiSubscriber) -> None:
    with contextlib.suppress(VsiClosed, WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        while True:
            await websocket.send_text(await subscriber.next_message())


async def _ping(websocket: WebSocket, subscriber: VsiSubscriber, interval: float) -> None:
    event_id = 0
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        while True:
            await asyncio.sleep(interval)
            event_id += 1
            subscriber.offer_control({"type": "ping", "event_id": event_id})


async def _receive_commands(
    websocket: WebSocket, commands: Commands, subscriber: VsiSubscriber
) -> None:
    table = commands.vsi_table()
    while True:
        try:
            frame = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if frame["type"] == "websocket.disconnect":
            return
        text = frame.get("text")
        if text is None:
            subscriber.offer_control(_error(None, 400, "binary frames are not accepted: send JSON"))
            continue
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than JSON allows
            subscriber.offer_control(_error(None, 400, "message is not valid JSON"))
            continue
        if not isinstance(message, dict):
            subscriber.offer_control(_error(None, 400, "message must be a JSON object"))
            continue
        kind = message.get("type")
        request_id = message.get("request_id")
        if kind == "stop":
            return
        if kind == "pong":
            continue
        handler = table.get(kind) if isinstance(kind, str) else None
        if handler is None:
            subscriber.offer_control(_error(request_id, 400, f"unknown command type {kind!r}"))
            continue
        payload = message.get("payload") or {}
        if not isinstance(payload, dict):
            subscriber.offer_control(_error(request_id, 400, "payload must be an object"))
            continue
        try:
            result = handler(payload)
            if inspect.isawaitable(result):
                result = await result
        except CallboardError as exc:
            subscriber.offer_control(_error(request_id, exc.status, str(exc)))
            continue
        except Exception:
            log.exception("VSI command %s failed", kind)
            subscriber.offer_control(_error(request_id, 500, "internal error"))
            continue
        subscriber.offer_control(
            {"type": f"{kind}.result", "request_id": request_id, "data": result}
        )


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"type": "error", "request_id": request_id, "data": {"code": code, "message": message}}
