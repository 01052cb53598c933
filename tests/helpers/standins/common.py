"""What the speech stand-ins share: the test signal, the knobs a test turns, the request log,
and running an ASGI app on a free local port in a background thread.

The signal is a sine whose frequency belongs to the voice, lasting `signal_seconds(text)`, so a
test can check that the audio at the far end is this very answer (frequency and duration), not
just that some bytes arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from starlette.requests import Request
from starlette.types import ASGIApp

SIGNAL_AMPLITUDE = 10_000
SECONDS_PER_CHARACTER = 0.05
MIN_SECONDS = 1.0


def signal_seconds(text: str) -> float:
    """How long the answer to `text` lasts: proportional to its length, at least 1 s, in whole
    10 ms so that every sample rate gets a whole number of samples."""
    return max(MIN_SECONDS, round(len(text) * SECONDS_PER_CHARACTER, 2))


def signal_samples(text: str, rate: int) -> int:
    return round(signal_seconds(text) * rate)


def sine(frequency: float, rate: int, samples: int) -> np.ndarray:
    """int16 samples of the test signal."""
    t = np.arange(samples) / rate
    return np.rint(SIGNAL_AMPLITUDE * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


class DropConnection(Exception):
    """Raised inside a streamed answer: uvicorn then closes the socket mid-body."""


class _QuietDrops(logging.Filter):
    """uvicorn logs every exception from an app; a planned drop is not worth a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, DropConnection):
                return False
            if isinstance(exc, BaseExceptionGroup) and exc.subgroup(DropConnection):
                return False
            exc = exc.__cause__ or exc.__context__
        return True


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


@dataclass(frozen=True)
class Recorded:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class Plan:
    """What happens to one synthesis request, fixed when it arrives."""

    fail: tuple[int, Any] | None = None  # (status, body or None for the provider's default)
    drop_after: int | None = None  # bytes of audio sent before the connection is cut
    stall: tuple[int, float] | None = None  # (after bytes, seconds) of silence mid-stream


@dataclass
class Knobs:
    """Test controls, safe to turn from the test's thread while the server runs."""

    chunk_bytes: int = 1001  # odd on purpose: a client must carry a split sample over
    chunk_interval: float = 0.005  # seconds between chunks
    first_byte_delay: float = 0.0  # seconds before anything is sent...
    delay_after_headers: bool = False  # ...or before the first audio, once headers are out
    requests: list[Recorded] = field(default_factory=list)
    _failures: list[tuple[int, Any]] = field(default_factory=list)
    _drops: list[int] = field(default_factory=list)
    _stalls: list[tuple[int, float]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, status: int, count: int = 1, body: Any = None) -> None:
        """Answer the next `count` synthesis requests with `status` (and the provider's error
        body for it, or `body`), after the key check."""
        with self._lock:
            self._failures.extend([(status, body)] * count)

    def drop_next(self, count: int = 1, after_bytes: int = 4000) -> None:
        """Cut the connection of the next `count` synthesis answers after `after_bytes`."""
        with self._lock:
            self._drops.extend([after_bytes] * count)

    def stall_next(self, seconds: float, count: int = 1, after_bytes: int = 4000) -> None:
        """Pause the next `count` synthesis answers for `seconds` after `after_bytes`."""
        with self._lock:
            self._stalls.extend([(after_bytes, seconds)] * count)

    def count(self, path_prefix: str = "") -> int:
        """Requests received whose path starts with `path_prefix` (all by default)."""
        with self._lock:
            return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    def last(self, path_prefix: str = "") -> Recorded:
        with self._lock:
            return next(r for r in reversed(self.requests) if r.path.startswith(path_prefix))

    def reset(self) -> None:
        """Back to the defaults, with an empty request log."""
        with self._lock:
            self.chunk_bytes, self.chunk_interval = 1001, 0.005
            self.first_byte_delay, self.delay_after_headers = 0.0, False
            self.requests.clear()
            self._failures.clear()
            self._drops.clear()
            self._stalls.clear()

    async def record(self, request: Request) -> Recorded:
        body = await request.body()
        recorded = Recorded(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            body,
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def plan(self) -> Plan:
        """Take this synthesis request's share of the queued failures, drops and stalls."""
        with self._lock:
            fail = self._failures.pop(0) if self._failures else None
            if fail is not None:
                return Plan(fail=fail)
            drop = self._drops.pop(0) if self._drops else None
            stall = self._stalls.pop(0) if self._stalls else None
            return Plan(drop_after=drop, stall=stall)

    async def before_headers(self) -> None:
        if self.first_byte_delay and not self.delay_after_headers:
            await asyncio.sleep(self.first_byte_delay)

    async def stream(self, audio: bytes, plan: Plan, prefix: bytes = b"") -> AsyncIterator[bytes]:
        """`prefix` (a container header) then `audio`, in small chunks with small delays,
        dropped or stalled as planned."""
        if self.first_byte_delay and self.delay_after_headers:
            await asyncio.sleep(self.first_byte_delay)
        if prefix:
            yield prefix
        sent = 0
        stalled = False
        size = max(1, self.chunk_bytes)
        for start in range(0, len(audio), size):
            piece = audio[start : start + size]
            if plan.drop_after is not None and sent + len(piece) > plan.drop_after:
                if plan.drop_after > sent:
                    yield piece[: plan.drop_after - sent]
                    await asyncio.sleep(self.chunk_interval)
                raise DropConnection
            if plan.stall is not None and not stalled and sent + len(piece) > plan.stall[0]:
                stalled = True
                await asyncio.sleep(plan.stall[1])
            yield piece
            sent += len(piece)
            if self.chunk_interval:
                await asyncio.sleep(self.chunk_interval)


def start_standin(
    app: ASGIApp, *, websockets: bool = False, recv_buffer: int | None = None
) -> tuple[str, Callable[[], None]]:
    """Serve `app` with uvicorn on 127.0.0.1 at a free port, in a daemon thread; with
    `websockets`, uvicorn's sans-io WebSocket implementation (it stops reading a socket until
    the app takes the last message); `recv_buffer` sets the accepted sockets' receive buffer.

    Returns `(base_url, stop)`; `stop()` shuts the server down (idempotent). The base URL is
    what ELEVENLABS_BASE_URL / DEEPGRAM_BASE_URL take, in this process or a child server.
    """
    # IPPROTO_TCP named: asyncio then turns Nagle off on the connections it accepts, so a
    # small reply is not held back until the client's next packet acknowledges the last.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if recv_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)  # inherited on accept
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop="asyncio",
        http="h11",
        ws="websockets-sansio" if websockets else "none",
        lifespan="off",
        log_config=None,  # leave the process' logging as the tests set it
        access_log=False,
        timeout_graceful_shutdown=1,  # a stalled answer must not hold the shutdown
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"standin-{port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


@contextlib.contextmanager
def running_standin(app: ASGIApp) -> Iterator[str]:
    """`start_standin` as a context manager yielding the base URL."""
    base_url, stop = start_standin(app)
    try:
        yield base_url
    finally:
        stop()
