"""Per-leg speaking detection behind the `speaking.started` / `speaking.stopped` events.

An energy detector with hysteresis, run once per leg per 20 ms media tick, so it is built
for cost: one int16 -> float32 copy into a preallocated buffer, one dot product, and a
few float comparisons. No FFT and no spectral features; what makes it robust is timing:

- start: the level must stay above the start threshold for `start_ms` consecutive
  frames, so clicks and single loud frames never start;
- stop: the level must stay below the (lower) stop threshold for `hangover_ms`, so the
  gaps between syllables and the short pauses inside a sentence do not split it;
- noise floor: a minimum-statistics tracker (minimum over the last ~1.5 s, allowed to rise
  only slowly) lifts both thresholds to `floor + margin`, so steady noise that happens to
  be louder than the fixed thresholds (an air conditioner at -35 dBFS) stops counting as
  speech after a few seconds instead of holding "speaking" forever.

Levels are dBFS with a full-scale sine at 0 dBFS: 10*log10(mean(x^2) / (32768^2 / 2)).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from callboard.media.frames import FRAME_MS, FRAME_SAMPLES

# Mean square of a full-scale sine in int16 units: the 0 dBFS reference.
_FULL_SCALE_POWER = 32768.0 * 32768.0 / 2.0
# Reported for digital silence; 1 LSB RMS is about -87 dBFS, so this is below any real signal.
SILENCE_DBFS = -100.0
_SILENCE_POWER = _FULL_SCALE_POWER * 10.0 ** (SILENCE_DBFS / 10.0)

# Speech must stand this far above the tracked noise floor to start ...
START_MARGIN_DB = 9.0
# ... and fall this close to it to count as a pause (the margins keep the start/stop gap).
STOP_MARGIN_DB = 4.0
# Minimum statistics: the minimum over WINDOW_BLOCKS finished blocks plus the current one,
# i.e. 1.44-1.68 s, long enough to always contain a gap between words.
BLOCK_FRAMES = 12
WINDOW_BLOCKS = 6
# Speed at which the floor may follow a rising minimum. A held vowel or a sentence without
# gaps therefore lifts it only a little; a new steady noise is adopted in ~2-3 s.
FLOOR_RISE_DB_PER_S = 6.0


def _power_to_dbfs(mean_square: float) -> float:
    if mean_square <= _SILENCE_POWER:
        return SILENCE_DBFS
    return 10.0 * math.log10(mean_square / _FULL_SCALE_POWER)


def frame_dbfs(frame: np.ndarray) -> float:
    """RMS level of `frame` (int16 samples) in dBFS, full-scale sine = 0 dBFS.

    Digital silence (and an empty frame) reads SILENCE_DBFS rather than -inf.
    """
    samples = np.asarray(frame, dtype=np.float64).ravel()
    if samples.size == 0:
        return SILENCE_DBFS
    return _power_to_dbfs(float(samples.dot(samples)) / samples.size)


def frames_dbfs(frames: np.ndarray) -> list[float]:
    """frame_dbfs of every row of a (count, samples) array of sample values, in one pass."""
    if frames.shape[0] == 0 or frames.shape[1] == 0:
        return [SILENCE_DBFS] * frames.shape[0]
    samples = frames if frames.dtype == np.float32 else frames.astype(np.float32)
    power = np.einsum("ij,ij->i", samples, samples, dtype=np.float64) / frames.shape[1]
    return [_power_to_dbfs(p) for p in power.tolist()]


def _frames_for(ms: int) -> int:
    return max(1, math.ceil(ms / FRAME_MS))


class SpeakingDetector:
    """Per-leg voice activity with hysteresis; fed one 20 ms frame (int16 mono, 16 kHz,
    320 samples) per media tick.

    `update()` returns "started" or "stopped" on the frame where the state changes and None
    otherwise. "started" is reported `start_ms` after the onset; "stopped" `hangover_ms`
    after the last frame above the stop threshold.
    """

    __slots__ = (
        "_above",
        "_below",
        "_block_count",
        "_block_index",
        "_block_min",
        "_block_mins",
        "_buffer",
        "_floor",
        "_floor_low",
        "_hangover_frames",
        "_noise_adapt",
        "_rise_per_frame",
        "_start_dbfs",
        "_start_frames",
        "_stop_dbfs",
        "_window_min",
        "speaking",
    )

    def __init__(
        self,
        *,
        start_dbfs: float = -40.0,
        stop_dbfs: float = -45.0,
        start_ms: int = 60,
        hangover_ms: int = 400,
        noise_adapt: bool = True,
    ) -> None:
        if stop_dbfs > start_dbfs:
            raise ValueError("stop_dbfs must not be above start_dbfs")
        self._start_dbfs = float(start_dbfs)
        self._stop_dbfs = float(stop_dbfs)
        self._start_frames = _frames_for(start_ms)
        self._hangover_frames = _frames_for(hangover_ms)
        self._noise_adapt = noise_adapt
        self._rise_per_frame = FLOOR_RISE_DB_PER_S * FRAME_MS / 1000.0
        # A floor below this changes neither threshold, so the tracker never sinks under it:
        # a new noise then has fewer dB to climb before it is recognised.
        self._floor_low = min(start_dbfs - START_MARGIN_DB, stop_dbfs - STOP_MARGIN_DB)
        self._buffer = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self.speaking = False
        self._above = 0
        self._below = 0
        self._floor = self._floor_low
        self._block_min = math.inf
        self._block_count = 0
        self._block_mins = [math.inf] * WINDOW_BLOCKS
        self._block_index = 0
        self._window_min = math.inf

    @property
    def noise_floor_dbfs(self) -> float:
        """The tracked noise floor (never below the level at which it starts to matter)."""
        return self._floor

    def reset(self) -> None:
        """Back to not speaking, without reporting "stopped" (e.g. the leg was muted).

        The noise floor is kept: the room's noise has not changed because the leg muted.
        """
        self.speaking = False
        self._above = 0
        self._below = 0

    def update(self, frame: np.ndarray) -> str | None:
        """Feed the next frame; "started"/"stopped" when the state changes on it, else None."""
        buffer = self._buffer
        if frame.shape[0] == FRAME_SAMPLES:
            buffer[:] = frame
            level = _power_to_dbfs(float(buffer.dot(buffer)) / FRAME_SAMPLES)
        else:  # an odd-sized frame: correctness over speed
            level = frame_dbfs(frame)
        return self.update_level(level)

    def update_level(self, level: float) -> str | None:
        """update() for a frame whose level (dBFS) was measured elsewhere (frames_dbfs)."""
        start = self._start_dbfs
        stop = self._stop_dbfs
        if self._noise_adapt:
            floor = self._track_floor(level)
            if floor + START_MARGIN_DB > start:
                start = floor + START_MARGIN_DB
            if floor + STOP_MARGIN_DB > stop:
                stop = floor + STOP_MARGIN_DB

        if self.speaking:
            if level >= stop:
                self._below = 0
                return None
            self._below += 1
            if self._below < self._hangover_frames:
                return None
            self.speaking = False
            self._below = 0
            return "stopped"

        if level < start:
            self._above = 0
            return None
        self._above += 1
        if self._above < self._start_frames:
            return None
        self.speaking = True
        self._above = 0
        return "started"

    def _track_floor(self, level: float) -> float:
        block_min = self._block_min
        if level < block_min:
            block_min = level
        count = self._block_count + 1
        if count == BLOCK_FRAMES:
            self._block_mins[self._block_index] = block_min
            self._block_index = (self._block_index + 1) % WINDOW_BLOCKS
            self._window_min = min(self._block_mins)
            self._block_min = math.inf
            self._block_count = 0
        else:
            self._block_min = block_min
            self._block_count = count
        target = self._window_min
        if block_min < target:
            target = block_min
        floor = self._floor
        if target < floor:
            floor = target if target > self._floor_low else self._floor_low
        elif target > floor:
            rised = floor + self._rise_per_frame
            floor = target if target < rised else rised
        self._floor = floor
        return floor


class SpeakingAnalyser:
    """Speaking detection as an engine analyser (MediaEngine.add_analyser): reports "started"
    and "stopped" through `on_change`. A muted leg's audio is not speech here."""

    def __init__(self, on_change: Callable[[str], None], detector: SpeakingDetector | None = None):
        self.detector = detector or SpeakingDetector()
        self.on_change = on_change

    @property
    def speaking(self) -> bool:
        return self.detector.speaking

    def analyse(self, frame: np.ndarray, rate: int, level_dbfs: float, muted: bool) -> None:
        if muted:
            return
        change = self.detector.update_level(level_dbfs)
        if change is not None:
            self.on_change(change)

    def close(self) -> None:
        """End an open speaking pair now (the leg was muted or hangs up): "stopped"."""
        if self.detector.speaking:
            self.detector.reset()
            self.on_change("stopped")
