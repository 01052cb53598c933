"""What the streaming speech-to-text stand-ins share: a "recogniser" that hears bursts of a
sine tone in the audio it is sent, the knobs a test turns, the log of connections, and
running an ASGI WebSocket app on a free local port.

The recogniser makes transcripts out of the audio itself, so a test proves the audio really
flowed: a burst of a sine (RMS above a threshold, 20 ms frames) is "heard" as `tone <Hz>`
(the frequency rounded to 10 Hz), with interim results while the burst lasts and a final one
once `end_silence` seconds of quiet follow it (or when the stream is flushed).

    recogniser = ToneRecogniser(16000, end_silence=0.3)
    for heard in recogniser.feed(samples): ...   # Heard("tone 440", final=False, ...)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from starlette.types import ASGIApp

from tests.helpers.standins.common import sine, start_standin

FRAME_SECONDS = 0.02
VOICED_RMS = 1000.0  # the test signal's RMS is about 7000; digital silence is 0
INTERIM_EVERY = 0.2  # seconds of a burst between interim results


@dataclass(frozen=True)
class Heard:
    """One result: `text` of a burst (or "" for a stretch of silence), from `start` for
    `duration` seconds of the stream's audio."""

    text: str
    final: bool
    start: float
    duration: float


class ToneRecogniser:
    """Hears bursts of a tone in a PCM16 stream, 20 ms at a time."""

    def __init__(
        self,
        rate: int,
        *,
        end_silence: float,
        interim_every: float = INTERIM_EVERY,
        idle_every: float | None = None,
    ) -> None:
        self.rate = rate
        self.frame = max(1, round(rate * FRAME_SECONDS))
        self.end_frames = max(1, round(end_silence / FRAME_SECONDS))
        self.interim_frames = max(1, round(interim_every / FRAME_SECONDS))
        # Report stretches of silence as empty finals every `idle_every` s (as Deepgram does).
        self.idle_frames = round(idle_every / FRAME_SECONDS) if idle_every else None
        self.frames = 0  # frames heard so far: the stream's clock
        self._pending = np.zeros(0, dtype=np.int16)
        self._burst: list[np.ndarray] = []
        self._burst_start = 0
        self._quiet = 0  # silent frames since the burst's last voiced frame
        self._idle = 0  # silent frames with no burst open since the last empty final

    @property
    def seconds(self) -> float:
        return self.frames * FRAME_SECONDS

    @property
    def in_burst(self) -> bool:
        return bool(self._burst)

    def feed(self, samples: np.ndarray) -> list[Heard]:
        data = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        whole = len(data) - len(data) % self.frame
        self._pending = data[whole:]
        heard: list[Heard] = []
        for start in range(0, whole, self.frame):
            heard.extend(self._frame(data[start : start + self.frame]))
        return heard

    def flush(self) -> Heard | None:
        """The open burst's final result, now (end of stream, Finalize, manual commit)."""
        if not self._burst:
            return None
        return self._end_burst()

    def _frame(self, frame: np.ndarray) -> list[Heard]:
        self.frames += 1
        rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
        if rms >= VOICED_RMS:
            if not self._burst:
                self._burst_start = self.frames - 1
            self._burst.append(frame)
            self._quiet = 0
            self._idle = 0
            if len(self._burst) % self.interim_frames == 0:
                return [self._result(final=False)]
            return []
        if self._burst:
            self._quiet += 1
            if self._quiet >= self.end_frames:
                return [self._end_burst()]
            return []
        self._idle += 1
        if self.idle_frames and self._idle >= self.idle_frames:
            self._idle = 0
            start = (self.frames - self.idle_frames) * FRAME_SECONDS
            return [Heard("", True, start, self.idle_frames * FRAME_SECONDS)]
        return []

    def _end_burst(self) -> Heard:
        heard = self._result(final=True)
        self._burst = []
        self._quiet = 0
        return heard

    def _result(self, final: bool) -> Heard:
        samples = np.concatenate(self._burst).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
        hz = float(np.argmax(spectrum)) * self.rate / len(samples)
        start = self._burst_start * FRAME_SECONDS
        return Heard(f"tone {round(hz / 10) * 10}", final, start, self.seconds - start)


def tone_pcm(segments: list[tuple[float, float]], rate: int = 16000) -> bytes:
    """PCM16 LE of `(frequency, seconds)` segments, frequency 0 for silence."""
    parts = [
        sine(hz, rate, round(seconds * rate))
        if hz
        else np.zeros(round(seconds * rate), dtype=np.int16)
        for hz, seconds in segments
    ]
    return np.concatenate(parts).astype("<i2").tobytes()


async def pcm_chunks(
    data: bytes, size: int = 640, pauses: dict[int, float] | None = None
) -> AsyncIterator[bytes]:
    """`data` in `size`-byte chunks (640 = 20 ms at 16 kHz) as fast as they are taken, with
    `pauses` (chunk index -> seconds without audio) where asked."""
    for index, start in enumerate(range(0, len(data), size)):
        if pauses and index in pauses:
            await asyncio.sleep(pauses[index])
        yield data[start : start + size]
        await asyncio.sleep(0)


