"""Signal measurements shared by the media tests."""

from __future__ import annotations

import numpy as np


def tone(freq: float, rate: int, samples: int, amplitude: float = 8000.0) -> np.ndarray:
    t = np.arange(samples) / rate
    return np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def db(ratio: float) -> float:
    return 20.0 * float(np.log10(max(ratio, 1e-12)))


def peak_frequency(x: np.ndarray, rate: int) -> float:
    """Frequency of the strongest spectral line, refined by parabolic interpolation."""
    data = np.asarray(x, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
    k = int(np.argmax(spectrum[1:]) + 1)
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * rate / len(data)


def spectral_peaks(x: np.ndarray, rate: int, count: int) -> list[float]:
    """The `count` strongest local maxima of the spectrum, in Hz, sorted."""
    data = np.asarray(x, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(data * np.hanning(len(data))))
    local = (spectrum[1:-1] > spectrum[:-2]) & (spectrum[1:-1] >= spectrum[2:])
    indices = np.nonzero(local)[0] + 1
    best = indices[np.argsort(spectrum[indices])[::-1][:count]]
    return sorted(float(i * rate / len(data)) for i in best)


def thd_n_db(x: np.ndarray, rate: int, freq: float) -> float:
    """Everything but the fundamental (and DC), relative to the fundamental, in dB."""
    data = np.asarray(x, dtype=np.float64)
    power = np.abs(np.fft.rfft(data * np.blackman(len(data)))) ** 2
    k = round(freq * len(data) / rate)
    fundamental = power[k - 8 : k + 9].sum()
    rest = power[4:].sum() - fundamental
    return 10.0 * float(np.log10(rest / fundamental))


def same_within_1_lsb(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal but for float32 rounding: a bank's one matrix product and a single stream's may
    sum in another order (the BLAS kernel depends on the matrix shape), 1 LSB at most."""
    if got.shape != want.shape:
        return False
    return int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max(initial=0)) <= 1
