"""A paced playout buffer: audio that arrives in bursts (TTS, an agent's reply) played at
real time.

Producers (on the event loop) write 16 kHz samples in chunks of any size and as fast or as
slowly as they come; the media clock takes exactly one 20 ms frame a tick. The buffer holds at
most `max_ms`: `write` waits for room (backpressure on a producer that runs ahead of real time,
e.g. a synthesis at five times real time) and `offer` takes what fits now. `flush()` silences
it at once (barge-in), says how much was thrown away, and ends any `write` still waiting.
An empty buffer gives silence while the producer is still going (an underrun is counted,
never filled with repeats) and None once the producer has closed it and everything was
played.
"""

from __future__ import annotations

import asyncio
from collections import deque

import numpy as np

from callboard.media.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

DEFAULT_MAX_MS = 10_000
# A flush ends the audio with a 5 ms ramp down rather than mid-waveform, which clicks.
FADE_SAMPLES = SAMPLE_RATE // 200
_FADE = np.linspace(1.0, 0.0, FADE_SAMPLES, endpoint=False, dtype=np.float32)

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_SILENCE.setflags(write=False)


class StreamedSource:
    """A FrameSource fed from the event loop; runs on one thread (the loop's, like the clock)."""

    def __init__(self, max_ms: int = DEFAULT_MAX_MS) -> None:
        if max_ms < FRAME_MS:
            raise ValueError(f"max_ms must be at least one frame ({FRAME_MS} ms)")
        self.capacity = max_ms * SAMPLE_RATE // 1000  # samples
        self._chunks: deque[np.ndarray] = deque()
        self._buffered = 0
        self._frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._closed = False
        self._fade: np.ndarray | None = None  # the ramp a flush left for the next frame
        self._flushes = 0
        self._room = asyncio.Event()  # set while there is room for more
        self._room.set()
        self.started = False  # a frame with audio has been played
        self.played_frames = 0
        self.underrun_frames = 0  # ticks that found the buffer empty before the end
        self.flushed_ms = 0

    @property
    def buffered_ms(self) -> int:
        return self._buffered * 1000 // SAMPLE_RATE

    @property
    def closed(self) -> bool:
        return self._closed

    # ---- the producer's side ----

    def offer(self, samples: np.ndarray) -> int:
        """Take as many samples (16 kHz mono int16) as fit now; returns how many."""
        if self._closed:
            raise RuntimeError("write to a closed StreamedSource")
        take = min(len(samples), self.capacity - self._buffered)
        if take > 0:
            self._chunks.append(np.array(samples[:take], dtype=np.int16))
            self._buffered += take
        if self._buffered >= self.capacity:
            self._room.clear()
        return max(take, 0)

    async def write(self, samples: np.ndarray) -> bool:
        """Queue all of `samples`, waiting for room while the buffer is full. Returns False
        when a flush (barge-in) or close came first: the rest of `samples` is dropped, so
        an interrupted reply never resumes."""
        flushes = self._flushes
        done = 0
        while done < len(samples):
            done += self.offer(samples[done:])
            if done < len(samples):
                await self._room.wait()
                if self._closed or self._flushes != flushes:
                    return False
        return True

    def close(self) -> None:
        """No more audio: what is buffered plays out, then the source ends."""
        self._closed = True
        self._room.set()  # a waiting writer returns

    def flush(self) -> int:
        """Drop everything buffered at once (barge-in): the next frame is a 5 ms fade of what
        would have played, then silence. Returns the milliseconds dropped."""
        dropped = self._buffered * 1000 // SAMPLE_RATE
        self._flushes += 1
        if self._chunks and self.started:
            head = np.concatenate(list(self._chunks)[:FADE_SAMPLES])[:FADE_SAMPLES]
            self._fade = (head * _FADE[: len(head)]).astype(np.int16)
        self._chunks.clear()
        self._buffered = 0
        self.flushed_ms += dropped
        self._room.set()
        return dropped

    # ---- the media clock's side (FrameSource) ----

    def next_frame(self) -> np.ndarray | None:
        if self._fade is not None:
            fade, self._fade = self._fade, None
            if self._buffered == 0:
                frame = self._frame
                frame[:] = 0
                frame[: len(fade)] = fade
                return frame
        if self._buffered < FRAME_SAMPLES and not self._closed:
            # Not a whole frame yet: wait for the rest rather than play a gap into the word.
            if self.started:
                self.underrun_frames += 1
            return _SILENCE
        if self._buffered == 0:
            return None  # closed and played out
        frame = self._frame
        filled = 0
        while filled < FRAME_SAMPLES and self._chunks:
            chunk = self._chunks[0]
            take = min(FRAME_SAMPLES - filled, len(chunk))
            frame[filled : filled + take] = chunk[:take]
            filled += take
            if take == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[take:]
        if filled < FRAME_SAMPLES:  # the stream's last, partial frame
            frame[filled:] = 0
        self._buffered -= filled
        self.started = True
        self.played_frames += 1
        if self._buffered < self.capacity:
            self._room.set()
        return frame