@dataclass
class Connection:
    """One WebSocket handshake as the stand-in saw it, and what followed."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    status: int = 101  # or the HTTP status it was refused with
    audio_bytes: int = 0
    received: list[Any] = field(default_factory=list)  # text messages, parsed JSON if they are
    sent: list[Any] = field(default_factory=list)  # JSON messages sent
    close_code: int | None = None  # who closed: the client's code, or ours
    closed_by: str | None = None  # "client", "server", "drop"


@dataclass(frozen=True)
class SocketPlan:
    """What happens to one connection, fixed at its handshake."""

    reject: tuple[int, Any] | None = None  # (status, body or None for the provider's own)
    drop_after: int | None = None  # audio bytes, then the TCP connection is cut
    stall_after: int | None = None  # audio bytes, then the server stops reading
    error: tuple[int, Any] | None = None  # (after audio bytes, the provider's error)


@dataclass
class SocketKnobs:
    """Test controls, safe to turn from the test's thread while the server runs."""

    idle_timeout: float | None = 10.0  # seconds with nothing received before the server quits
    answer_end: bool = True  # answer the end-of-audio message (results, then close)
    stall_seconds: float = 3.0  # how long a stalled connection stops reading, at most
    connections: list[Connection] = field(default_factory=list)
    _rejects: list[tuple[int, Any]] = field(default_factory=list)
    _drops: list[int] = field(default_factory=list)
    _stalls: list[int] = field(default_factory=list)
    _errors: list[tuple[int, Any]] = field(default_factory=list)
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reject_next(self, status: int, count: int = 1, body: Any = None) -> None:
        """Refuse the next `count` handshakes (after the key check) with `status`."""
        with self._lock:
            self._rejects.extend([(status, body)] * count)

    def drop_next(self, after_bytes: int = 16000, count: int = 1) -> None:
        """Cut the TCP connection of the next `count` sessions after `after_bytes` of audio."""
        with self._lock:
            self._drops.extend([after_bytes] * count)

    def stall_next(self, after_bytes: int = 0, count: int = 1) -> None:
        """Stop reading the next `count` sessions after `after_bytes` of audio, for
        `stall_seconds` or until `reset()`."""
        with self._lock:
            self._stalls.extend([after_bytes] * count)
            self._released.clear()

    def error_next(self, error: Any, after_bytes: int = 0, count: int = 1) -> None:
        """End the next `count` sessions with the provider's own error after `after_bytes`
        (Deepgram: `(close code, reason)`; ElevenLabs: `(message_type, text)`)."""
        with self._lock:
            self._errors.extend([(after_bytes, error)] * count)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self.connections)

    @property
    def bytes_received(self) -> int:
        with self._lock:
            return sum(c.audio_bytes for c in self.connections)

    def last(self) -> Connection:
        with self._lock:
            return self.connections[-1]

    def reset(self) -> None:
        with self._lock:
            self.idle_timeout, self.answer_end, self.stall_seconds = 10.0, True, 3.0
            self.connections.clear()
            self._rejects.clear()
            self._drops.clear()
            self._stalls.clear()
            self._errors.clear()
            self._released.set()

    def open(self, path: str, query: dict[str, str], headers: dict[str, str]) -> Connection:
        connection = Connection(path, dict(query), {k.lower(): v for k, v in headers.items()})
        with self._lock:
            self.connections.append(connection)
        return connection

    def plan(self) -> SocketPlan:
        """Take this connection's share of the queued rejections, drops, stalls and errors."""
        with self._lock:
            if self._rejects:
                return SocketPlan(reject=self._rejects.pop(0))
            return SocketPlan(
                drop_after=self._drops.pop(0) if self._drops else None,
                stall_after=self._stalls.pop(0) if self._stalls else None,
                error=self._errors.pop(0) if self._errors else None,
            )

    async def stall(self) -> None:
        """Stop reading: uvicorn then stops reading the socket, so the client's writes back
        up into the TCP buffers and finally block."""
        deadline = time.monotonic() + self.stall_seconds
        while not self._released.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


def start_ws_standin(app: ASGIApp, recv_buffer: int = 32 * 1024) -> tuple[str, Callable[[], None]]:
    """Serve a WebSocket `app` with uvicorn on 127.0.0.1 at a free port, in a daemon thread.

    Like `common.start_standin`, but with WebSockets on (uvicorn's sans-io implementation,
    which stops reading a socket until the app takes the last message) and a small receive
    buffer, so that a stand-in that stops reading blocks its client's writes quickly.
    Returns `(base_url, stop)`; the base URL (http://...) is what the providers' base URL
    settings take.
    """
    return start_standin(app, websockets=True, recv_buffer=recv_buffer)


@contextmanager
def running_ws_standin(app: ASGIApp) -> Iterator[str]:
    """`start_ws_standin` as a context manager yielding the base URL."""
    base_url, stop = start_ws_standin(app)
    try:
        yield base_url
    finally:
        stop()
