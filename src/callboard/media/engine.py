"""The per-tick media work: pull a frame from every leg, work out what each leg hears, push it.

The engine knows legs only as `MediaEndpoint`s (anything that can give and take 20 ms frames
of 16 kHz PCM), so SIP/RTP, WebRTC and WebSocket participants are all the same to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from callboard.media.frames import FRAME_SAMPLES

SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE.setflags(write=False)


class MediaEndpoint(Protocol):
    """A transport's side of a leg, as the media clock sees it."""

    def read_frame(self) -> np.ndarray | None: ...

    def write_frame(self, pcm: np.ndarray) -> None: ...


class FrameSource(Protocol):
    """Something that adds audio to what a leg hears (tones, playback)."""

    def next_frame(self) -> np.ndarray | None:
        """The next 20 ms at 16 kHz, or None once finished."""
        ...


class LegMedia:
    """The engine's record of one leg with media: its endpoint, its sources, its last frame."""

    __slots__ = ("endpoint", "key", "last_in", "on_finished", "sources")

    def __init__(self, key: str, endpoint: MediaEndpoint) -> None:
        self.key = key
        self.endpoint = endpoint
        self.sources: list[FrameSource] = []
        self.last_in: np.ndarray | None = None
        self.on_finished: Callable[[FrameSource], None] | None = None

    def heard_frame(self) -> np.ndarray:
        """What this leg hears this tick: its sources summed, else comfort silence."""
        if not self.sources:
            return SILENCE
        total: np.ndarray | None = None
        for source in list(self.sources):
            frame = source.next_frame()
            if frame is None:
                self.sources.remove(source)
                if self.on_finished is not None:
                    self.on_finished(source)
                continue
            if total is None:
                total = frame.astype(np.int32)
            else:
                total += frame
        if total is None:
            return SILENCE
        return np.clip(total, -32768, 32767).astype(np.int16)


class MediaEngine:
    """Holds every leg with media and runs one tick over all of them."""

    def __init__(self) -> None:
        self._legs: dict[str, LegMedia] = {}

    def __len__(self) -> int:
        return len(self._legs)

    def attach(self, key: str, endpoint: MediaEndpoint) -> LegMedia:
        media = self._legs.get(key)
        if media is None or media.endpoint is not endpoint:
            media = LegMedia(key, endpoint)
            self._legs[key] = media
        return media

    def detach(self, key: str) -> None:
        self._legs.pop(key, None)

    def get(self, key: str) -> LegMedia | None:
        return self._legs.get(key)

    def tick(self) -> None:
        legs = list(self._legs.values())
        for media in legs:
            media.last_in = media.endpoint.read_frame()
        for media in legs:
            media.endpoint.write_frame(media.heard_frame())
