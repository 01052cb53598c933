"""Every telephone tone plan, as received at the far end of a real call.

Instance A plays each plan of TONE_PLANS to its leg of a call A -> B; B's end of the call sits in
a room with a listening WebSocket participant (the "ear"), which hears exactly what arrived over
RTP. The expectations here come from the plans themselves: this proves that what the wire
carries is the plan (cadence, frequencies, modulation, levels). test_playback.py checks the
plans independently against the published national values.

Cadences are long (US ringback: 2 s on, 4 s off), so the 44 plans are shared out over several
concurrent calls ("lanes"), each playing its plans one after the other. A module fixture records
every plan once; one test per plan compares what its ear heard with the plan.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest

from callboard.media.tones import COUNTRIES, MODULATION_DEPTH, TONE_PLANS, TONE_TYPES, ToneSegment
from tests.helpers.audio import band_energy_db, level_dbfs
from tests.helpers.room_ear import RATE, RoomEar
from tests.helpers.server import ServerProcess
from tests.helpers.tone_analysis import Run, on_off_runs, spectral_peaks
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import module_fixtures

TONE_DBFS = -13.0  # the generator's level per frequency component
LANES = 8  # concurrent calls; the busiest lane sets the module's run time
LEAD_S = 0.6  # play -> heard latency, plus the start of the step after a whole cycle
GAP_S = 0.3  # between two tones of a lane, so the last one's tail has drained
STAGGER_S = 0.15  # between the lanes' starts, so their first events do not come in one burst
WARM_UP_S = 1.5  # a first tone on every lane before anything is measured ...
SETTLE_S = 4.0  # ... then quiet, while the far end's jitter buffers give back any latency
CONTINUOUS_S = 1.0  # a continuous tone must run at least this long without a gap
CADENCE_TOLERANCE_MS = 30
FREQ_TOLERANCE_HZ = 3
LEVEL_TOLERANCE_DB = 1.5
EDGE_S = 0.015  # trimmed off each end of a burst before spectral and level analysis


# -- expectations from the plan ---------------------------------------------------------------


def window_s(name: str) -> float:
    """How long to listen: one whole cycle and the whole first step of the next."""
    plan = TONE_PLANS[name]
    if plan.continuous:
        return CONTINUOUS_S + LEAD_S
    return (plan.cycle_ms + plan.segments[0].duration_ms) / 1000 + LEAD_S


def expected_peaks(step: ToneSegment) -> list[float]:
    """Each frequency, and with amplitude modulation its sidebands at +- the modulation rate."""
    shifts = (-step.modulation_hz, 0.0, step.modulation_hz) if step.modulation_hz else (0.0,)
    return sorted(f + shift for f in step.frequencies for shift in shifts)


def expected_level(step: ToneSegment) -> float:
    """RMS level (sine convention) of a step: every component at the generator level plus the
    step's gain; modulation (1 + m sin) / (1 + m) scales the power by (1 + m^2/2) / (1 + m)^2."""
    level = TONE_DBFS + step.gain_db + 10 * np.log10(len(step.frequencies))
    if step.modulation_hz:
        m = MODULATION_DEPTH
        level += 10 * np.log10((1 + m * m / 2) / (1 + m) ** 2)
    return float(level)


def describe(step: ToneSegment) -> str:
    if not step.frequencies:
        return f"{step.duration_ms} ms off"
    return f"{step.duration_ms} ms of {'+'.join(f'{f:g}' for f in step.frequencies)} Hz"


# -- comparison of what was heard with the plan -----------------------------------------------


