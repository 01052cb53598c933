"""Answering-machine detection and voicemail-beep detection, sans-IO: fed one 20 ms frame of
what the called party says per media tick, it returns what it concluded.

The verdict follows the classic method the seed's AMDParams describe:
- `no_speech` when no word starts within `initial_silence_timeout`;
- `human` when a short greeting ("hello?") is followed by `after_greeting_silence` of
  silence: a person waits for an answer;
- `machine` when the greeting goes on past `greeting_duration`, or holds more words than a
  person says before pausing (`MAX_HUMAN_WORDS`): a recorded greeting does not wait;
- `not_sure` when `total_analysis_time` runs out first.
A word is a voiced stretch of at least `minimum_word_length`; gaps shorter than WORD_GAP_MS
stay inside it. Voiced means clearly above the line's noise floor, which is tracked (the
minimum level of the last second), so a noisy line does not read as speech.

After `machine`, with a `beep_timeout`, it listens for the voicemail beep: a steady pure tone
in 350-2,000 Hz lasting BEEP_MIN_MS or more. Each frame's spectrum (the last 40 ms, Hann
window) must have most of its energy in one peak that stays at one frequency; speech (many
harmonics), DTMF (two tones) and music (moving pitch, rich spectrum) fail one of these. The
beep is reported when it ends, with the time from the start of the wait.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from functools import cache

import numpy as np

from callboard.media.frames import FRAME_MS
from callboard.media.speaking import SILENCE_DBFS, frame_dbfs

WORD_GAP_MS = 160  # a pause shorter than this does not end a word (syllables, plosives)
MAX_HUMAN_WORDS = 4  # more words before a pause: a recording, not a person
VOICED_MARGIN_DB = 12.0  # above the noise floor
VOICED_MIN_DBFS = -48.0  # and never quieter than this
FLOOR_WINDOW_MS = 1000

BEEP_LOW_HZ = 350.0
BEEP_HIGH_HZ = 2000.0
BEEP_MIN_MS = 150
BEEP_PURITY = 0.75  # share of the frame's energy in the peak (±2 bins)
BEEP_MIN_DBFS = -45.0
BEEP_DRIFT_HZ = 30.0  # how far the peak may move between frames and still be one tone

_FULL_SCALE_POWER = 32768.0 * 32768.0 / 2.0


@dataclass(frozen=True)
class AmdParams:
    """The seed's AMDParams, in milliseconds; zero or negative means the default."""

    initial_silence_timeout: int = 2500
    greeting_duration: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    minimum_word_length: int = 100
    beep_timeout: int = 0


@dataclass(frozen=True)
class AmdVerdict:
    result: str  # human | machine | no_speech | not_sure
    initial_silence_ms: int
    greeting_duration_ms: int
    total_analysis_ms: int


@dataclass(frozen=True)
class BeepFound:
    beep_ms: int  # from the start of the wait (the machine verdict) to the end of the beep


@dataclass(frozen=True)
class BeepTimeout:
    waited_ms: int


AmdOutcome = AmdVerdict | BeepFound | BeepTimeout


