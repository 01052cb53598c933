"""One transport-neutral audio bridge: a media endpoint fed and drained by some socket.

A bridge is three parts that each transport picks:
- an input policy for the audio coming in: `LiveInput` (a live participant: a few frames of
  slack, the oldest dropped beyond that, so its latency stays bounded) or `PacedInput` (a
  reply that arrives in bursts faster than real time: played at one frame a tick from a
  bounded playout buffer that can be flushed, see streamed.py);
- the output side: the frames the far end should hear, in a bounded queue that the socket's
  sender drains (a reader that stops reading is detected, never waited for);
- a framing, which turns frames into the transport's messages and back: it lives with its
  transport (api/room_ws_framing.py for the room WebSocket's JSON and base64; provider sockets
  and WebRTC tracks bring their own).

Nothing here touches a socket or a wire format: the API layer (or a provider client) moves
the messages.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

import numpy as np

from callboard.media.frames import FRAME_SAMPLES, SAMPLE_RATE
from callboard.media.streamed import StreamedSource

# Frames a live client may run ahead before the oldest are dropped (keeps its latency bounded).
LIVE_SLACK_FRAMES = 10
# About one second of audio the far end has not taken yet: beyond that it is too slow.
MAX_OUTBOUND_FRAMES = 50


class InputPolicy(Protocol):
    def push(self, pcm: np.ndarray) -> None:
        """Audio from the far end (16 kHz int16, any length the policy accepts)."""
        ...

    def next_frame(self) -> np.ndarray | None:
        """The media clock's frame of it, or None when there is none this tick."""
        ...


class LiveInput:
    """Whole 20 ms frames, played as they come; beyond a small slack the oldest go."""

    def __init__(self, slack_frames: int = LIVE_SLACK_FRAMES) -> None:
        self.frames: deque[np.ndarray] = deque()
        self.slack_frames = slack_frames
        self.dropped_frames = 0

    def push(self, pcm: np.ndarray) -> None:
        if len(pcm) != FRAME_SAMPLES:
            raise ValueError(f"a live frame is {FRAME_SAMPLES} samples (20 ms at 16 kHz)")
        self.frames.append(pcm)
        while len(self.frames) > self.slack_frames:
            self.frames.popleft()
            self.dropped_frames += 1

    def next_frame(self) -> np.ndarray | None:
        return self.frames.popleft() if self.frames else None


class PacedInput:
    """Chunks of any size at any speed, paced out at real time (StreamedSource); what does
    not fit the buffer waits in `write` (backpressure) or is refused by `push`."""

    def __init__(self, max_ms: int = 10_000) -> None:
        self.stream = StreamedSource(max_ms)

    def push(self, pcm: np.ndarray) -> None:
        taken = self.stream.offer(pcm)
        if taken < len(pcm):
            raise ValueError(f"playout buffer full: {len(pcm) - taken} samples refused")

    async def write(self, pcm: np.ndarray) -> bool:
        return await self.stream.write(pcm)

    def flush(self) -> int:
        return self.stream.flush()

    def next_frame(self) -> np.ndarray | None:
        return self.stream.next_frame()


class AudioBridge:
    """The MediaEndpoint of a socket-borne participant, at 16 kHz."""

    sample_rate = SAMPLE_RATE
    law = None  # frames travel as PCM
    forward_key = None

    def __init__(self, bridge_id: str, inbound: InputPolicy | None = None) -> None:
        self.id = bridge_id
        self.inbound: InputPolicy = inbound or LiveInput()
        self.outbound: asyncio.Queue[bytes] = asyncio.Queue(MAX_OUTBOUND_FRAMES)
        self.too_slow = asyncio.Event()  # set once the far end stopped taking audio (or left)

    def push_pcm(self, data: bytes) -> None:
        """Audio from the far end as s16le bytes."""
        if len(data) % 2:
            raise ValueError("s16le audio must be a whole number of 2-byte samples")
        self.inbound.push(np.frombuffer(data, dtype="<i2").astype(np.int16))

    def close(self) -> None:
        """Wake whoever drains `outbound`: the bridge is done."""
        self.too_slow.set()

    # MediaEndpoint
    def read_frame(self) -> np.ndarray | None:
        return self.inbound.next_frame()

    def write_frame(self, pcm: np.ndarray) -> None:
        if self.too_slow.is_set():
            return
        try:
            self.outbound.put_nowait(pcm.astype("<i2").tobytes())
        except asyncio.QueueFull:
            self.too_slow.set()

    def prefer_rate(self, rate: int) -> None:
        """Always 16 kHz: the engine converts to the room's rate."""
