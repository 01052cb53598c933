"""Playbacks: frame sources the engine mixes into what a leg, or every member of a room, hears.

`Playbacks` is the registry of one leg or room: it puts a playback in the engine's source
list, and ends it exactly once with one event (`playback.finished`, or `playback.error`).
Tones live here; URL playback is in url_playback.py.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Protocol

import numpy as np

from callboard.core.errors import BadRequest, Conflict, NotFound
from callboard.events.base import LegOrRoomEvent
from callboard.events.types import PlaybackError, PlaybackFinished, PlaybackStarted
from callboard.media.engine import FrameSource
from callboard.media.tones import ToneGenerator, resolve_tone

log = logging.getLogger(__name__)

VOLUME_STEP_DB = 3.0
# Each playback of a URL holds a download and a decoder thread: a bound per leg or room.
MAX_PLAYBACKS = 16

Publish = Callable[[LegOrRoomEvent], object]
"""Publishes an event of the playback's leg or room (Leg.publish, RoomManager.publish)."""


def volume_gain(volume: int) -> float:
    if not -8 <= volume <= 8:
        raise BadRequest(f"volume must be between -8 and 8, got {volume}")
    return float(10 ** (volume * VOLUME_STEP_DB / 20))


class SourceHost(Protocol):
    """Where the engine takes a target's sources from: LegMedia or RoomMedia."""

    sources: list[FrameSource]
    on_finished: Callable[[FrameSource], None] | None


class Playback:
    """One playback: a FrameSource with an id, a live volume and a way to end."""

    def __init__(self, publish: Publish, volume: int) -> None:
        self.id = f"pb-{uuid.uuid4()}"
        self.publish = publish
        self.gain = volume_gain(volume)
        self.stopped = False

    def set_volume(self, volume: int) -> None:
        self.gain = volume_gain(volume)

    def begin(self, on_error: Callable[[Playback, str], None]) -> None:
        """Called once it is in the engine's sources; `on_error` ends it with an error."""

    def close(self) -> None:
        """Release what it holds; next_frame answers None from now on."""
        self.stopped = True

    def next_frame(self) -> np.ndarray | None:
        raise NotImplementedError

    def end_event(self, error: str | None, reason: str) -> LegOrRoomEvent:
        """The one event that closes this playback; `reason` says why it ended (completed,
        stopped, hangup, room_deleted) for the kinds that report it."""
        if error is None:
            return PlaybackFinished(playback_id=self.id)
        return PlaybackError(playback_id=self.id, error=error)

    def scaled(self, frame: np.ndarray) -> np.ndarray:
        """`frame` at this playback's volume (a new array unless the gain is 1)."""
        if self.gain == 1.0:
            return frame
        out = frame.astype(np.float32) * self.gain
        return np.clip(out, -32768, 32767).astype(np.int16)


class TonePlayback(Playback):
    """A telephone tone that plays until stopped."""

    def __init__(self, publish: Publish, tone: str, volume: int) -> None:
        try:
            plan = resolve_tone(tone)
        except (KeyError, ValueError):
            raise BadRequest(
                f"unknown tone {tone[:40]!r}: use {{country}}_{{type}} or {{type}} with types "
                "ringback, busy, dial, congestion and countries us, gb, de, fr, au, jp, it, in, "
                "br, pl, ru"
            ) from None
        super().__init__(publish, volume)
        self._generator = ToneGenerator(plan)

    def begin(self, on_error: Callable[[Playback, str], None]) -> None:
        self.publish(PlaybackStarted(playback_id=self.id))

    def next_frame(self) -> np.ndarray | None:
        if self.stopped:
            return None
        return self.scaled(self._generator.next_frame())


class Playbacks:
    """The playbacks of one leg or room, keyed by playback id."""

    def __init__(self) -> None:
        self.active: dict[str, Playback] = {}
        self._hosts: dict[str, SourceHost] = {}

    def get(self, playback_id: str) -> Playback:
        playback = self.active.get(playback_id)
        if playback is None:
            raise NotFound(f"playback {playback_id} not found")
        return playback

    def start(self, host: SourceHost, playback: Playback) -> Playback:
        if len(self.active) >= MAX_PLAYBACKS:
            raise Conflict(f"{MAX_PLAYBACKS} playbacks are already playing here")
        self.active[playback.id] = playback
        self._hosts[playback.id] = host
        host.sources.append(playback)
        host.on_finished = self._source_finished
        playback.begin(self._failed)
        return playback

    def stop(self, playback_id: str) -> None:
        self._end(self.get(playback_id), reason="stopped")

    def stop_all(self, reason: str = "stopped") -> int:
        """End every playback (stopped by the API, the leg hung up, the room is going
        away); returns how many."""
        playbacks = list(self.active.values())
        for playback in playbacks:
            self._end(playback, reason=reason)
        return len(playbacks)

    def _source_finished(self, source: FrameSource) -> None:
        """The engine found the source exhausted (it already left the source list)."""
        if isinstance(source, Playback):
            self._end(source)

    def _failed(self, playback: Playback, error: str) -> None:
        self._end(playback, error)

    def _end(self, playback: Playback, error: str | None = None, reason: str = "completed") -> None:
        if self.active.pop(playback.id, None) is None:
            return
        host = self._hosts.pop(playback.id, None)
        playback.close()
        if host is not None and playback in host.sources:
            host.sources.remove(playback)
        playback.publish(playback.end_event(error, reason))