def between(x: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return x[int(start_s * RATE) : int(end_s * RATE)]


def burst_mismatches(heard: np.ndarray, run: Run, step: ToneSegment) -> tuple[list[str], float]:
    """How one burst's frequencies, sidebands and level differ from the step; and its level."""
    body = between(heard, run.start_s + EDGE_S, run.start_s + run.duration_ms / 1000 - EDGE_S)
    wrong: list[str] = []
    peaks = expected_peaks(step)
    gap = 0.6 * float(min(np.diff(peaks))) if len(peaks) > 1 else 25.0
    found = spectral_peaks(body, RATE, len(peaks), min_gap_hz=gap)
    if len(found) != len(peaks) or any(
        abs(f - p) > FREQ_TOLERANCE_HZ for f, p in zip(found, peaks, strict=True)
    ):
        wrong.append(f"peaks at {[round(f, 1) for f in found]} Hz, planned {peaks}")
    if step.modulation_hz:
        # Each sideband carries half its carrier's modulation depth: 20 log10(m / 2) below it.
        depth_db = 20 * np.log10(MODULATION_DEPTH / 2)
        for f in step.frequencies:
            carrier = band_energy_db(body, RATE, f, gap)
            for side in (f - step.modulation_hz, f + step.modulation_hz):
                relative = band_energy_db(body, RATE, side, gap) - carrier
                if abs(relative - depth_db) > LEVEL_TOLERANCE_DB:
                    wrong.append(f"sideband {side:g} Hz {relative:.1f} dB, planned {depth_db:.1f}")
    level = level_dbfs(body)
    if abs(level - expected_level(step)) > LEVEL_TOLERANCE_DB:
        wrong.append(f"level {level:.1f} dBFS, planned {expected_level(step):.1f}")
    return wrong, level


def mismatches(name: str, heard: np.ndarray) -> list[str]:
    """Every way in which what the ear heard differs from the plan; empty when it is the plan."""
    plan = TONE_PLANS[name]
    if heard.size < 0.9 * window_s(name) * RATE:
        return [f"the ear heard only {heard.size / RATE:.2f} s of {window_s(name):.2f} s"]
    runs = on_off_runs(heard, RATE)
    if runs[0].on:
        return [f"sound before the tone started: {runs}"]
    if plan.continuous:
        if len(runs) != 2 or runs[1].duration_ms < CONTINUOUS_S * 1000:
            return [f"a continuous tone had a gap: {runs}"]
        return burst_mismatches(heard, runs[1], plan.segments[0])[0]

    steps = plan.segments
    runs = runs[1:-1]  # the latency before the tone and the cut-off last run are not cadence
    if len(runs) < len(steps) + 1:
        return [f"not a whole cycle and the next step: {runs}"]
    wrong: list[str] = []
    levels: list[tuple[float, float]] = []  # (measured, planned) per burst
    for i, run in enumerate(runs):
        step = steps[i % len(steps)]
        if run.on != bool(step.frequencies) or (
            abs(run.duration_ms - step.duration_ms) > CADENCE_TOLERANCE_MS
        ):
            state = "on" if run.on else "off"
            return [f"step {i}: {run.duration_ms:g} ms {state}, planned {describe(step)}: {runs}"]
        if run.on:
            burst_wrong, level = burst_mismatches(heard, run, step)
            wrong += [f"step {i}: {w}" for w in burst_wrong]
            levels.append((level, expected_level(step)))
    # Level steps between consecutive bursts (alternating-level tones) are as planned.
    for (level, planned), (next_level, next_planned) in pairwise(levels):
        change, planned_change = next_level - level, next_planned - planned
        if abs(change - planned_change) > LEVEL_TOLERANCE_DB:
            wrong.append(f"level changed by {change:.1f} dB, planned {planned_change:.1f}")
    return wrong


# -- recording every plan at the far end ------------------------------------------------------


@dataclass
class Lane:
    """One call A -> B; B's leg is alone in a room with a listening WebSocket participant."""

    a_leg: str
    ear: RoomEar


@dataclass
class Take:
    """One recording of a plan: what the lane's ear heard in a time window."""

    ear: RoomEar
    start: float
    end: float

    def audio(self) -> np.ndarray:
        return self.ear.heard(self.start, self.end)


def share_out(names: list[str], lanes: int) -> list[list[str]]:
    """Longest first onto the least busy lane, so the lanes end at about the same time."""
    loads = [(0.0, i) for i in range(lanes)]
    shares: list[list[str]] = [[] for _ in range(lanes)]
    for name in sorted(names, key=window_s, reverse=True):
        load, lane = heapq.heappop(loads)
        shares[lane].append(name)
        heapq.heappush(loads, (load + window_s(name) + GAP_S, lane))
    return shares


def connect_call(a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver) -> tuple[str, str]:
    """A calls B and B answers. Only events after this call's start count, since the module
    sets up several calls between the same two instances."""
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")})
    assert response.status_code == 201, response.text
    a_leg = response.json()["id"]
    ringing = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)
    b_leg = ringing["leg_id"]
    answered = b.api("POST", f"/legs/{b_leg}/answer")
    assert answered.status_code == 200, answered.text
    hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
    hooks.wait_for("leg.connected", since=since, leg_id=b_leg)
    return a_leg, b_leg


def play(a: ServerProcess, lane: Lane, tone: str) -> str:
    response = a.api("POST", f"/legs/{lane.a_leg}/play", {"tone": tone})
    assert response.status_code == 200, response.text
    return str(response.json()["playback_id"])


def stop(a: ServerProcess, lane: Lane, playback_id: str) -> None:
    response = a.api("DELETE", f"/legs/{lane.a_leg}/play/{playback_id}")
    assert response.status_code == 200, response.text


