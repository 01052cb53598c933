"""Call-progress tones (ringback, busy, dial, congestion) of several national tone plans.

Frequencies and cadences follow the national entries of the ITU-T E.180 supplement
("Various tones used in national networks"). Frames are 20 ms of int16 at 16 kHz; the
phase runs on across frames and cadence steps, and every burst is faded in and out over
2 ms so cadence edges do not click.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from callboard.media.frames import FRAME_SAMPLES, SAMPLE_RATE

TONE_TYPES = ("ringback", "busy", "dial", "congestion")
COUNTRIES = ("us", "gb", "de", "fr", "au", "jp", "it", "in", "br", "pl", "ru")
MODULATION_DEPTH = 0.9
_RAMP_SAMPLES = SAMPLE_RATE * 2 // 1000


@dataclass(frozen=True, slots=True)
class ToneSegment:
    """One step of a cadence; no frequencies means silence, duration 0 means forever."""

    duration_ms: int
    frequencies: tuple[float, ...] = ()
    modulation_hz: float | None = None  # amplitude modulation, e.g. 400 Hz x 25 Hz
    gain_db: float = 0.0  # relative to the generator level (alternating-level tones)


@dataclass(frozen=True, slots=True)
class TonePlan:
    name: str
    segments: tuple[ToneSegment, ...]

    @property
    def continuous(self) -> bool:
        return self.segments[0].duration_ms == 0

    @property
    def cycle_ms(self) -> int:
        return sum(s.duration_ms for s in self.segments)


def _cadence(
    name: str, freqs: tuple[float, ...], *on_off_ms: int, modulation: float | None = None
) -> TonePlan:
    """on, off, on, off... in ms; a single 0 makes a continuous tone."""
    segments = tuple(
        ToneSegment(ms, freqs if i % 2 == 0 else (), modulation if i % 2 == 0 else None)
        for i, ms in enumerate(on_off_ms)
    )
    return TonePlan(name, segments)


def _build_plans() -> dict[str, TonePlan]:
    us_dual = (350.0, 440.0)
    plans = [
        # North America (ANSI T1.401 precise tone plan).
        _cadence("us_dial", us_dual, 0),
        _cadence("us_ringback", (440.0, 480.0), 2000, 4000),
        _cadence("us_busy", (480.0, 620.0), 500, 500),
        _cadence("us_congestion", (480.0, 620.0), 250, 250),
        # United Kingdom (BT SIN 350).
        _cadence("gb_dial", us_dual, 0),
        _cadence("gb_ringback", (400.0, 450.0), 400, 200, 400, 2000),
        _cadence("gb_busy", (400.0,), 375, 375),
        _cadence("gb_congestion", (400.0,), 400, 350, 225, 525),
        # Germany.
        _cadence("de_dial", (425.0,), 0),
        _cadence("de_ringback", (425.0,), 1000, 4000),
        _cadence("de_busy", (425.0,), 480, 480),
        _cadence("de_congestion", (425.0,), 240, 240),
        # France.
        _cadence("fr_dial", (440.0,), 0),
        _cadence("fr_ringback", (440.0,), 1500, 3500),
        _cadence("fr_busy", (440.0,), 500, 500),
        _cadence("fr_congestion", (440.0,), 250, 250),
        # Australia: 425 Hz x 25 Hz dial; ringback 400+450 Hz; congestion alternates level.
        _cadence("au_dial", (425.0,), 0, modulation=25.0),
        _cadence("au_ringback", (400.0, 450.0), 400, 200, 400, 2000),
        _cadence("au_busy", (425.0,), 375, 375),
        TonePlan(
            "au_congestion",
            (
                ToneSegment(375, (425.0,)),
                ToneSegment(375),
                ToneSegment(375, (425.0,), gain_db=-10.0),
                ToneSegment(375),
            ),
        ),
        # Japan: ringback 400 Hz modulated by 16 Hz.
        _cadence("jp_dial", (400.0,), 0),
        _cadence("jp_ringback", (400.0,), 1000, 2000, modulation=16.0),
        _cadence("jp_busy", (400.0,), 500, 500),
        _cadence("jp_congestion", (400.0,), 500, 500),
        # Italy: the dial tone itself is cadenced.
        _cadence("it_dial", (425.0,), 200, 200, 600, 1000),
        _cadence("it_ringback", (425.0,), 1000, 4000),
        _cadence("it_busy", (425.0,), 500, 500),
        _cadence("it_congestion", (425.0,), 200, 200),
        # India: 400 Hz x 25 Hz.
        _cadence("in_dial", (400.0,), 0, modulation=25.0),
        _cadence("in_ringback", (400.0,), 400, 200, 400, 2000, modulation=25.0),
        _cadence("in_busy", (400.0,), 750, 750),
        _cadence("in_congestion", (400.0,), 250, 250),
        # Brazil.
        _cadence("br_dial", (425.0,), 0),
        _cadence("br_ringback", (425.0,), 1000, 4000),
        _cadence("br_busy", (425.0,), 250, 250),
        _cadence("br_congestion", (425.0,), 250, 250, 750, 250),
        # Poland.
        _cadence("pl_dial", (425.0,), 0),
        _cadence("pl_ringback", (425.0,), 1000, 4000),
        _cadence("pl_busy", (425.0,), 500, 500),
        _cadence("pl_congestion", (425.0,), 500, 500),
        # Russia.
        _cadence("ru_dial", (425.0,), 0),
        _cadence("ru_ringback", (425.0,), 800, 3200),
        _cadence("ru_busy", (425.0,), 350, 350),
        _cadence("ru_congestion", (425.0,), 175, 175),
    ]
    return {plan.name: plan for plan in plans}


TONE_PLANS: dict[str, TonePlan] = _build_plans()


class UnknownToneError(ValueError, KeyError):
    """Raised for a tone name that no plan matches (catchable as either error)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown tone"


