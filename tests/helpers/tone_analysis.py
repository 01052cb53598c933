"""Analysis of received call-progress tones: on/off cadence runs and spectral peaks.

What these measure is audio only (float samples at `rate`); the expectations are left to the
tests, so the same helpers check tones against published values or against the tone plans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass
class Run:
    """A stretch of `duration_ms` that is all sound (`on`) or all silence, from `start_s`."""

    on: bool
    start_s: float
    duration_ms: float


def on_off_runs(
    x: FloatArray, rate: int, block_ms: float = 5.0, threshold_dbfs: float = -50.0
) -> list[Run]:
    """Runs of `block_ms` blocks whose level (sine convention) is above / below the threshold.

    The default threshold sits well under the trough of a 90 %-deep amplitude-modulated tone at
    the generator level (about -38 dBFS), yet far above the digital silence between bursts.
    """
    block = int(rate * block_ms / 1000)
    usable = x[: x.size - x.size % block].reshape(-1, block)
    loud = 10 * np.log10(2 * np.mean(usable**2, axis=1) + 1e-20) > threshold_dbfs
    runs: list[Run] = []
    for i, on in enumerate(loud):
        if runs and runs[-1].on == bool(on):
            runs[-1].duration_ms += block_ms
        else:
            runs.append(Run(bool(on), i * block / rate, block_ms))
    return runs


def spectral_peaks(x: FloatArray, rate: int, count: int, min_gap_hz: float = 25.0) -> list[float]:
    """The `count` strongest local maxima of the Hann-windowed spectrum (Hz, parabolic-
    interpolated on the log power), at least `min_gap_hz` apart, in ascending order."""
    n_fft = 1 << 17
    power = np.abs(np.fft.rfft((x - x.mean()) * np.hanning(x.size), n_fft)) ** 2
    log_power = np.log(power + 1e-30)
    is_peak = np.zeros(power.size, bool)
    is_peak[1:-1] = (power[1:-1] >= power[:-2]) & (power[1:-1] >= power[2:])
    found: list[float] = []
    for k in np.argsort(power)[::-1]:
        if not is_peak[k]:
            continue
        a, b, c = log_power[k - 1 : k + 2]
        freq = (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / n_fft
        if all(abs(freq - other) >= min_gap_hz for other in found):
            found.append(float(freq))
        if len(found) == count:
            break
    return sorted(found)
