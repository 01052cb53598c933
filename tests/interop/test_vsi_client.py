"""The VSI client helper against a tiny in-process WebSocket server speaking the VSI shape."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.helpers.vsi import AsyncVsiClient, VsiClient, VsiError, vsi_url


async def _handler(ws: ServerConnection) -> None:
    await ws.send(json.dumps({"type": "connected", "path": ws.request.path if ws.request else ""}))
    await ws.send(json.dumps({"type": "ping", "event_id": 1}))
    await ws.send(json.dumps({"type": "leg.ringing", "leg_id": "L1"}))
    async for raw in ws:
        message: dict[str, Any] = json.loads(raw)
        kind = message.get("type")
        if kind == "pong":
            await ws.send(json.dumps({"type": "pong.seen"}))
        elif kind == "stop":
            await ws.close()
        elif kind == "get_leg":
            leg_id = message["payload"].get("id")
            # An unrelated event first: results must still find their request.
            await ws.send(json.dumps({"type": "leg.connected", "leg_id": "L1"}))
            if leg_id == "nope":
                reply = {"type": "error", "request_id": message["request_id"],
                         "data": {"code": 404, "message": "leg not found"}}  # fmt: skip
            else:
                reply = {"type": "get_leg.result", "request_id": message["request_id"],
                         "data": {"id": leg_id, "state": "ringing"}}  # fmt: skip
            await ws.send(json.dumps(reply))


@pytest.fixture
def vsi_server() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def run() -> None:
        async with serve(_handler, "127.0.0.1", 0) as server:
            holder["port"] = server.sockets[0].getsockname()[1]
            holder["stop"] = asyncio.Event()
            started.set()
            await holder["stop"].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert started.wait(5)
    yield f"http://127.0.0.1:{holder['port']}"
    loop.call_soon_threadsafe(holder["stop"].set)
    thread.join(5)
    loop.close()


def test_sync_client(vsi_server: str) -> None:
    url = vsi_url(vsi_server, app_id="app-.*")
    assert url.startswith("ws://") and url.endswith("/v1/vsi?app_id=app-.%2A")
    with VsiClient(url) as client:
        assert client.recv()["type"] == "connected"
        assert client.recv() == {"type": "leg.ringing", "leg_id": "L1"}  # ping skipped
        assert client.recv()["type"] == "pong.seen"  # and answered
        assert client.command("get_leg", {"id": "L9"}) == {"id": "L9", "state": "ringing"}
        with pytest.raises(VsiError) as info:
            client.command("get_leg", {"id": "nope"})
        assert info.value.code == 404
        assert client.wait_for("leg.connected", leg_id="L1")["type"] == "leg.connected"
        assert client.recv()["type"] == "leg.connected"  # one per get_leg
        with pytest.raises(TimeoutError):
            client.recv(timeout=0.2)


async def test_async_client(vsi_server: str) -> None:
    async with AsyncVsiClient(vsi_url(vsi_server), keep_pings=True) as client:
        assert (await client.recv())["type"] == "connected"
        assert (await client.recv()) == {"type": "ping", "event_id": 1}
        reply = await client.command_raw("get_leg", {"id": "L2"})
        assert reply["type"] == "get_leg.result" and reply["request_id"].startswith("r")