def warm_up(a: ServerProcess, lanes: list[Lane]) -> None:
    """Setting up calls while others carry media, and the first playbacks, can stall the
    servers briefly once; a far-end jitter buffer upset by that gives the latency back over the
    next seconds by dropping a frame at a time, which would shorten some cadence step. So that
    happens before anything is measured."""
    playing = []
    for lane in lanes:
        playing.append((lane, play(a, lane, "us_busy")))
        time.sleep(STAGGER_S)
    time.sleep(WARM_UP_S)
    for lane, playback_id in playing:
        stop(a, lane, playback_id)
    time.sleep(SETTLE_S)


def record(a: ServerProcess, lanes: list[Lane], names: list[str]) -> dict[str, Take]:
    """Plays the plans, the lanes at once, and returns when and where each one was heard."""
    queues = share_out(names, len(lanes))
    takes: dict[str, Take] = {}
    now = time.monotonic()
    # One thread drives every lane from a timetable: (when, lane, playback to stop or None).
    due: list[tuple[float, int, str | None]] = [
        (now + i * STAGGER_S, i, None) for i in range(len(lanes)) if queues[i]
    ]
    while due:
        when, i, playing = heapq.heappop(due)
        time.sleep(max(0.0, when - time.monotonic()))
        lane = lanes[i]
        if playing is not None:
            stop(a, lane, playing)
            if queues[i]:
                heapq.heappush(due, (time.monotonic() + GAP_S, i, None))
            continue
        name = queues[i].pop(0)
        start = time.monotonic()
        playback_id = play(a, lane, name)
        takes[name] = Take(lane.ear, start, start + window_s(name))
        heapq.heappush(due, (start + window_s(name), i, playback_id))
    return takes


hooks, servers = module_fixtures("tones")


@pytest.fixture(autouse=True)
def no_crash(servers: tuple[ServerProcess, ServerProcess]) -> Iterator[None]:
    yield
    for server in servers:
        assert server.running(), server.log_tail()
        assert "Traceback" not in server.log_text(), server.log_tail()


@pytest.fixture(scope="module")
def lanes(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> Iterator[list[Lane]]:
    a, b = servers
    made: list[Lane] = []
    try:
        for i in range(LANES):
            a_leg, b_leg = connect_call(a, b, hooks)
            added = b.api("POST", f"/rooms/tones-{i}/legs", {"leg_id": b_leg})
            assert added.status_code == 200, added.text
            made.append(Lane(a_leg, RoomEar(b, f"tones-{i}")))
        yield made
    finally:
        for lane in made:
            lane.ear.close()
            a.api("DELETE", f"/legs/{lane.a_leg}")
        wait_until_quiet(hooks)


def wait_until_quiet(hooks: WebhookReceiver, quiet_s: float = 0.5, limit_s: float = 5.0) -> None:
    """Let the hang-up events be delivered before the servers stop, rather than cut off."""
    deadline = time.monotonic() + limit_s
    seen = -1
    while seen != hooks.mark() and time.monotonic() < deadline:
        seen = hooks.mark()
        time.sleep(quiet_s)


@pytest.fixture(scope="module")
def takes(servers: tuple[ServerProcess, ServerProcess], lanes: list[Lane]) -> dict[str, list[Take]]:
    """Every plan recorded once; a plan whose take differs from it is recorded once more.

    A retake keeps a passing verdict from hanging on one scheduling hiccup of a busy machine
    (a frame dropped by a jitter buffer); a plan the wire really gets wrong fails both takes.
    """
    a = servers[0]
    warm_up(a, lanes)
    recorded = {name: [take] for name, take in record(a, lanes, list(TONE_PLANS)).items()}
    again = [name for name, (first,) in recorded.items() if mismatches(name, first.audio())]
    if again:
        print(f"\nretaking {again}")
        for name, take in record(a, lanes, again).items():
            recorded[name].append(take)
    return recorded


# -- tests ------------------------------------------------------------------------------------


def test_plans_cover_every_country_and_tone_type() -> None:
    assert sorted(TONE_PLANS) == sorted(f"{c}_{t}" for c in COUNTRIES for t in TONE_TYPES)
    assert len(TONE_PLANS) == 44


@pytest.mark.parametrize("name", list(TONE_PLANS))
def test_tone_plan_as_received(takes: dict[str, list[Take]], name: str) -> None:
    reports = [mismatches(name, take.audio()) for take in takes[name]]
    assert not reports[-1], f"{name} as received differs from its plan:\n" + "\n".join(
        f"take {n}: {'; '.join(report) or 'as planned'}" for n, report in enumerate(reports, 1)
    )
