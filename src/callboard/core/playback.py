"""Playbacks on a leg: frame sources the engine mixes into what the leg hears.

Only built-in telephone tones are served here so far; URL playback (download, decode) arrives
with the playback issue and answers 501 until then.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import numpy as np

from callboard.core.errors import BadRequest, Conflict, NotFound
from callboard.media.tones import ToneGenerator, resolve_tone

if TYPE_CHECKING:
    from callboard.core.leg import Leg

VOLUME_STEP_DB = 3.0


def volume_gain(volume: int) -> float:
    if not -8 <= volume <= 8:
        raise BadRequest(f"volume must be between -8 and 8, got {volume}")
    return float(10 ** (volume * VOLUME_STEP_DB / 20))


class TonePlayback:
    """A tone that plays until stopped, with a live volume."""

    def __init__(self, leg: Leg, tone: str, volume: int) -> None:
        try:
            plan = resolve_tone(tone)
        except (KeyError, ValueError):
            raise BadRequest(
                f"unknown tone {tone!r}: use {{country}}_{{type}} or {{type}} with types "
                "ringback, busy, dial, congestion and countries us, gb, de, fr, au, jp, it, in, "
                "br, pl, ru"
            ) from None
        self.id = f"pb-{uuid.uuid4()}"
        self.leg = leg
        self.gain = volume_gain(volume)
        self.stopped = False
        self._generator = ToneGenerator(plan)

    def set_volume(self, volume: int) -> None:
        self.gain = volume_gain(volume)

    def next_frame(self) -> np.ndarray | None:
        if self.stopped:
            return None
        frame = self._generator.next_frame()
        if self.gain != 1.0:
            scaled = frame.astype(np.float32) * self.gain
            return np.clip(scaled, -32768, 32767).astype(np.int16)
        return frame


class LegPlaybacks:
    """The playbacks of one leg, keyed by playback id."""

    def __init__(self) -> None:
        self.active: dict[str, TonePlayback] = {}

    def get(self, playback_id: str) -> TonePlayback:
        playback = self.active.get(playback_id)
        if playback is None:
            raise NotFound(f"playback {playback_id} not found")
        return playback

    def start_tone(self, leg: Leg, tone: str, volume: int) -> TonePlayback:
        media = leg.service.engine.get(leg.id)
        if media is None:
            raise Conflict(f"leg is {leg.state.value} and has no audio writer yet")
        playback = TonePlayback(leg, tone, volume)
        self.active[playback.id] = playback
        media.sources.append(playback)
        media.on_finished = self._finished
        leg.publish("playback.started", playback_id=playback.id)
        return playback

    def stop(self, playback_id: str) -> None:
        playback = self.get(playback_id)
        playback.stopped = True
        self._finished(playback)

    def stop_all(self) -> None:
        for playback in list(self.active.values()):
            playback.stopped = True
            self._finished(playback)

    def _finished(self, source: object) -> None:
        if not isinstance(source, TonePlayback):
            return
        if self.active.pop(source.id, None) is not None:
            media = source.leg.service.engine.get(source.leg.id)
            if media is not None and source in media.sources:
                media.sources.remove(source)
            source.leg.publish("playback.finished", playback_id=source.id)
