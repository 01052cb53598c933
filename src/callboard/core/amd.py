"""Answering-machine detection on SIP legs: an analyser on the leg's incoming audio (the
sans-IO detector is media/amd.py) that publishes `amd.result` and, when asked, `amd.beep`.

It starts at the 200 OK, never on early media (ringback and announcements would fool it):
`arm` notes a leg created with `amd`, `media_ready` starts it once the leg is connected. A leg
created with both `amd` and `room_id` joins its room only after the verdict, and not at all
when the verdict is `machine`: a dialer must not connect a machine to its agents.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from callboard.core.errors import Conflict
from callboard.core.leg import Leg, LegState
from callboard.core.lifecycle import Lifecycle, Registration
from callboard.events.types import AmdBeep, AmdResult
from callboard.media.amd import (
    AmdDetector,
    AmdOutcome,
    AmdParams,
    AmdVerdict,
    BeepFound,
    BeepTimeout,
)
from callboard.media.attachments import AttachmentHandle
from callboard.media.engine import MediaEngine

log = logging.getLogger(__name__)

_SLACK_S = 1.0  # beyond the analysis window, before a silent line is given up on


@dataclass
class _Run:
    leg: Leg
    detector: AmdDetector
    room_id: str | None  # joined after a verdict other than machine
    handle: AttachmentHandle | None = None
    timer: asyncio.TimerHandle | None = None
    registration: Registration | None = None


class _Analyser:
    def __init__(self, run: _Run, report: Callable[[_Run, list[AmdOutcome]], None]) -> None:
        self._run = run
        self._report = report

    def analyse(self, frame: np.ndarray, rate: int, level_dbfs: float, muted: bool) -> None:
        outcomes = self._run.detector.frame(frame, rate, level_dbfs)
        if outcomes:
            self._report(self._run, outcomes)


class AnsweringMachineDetection:
    def __init__(
        self, engine: MediaEngine, lifecycle: Lifecycle, join_room: Callable[[Leg], None]
    ) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self._join_room = join_room  # RoomManager.media_ready: joins leg.pending_room
        self._armed: dict[str, tuple[AmdParams, str | None]] = {}
        self._runs: dict[str, _Run] = {}

    def arm(self, leg: Leg, params: AmdParams) -> None:
        """A leg created with `amd`: detection starts when it is answered; its `room_id`
        (already in pending_room) waits for the verdict."""
        self._armed[leg.id] = (params, leg.pending_room)
        leg.pending_room = None
        self.lifecycle.on_leg_ended(leg.id, partial(self._armed.pop, leg.id, None))

    def media_ready(self, leg: Leg) -> None:
        if leg.state is LegState.CONNECTED and leg.id in self._armed:
            params, room_id = self._armed.pop(leg.id)
            self.start(leg, params, room_id)

    def start(self, leg: Leg, params: AmdParams, room_id: str | None = None) -> None:
        """Run detection on a connected leg with media (the caller checked both)."""
        if leg.id in self._runs:
            raise Conflict("answering-machine detection is already running on this leg")
        run = _Run(leg, AmdDetector(params), room_id)
        self._runs[leg.id] = run
        run.handle = self.engine.add_analyser(leg.id, _Analyser(run, self._report))
        # Ticks bring frames only while media arrives; a line that goes quiet still ends.
        window_ms = params.total_analysis_time + max(params.beep_timeout, 0)
        loop = asyncio.get_running_loop()
        run.timer = loop.call_later(window_ms / 1000 + _SLACK_S, self._expired, run)
        run.registration = self.lifecycle.on_leg_ended(leg.id, partial(self._leg_ended, run))
        log.info("leg %s: answering-machine detection started", leg.id)

    def _report(self, run: _Run, outcomes: list[AmdOutcome]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, AmdVerdict):
                self._publish_verdict(run, outcome)
            elif isinstance(outcome, BeepFound):
                run.leg.publish(AmdBeep(beep_ms=outcome.beep_ms))
            elif isinstance(outcome, BeepTimeout):
                run.leg.publish(AmdBeep(timeout=True, waited_ms=outcome.waited_ms))
        if run.detector.done:
            self._finish(run)

    def _publish_verdict(self, run: _Run, verdict: AmdVerdict) -> None:
        leg_id, ms = run.leg.id, verdict.total_analysis_ms
        log.info("leg %s: AMD %s after %d ms", leg_id, verdict.result, ms)
        run.leg.publish(
            AmdResult(
                result=verdict.result,
                initial_silence_ms=verdict.initial_silence_ms,
                greeting_duration_ms=verdict.greeting_duration_ms,
                total_analysis_ms=verdict.total_analysis_ms,
            )
        )
        if run.room_id and verdict.result != "machine" and run.leg.state is LegState.CONNECTED:
            run.leg.pending_room = run.room_id
            self._join_room(run.leg)

    def _expired(self, run: _Run) -> None:
        """No verdict (or beep) in time because frames stopped coming."""
        run.timer = None
        detector = run.detector
        if detector.verdict is None:
            verdict = detector.give_up()
            if verdict is not None:
                self._publish_verdict(run, verdict)
        elif not detector.done and detector.params.beep_timeout > 0:
            run.leg.publish(AmdBeep(timeout=True, waited_ms=detector.params.beep_timeout))
        self._finish(run)

    def _leg_ended(self, run: _Run) -> None:
        verdict = run.detector.give_up()  # hung up mid-analysis: not_sure
        if verdict is not None:
            self._publish_verdict(run, verdict)
        run.registration = None  # the hub is running it
        self._finish(run)

    def _finish(self, run: _Run) -> None:
        run.detector.done = True
        if self._runs.get(run.leg.id) is run:
            del self._runs[run.leg.id]
        if run.handle is not None:
            run.handle.remove()
            run.handle = None
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None
        if run.registration is not None:
            run.registration.cancel()
            run.registration = None