class AmdDetector:
    def __init__(self, params: AmdParams) -> None:
        self.params = params
        self.now_ms = 0
        self.verdict: AmdVerdict | None = None
        self.done = False  # nothing more will come (verdict given, beep found or given up)
        self._levels: deque[float] = deque(maxlen=FLOOR_WINDOW_MS // FRAME_MS)
        # Words: the current voiced stretch, the silence after the last voiced frame.
        self._voiced_ms = 0  # of the stretch being heard
        self._stretch_start: int | None = None
        self._gap_ms = 0
        self._counted = False  # the current stretch was counted as a word
        self._words = 0
        self._first_word_at: int | None = None
        self._last_voiced_at = 0
        self._beep = _BeepListener() if params.beep_timeout > 0 else None
        self._beep_wait_start = 0

    def frame(
        self, samples: np.ndarray | None, rate: int, level_dbfs: float | None = None
    ) -> list[AmdOutcome]:
        """One 20 ms frame (int16 at `rate`; None when nothing arrived: silence), with its
        level when the caller measured it already (the engine does, for every analyser)."""
        if self.done:
            return []
        self.now_ms += FRAME_MS
        if self.verdict is None:
            verdict = self._analyse(samples, level_dbfs)
            if verdict is None:
                return []
            self.verdict = verdict
            if verdict.result == "machine" and self._beep is not None:
                self._beep_wait_start = self.now_ms
                return [verdict]
            self.done = True
            return [verdict]
        return self._listen_for_beep(samples, rate)

    def give_up(self) -> AmdVerdict | None:
        """The call ended mid-analysis: `not_sure` (None if a verdict was already given)."""
        if self.verdict is not None:
            self.done = True
            return None
        self.done = True
        self.verdict = self._verdict("not_sure")
        return self.verdict

    # ---- the verdict ----

    def _analyse(self, samples: np.ndarray | None, level: float | None) -> AmdVerdict | None:
        p = self.params
        voiced = self._voiced(samples, level)
        if voiced:
            if self._stretch_start is None:
                self._stretch_start = self.now_ms - FRAME_MS
                self._voiced_ms = 0
                self._counted = False
            self._voiced_ms += FRAME_MS
            self._gap_ms = 0
            self._last_voiced_at = self.now_ms
            if not self._counted and self._voiced_ms >= p.minimum_word_length:
                self._counted = True  # this stretch just became a word
                self._words += 1
                if self._first_word_at is None:
                    self._first_word_at = self._stretch_start
                if self._words > MAX_HUMAN_WORDS:
                    return self._verdict("machine")
        elif self._stretch_start is not None:
            self._gap_ms += FRAME_MS
            if self._gap_ms >= WORD_GAP_MS:
                self._stretch_start = None
        if self._first_word_at is None:
            if self.now_ms >= p.initial_silence_timeout:
                return self._verdict("no_speech")
        else:
            if self._greeting_ms() >= p.greeting_duration:
                return self._verdict("machine")
            if self.now_ms - self._last_voiced_at >= p.after_greeting_silence:
                return self._verdict("human")
        if self.now_ms >= p.total_analysis_time:
            return self._verdict("not_sure")
        return None

    def _greeting_ms(self) -> int:
        if self._first_word_at is None:
            return 0
        return self._last_voiced_at - self._first_word_at

    def _verdict(self, result: str) -> AmdVerdict:
        first = self._first_word_at
        return AmdVerdict(
            result=result,
            initial_silence_ms=first if first is not None else self.now_ms,
            greeting_duration_ms=self._greeting_ms(),
            total_analysis_ms=self.now_ms,
        )

    def _voiced(self, samples: np.ndarray | None, level: float | None) -> bool:
        if level is None:
            level = SILENCE_DBFS if samples is None else frame_dbfs(samples)
        self._levels.append(level)
        floor = min(self._levels)
        return level >= VOICED_MIN_DBFS and level >= floor + VOICED_MARGIN_DB

    # ---- the beep ----

    def _listen_for_beep(self, samples: np.ndarray | None, rate: int) -> list[AmdOutcome]:
        assert self._beep is not None
        waited = self.now_ms - self._beep_wait_start
        if self._beep.frame(samples, rate):
            self.done = True
            return [BeepFound(beep_ms=waited)]
        if waited >= self.params.beep_timeout:
            self.done = True
            return [BeepTimeout(waited_ms=waited)]
        return []


class _BeepListener:
    """True on the frame where a steady tone of BEEP_MIN_MS or more has just ended."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._rate = 0
        self._tone_hz: float | None = None
        self._tone_ms = 0

    def frame(self, samples: np.ndarray | None, rate: int) -> bool:
        if samples is None or rate != self._rate:
            self._previous = None
            self._rate = rate
        peak = None
        if samples is not None:
            current = samples.astype(np.float64)
            window = (
                current if self._previous is None else np.concatenate((self._previous, current))
            )
            self._previous = current
            peak = _pure_tone(window, rate)
        steady = (
            peak is not None
            and self._tone_hz is not None
            and abs(peak - self._tone_hz) <= BEEP_DRIFT_HZ
        )
        if steady:
            self._tone_ms += FRAME_MS
            return False
        ended = self._tone_ms >= BEEP_MIN_MS
        self._tone_hz = peak
        self._tone_ms = FRAME_MS if peak is not None else 0
        return ended


def _pure_tone(window: np.ndarray, rate: int) -> float | None:
    """The frequency of the one tone that holds most of the window's energy, if it lies in
    the beep band and is loud enough; else None."""
    if len(window) < 32:
        return None
    power = float(window.dot(window)) / len(window)
    if power < _FULL_SCALE_POWER * 10.0 ** (BEEP_MIN_DBFS / 10.0):
        return None
    spectrum = np.abs(np.fft.rfft(window * _hann(len(window)))) ** 2
    total = float(spectrum.sum())
    if total <= 0.0:
        return None
    bin_hz = rate / len(window)
    low = int(BEEP_LOW_HZ / bin_hz)
    high = min(int(BEEP_HIGH_HZ / bin_hz) + 1, len(spectrum) - 1)
    if high <= low:
        return None
    k = low + int(np.argmax(spectrum[low:high]))
    if float(spectrum[max(k - 2, 0) : k + 3].sum()) < BEEP_PURITY * total:
        return None
    # Parabolic interpolation between the bins around the peak.
    a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
    shift = 0.5 * (a - c) / (a - 2 * b + c) if (a - 2 * b + c) != 0 else 0.0
    return float((k + shift) * bin_hz)


@cache
def _hann(size: int) -> np.ndarray:
    return np.hanning(size)
