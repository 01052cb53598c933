"""Clients for the VSI event/command WebSocket (``GET /v1/vsi``).

``AsyncVsiClient`` for async tests; ``VsiClient`` wraps it for plain sync tests by running its
own event loop in a background thread. Both answer server pings with a pong by themselves and
keep them out of the event stream (set ``keep_pings=True`` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import threading
from typing import Any
from urllib.parse import quote

try:  # websockets >= 13
    from websockets.asyncio.client import connect as ws_connect
except ImportError:  # pragma: no cover - websockets 12
    from websockets import connect as ws_connect  # type: ignore[no-redef,attr-defined]

from websockets.exceptions import ConnectionClosed


class VsiError(Exception):
    """A command answered with ``{"type": "error", ...}``; ``code`` and ``message`` from it."""

    def __init__(self, reply: dict[str, Any]) -> None:
        data = reply.get("data") or {}
        self.reply = reply
        self.code = data.get("code")
        self.message = data.get("message")
        super().__init__(f"VSI error {self.code}: {self.message}")


def vsi_url(base: str, app_id: str | None = None) -> str:
    """``base`` is the server's http:// or ws:// base URL."""
    base = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/")
    url = f"{base}/v1/vsi"
    return f"{url}?app_id={quote(app_id)}" if app_id is not None else url


class AsyncVsiClient:
    def __init__(self, url: str, *, keep_pings: bool = False) -> None:
        self.url = url
        self.keep_pings = keep_pings
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self, timeout: float = 5.0) -> AsyncVsiClient:
        self._ws = await asyncio.wait_for(ws_connect(self.url, open_timeout=timeout), timeout)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aenter__(self) -> AsyncVsiClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                message = json.loads(raw)
                kind = message.get("type")
                request_id = message.get("request_id")
                if request_id is not None and request_id in self._pending:
                    future = self._pending.pop(request_id)
                    if not future.done():
                        future.set_result(message)
                    continue
                if kind == "ping":
                    await self._ws.send(json.dumps({"type": "pong"}))
                    if not self.keep_pings:
                        continue
                await self.messages.put(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("VSI connection closed"))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        """Next message (event, ``connected``, ``events_dropped``...) within ``timeout``."""
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def wait_for(self, type: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Skip messages until one of ``type`` whose fields equal ``match`` arrives."""

        async def find() -> dict[str, Any]:
            while True:
                message = await self.messages.get()
                if message.get("type") == type and all(
                    message.get(k) == v for k, v in match.items()
                ):
                    return message

        return await asyncio.wait_for(find(), timeout)

    async def send(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message))

    async def command(
        self, type: str, payload: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> Any:
        """Send a command and return the ``data`` of its ``<type>.result`` (dict or list).

        Raises :class:`VsiError` when the server answers ``{"type": "error"}``.
        """
        reply = await self.command_raw(type, payload, timeout)
        if reply.get("type") == "error":
            raise VsiError(reply)
        assert reply.get("type") == f"{type}.result", reply
        return reply.get("data")

    async def command_raw(
        self, type: str, payload: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Send a command; return the whole reply (result or error) with its request_id."""
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        await self.send({"type": type, "request_id": request_id, "payload": payload or {}})
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(request_id, None)

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.send(json.dumps({"type": "stop"}))
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 2)


class VsiClient:
    """Blocking facade over :class:`AsyncVsiClient` (its loop runs in a daemon thread)."""

    def __init__(self, url: str, *, keep_pings: bool = False, timeout: float = 5.0) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._client = AsyncVsiClient(url, keep_pings=keep_pings)
        self._run(self._client.connect(timeout), timeout + 1)

    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        try:
            return self._run(self._client.recv(timeout), timeout + 1)  # type: ignore[no-any-return]
        except TimeoutError:
            raise TimeoutError(f"no VSI message within {timeout:g}s") from None

    def wait_for(self, type: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        return self._run(  # type: ignore[no-any-return]
            self._client.wait_for(type, timeout, **match), timeout + 1
        )

    def send(self, message: dict[str, Any]) -> None:
        self._run(self._client.send(message), 5)

    def command(
        self, type: str, payload: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> Any:
        """The ``data`` of the result; raises :class:`VsiError` on an error reply."""
        return self._run(self._client.command(type, payload, timeout), timeout + 1)

    def command_raw(
        self, type: str, payload: dict[str, Any] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        return self._run(  # type: ignore[no-any-return]
            self._client.command_raw(type, payload, timeout), timeout + 1
        )

    @property
    def is_closed(self) -> bool:
        return self._client.closed.is_set()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._run(self._client.close(), 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> VsiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