def resolve_tone(name: str) -> TonePlan:
    """Plan by name: "gb_busy", "GB-busy", or a bare type meaning the US plan."""
    key = name.strip().lower().replace("-", "_")
    if key in TONE_TYPES:
        key = f"us_{key}"
    plan = TONE_PLANS.get(key)
    if plan is None:
        raise UnknownToneError(f"unknown tone: {name}")
    return plan


@lru_cache(maxsize=256)
def _waveform(
    frequencies: tuple[float, ...], modulation_hz: float | None, amplitude: float
) -> np.ndarray:
    """One period of the (integer-Hz) tone at 16 kHz, repeated to cover a frame past the end.

    Every component has a whole number of cycles in the period, so slicing it at
    `sample % period` continues the phase exactly.
    """
    common = SAMPLE_RATE
    for freq in (*frequencies, modulation_hz or 0):
        common = math.gcd(common, round(freq))
    period = SAMPLE_RATE // common
    t = np.arange(period + FRAME_SAMPLES, dtype=np.float64) / SAMPLE_RATE
    wave = np.zeros_like(t)
    for freq in frequencies:
        wave += np.sin(2.0 * np.pi * round(freq) * t)
    if modulation_hz:
        depth = MODULATION_DEPTH
        wave *= (1.0 + depth * np.sin(2.0 * np.pi * round(modulation_hz) * t)) / (1.0 + depth)
    table = np.clip(np.rint(wave * amplitude), -32768, 32767).astype(np.int16)
    table.flags.writeable = False
    return table


class ToneGenerator:
    """Endless 20 ms frames of one tone plan at `level_dbfs` per frequency component.

    Frequencies are rounded to whole Hz (every national plan uses whole-Hz tones), which
    lets each burst be sliced from a cached one-period table instead of computed.
    """

    def __init__(self, plan: TonePlan, level_dbfs: float = -13.0) -> None:
        self.plan = plan
        amplitude = 32767.0 * 10.0 ** (level_dbfs / 20.0)
        self._tables = [
            _waveform(s.frequencies, s.modulation_hz, amplitude * 10.0 ** (s.gain_db / 20.0))
            if s.frequencies
            else None
            for s in plan.segments
        ]
        self._lengths = [s.duration_ms * SAMPLE_RATE // 1000 for s in plan.segments]
        self._sample = 0  # samples generated so far: the phase reference
        self._segment = 0
        self._offset = 0  # samples into the current segment

    def next_frame(self) -> np.ndarray:
        length = self._lengths[self._segment]
        table = self._tables[self._segment]
        if table is not None and length == 0:  # continuous tone: one slice
            start = self._sample % (len(table) - FRAME_SAMPLES)
            self._sample += FRAME_SAMPLES
            return table[start : start + FRAME_SAMPLES].copy()
        out = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES:
            length = self._lengths[self._segment]
            table = self._tables[self._segment]
            count = FRAME_SAMPLES - filled
            if length:
                count = min(count, length - self._offset)
            if table is not None:
                start = self._sample % (len(table) - FRAME_SAMPLES)
                burst = table[start : start + count]
                if length and (
                    self._offset < _RAMP_SAMPLES or self._offset + count > length - _RAMP_SAMPLES
                ):
                    burst = _faded(burst, self._offset, length)
                out[filled : filled + count] = burst
            filled += count
            self._sample += count
            self._offset += count
            if length and self._offset >= length:
                self._offset = 0
                self._segment = (self._segment + 1) % len(self.plan.segments)
        return out


_RAMP = 0.5 - 0.5 * np.cos(np.pi * (np.arange(_RAMP_SAMPLES) + 0.5) / _RAMP_SAMPLES)


def _faded(burst: np.ndarray, offset: int, length: int) -> np.ndarray:
    """Samples [offset, offset + len) of a `length`-sample burst, with 2 ms edge fades."""
    position = np.arange(offset, offset + len(burst))
    gain = np.ones(len(burst))
    head = position < _RAMP_SAMPLES
    gain[head] = _RAMP[position[head]]
    from_end = length - 1 - position
    tail = from_end < _RAMP_SAMPLES
    gain[tail] = np.minimum(gain[tail], _RAMP[from_end[tail]])
    return (burst * gain).astype(np.int16)
