"""A real, minimal HTTP/1.1 receiver for webhook tests (no mocking of httpx)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Received:
    index: int
    at: float  # time.monotonic() when the body had arrived
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


# Returns the status to answer with, or None to hang until the client gives up.
Decide = Callable[[Received], int | None]


class HttpReceiver:
    """Records every request; answers as `decide` says; `gate` can hold all answers back."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.decide: Decide = lambda _req: 200
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                await asyncio.sleep(0.005)

    def bodies(self) -> list[Any]:
        return [r.json() for r in self.requests]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            # Keep-alive loop: httpx reuses connections.
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                path = request_line.decode("latin-1").split(" ")[1]
                headers: dict[str, str] = {}
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                req = Received(len(self.requests), time.monotonic(), path, headers, body)
                self.requests.append(req)
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    if self.gate is not None:
                        await self.gate.wait()
                    status = self.decide(req)
                    if status is None:
                        await asyncio.sleep(3600)
                        return
                finally:
                    self.in_flight -= 1
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # stop() cancels hanging handlers; ending quietly keeps asyncio's stream
            # callback from reporting the cancellation as an error.
            return
        finally:
            self._handlers.discard(task)
            writer.close()
