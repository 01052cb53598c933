"""speaking.started / speaking.stopped for every connected leg: one SpeakingAnalyser per leg on
the engine, removed through the lifecycle hub when the leg ends."""

from __future__ import annotations

from functools import partial

from callboard.core.leg import Leg, LegState
from callboard.core.lifecycle import Lifecycle
from callboard.events.types import SpeakingStarted, SpeakingStopped
from callboard.media.engine import MediaEngine
from callboard.media.speaking import SpeakingAnalyser


class SpeakingDetection:
    def __init__(self, engine: MediaEngine, lifecycle: Lifecycle) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self._analysers: dict[str, SpeakingAnalyser] = {}  # leg id -> its detector

    def ensure(self, leg: Leg) -> None:
        """Start detection on a connected leg with media, once."""
        if leg.state is not LegState.CONNECTED or leg.id in self._analysers:
            return
        if self.engine.get(leg.id) is None:
            return
        analyser = SpeakingAnalyser(partial(self._changed, leg))
        self.engine.add_analyser(leg.id, analyser)
        self._analysers[leg.id] = analyser
        self.lifecycle.on_leg_ended(leg.id, partial(self._leg_ended, leg.id))

    def muted(self, leg: Leg) -> None:
        """No speaking events while muted: close an open started/stopped pair now."""
        analyser = self._analysers.get(leg.id)
        if analyser is not None:
            analyser.close()

    def _leg_ended(self, leg_id: str) -> None:
        analyser = self._analysers.pop(leg_id, None)
        if analyser is not None:
            analyser.close()  # hung up mid-sentence: "stopped" while room_id is still set

    @staticmethod
    def _changed(leg: Leg, change: str) -> None:
        event = SpeakingStarted if change == "started" else SpeakingStopped
        leg.publish(event(room_id=leg.room_id or None))
