"""Audio analysis for tests (NumPy only).

Sample convention: integer arrays are PCM with full scale 32768 (int16) or 2**31 (int32);
float arrays are already in [-1.0, 1.0]. Every function converts with :func:`to_float`.

Level convention (AES17): **0 dBFS is the RMS of a full-scale sine**, so a sine of peak
amplitude A (full scale 1.0) measures 20*log10(A) dBFS, and ``tone(dbfs=-6)`` measures -6.
A full-scale square wave measures +3 dBFS. Silence measures -inf (clamped to ``FLOOR_DBFS``).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
FLOOR_DBFS = -200.0

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_ALAW = 0x0006
_WAVE_FORMAT_MULAW = 0x0007
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE


def to_float(samples: npt.ArrayLike) -> FloatArray:
    """Samples as float64 in [-1, 1] (integer PCM is divided by its full scale)."""
    array = np.asarray(samples)
    if array.dtype == np.uint8:  # 8-bit WAV PCM is unsigned
        return (array.astype(np.float64) - 128.0) / 128.0
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float64) / float(2 ** (8 * array.dtype.itemsize - 1))
    return array.astype(np.float64)


def to_int16(samples: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """Float [-1, 1] (clipped) or integer samples as int16 PCM."""
    array = np.asarray(samples)
    if array.dtype == np.int16:
        return array
    scaled = np.round(to_float(array) * 32768.0)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def _db(power_ratio: float) -> float:
    return 10.0 * math.log10(power_ratio) if power_ratio > 0 else FLOOR_DBFS


# -- generation --------------------------------------------------------------------------


def tone(
    freq: float,
    ms: float,
    rate: int = 8000,
    dbfs: float = -6.0,
    *,
    phase: float = 0.0,
    dtype: str = "int16",
) -> npt.NDArray[np.int16] | FloatArray:
    """A sine of ``ms`` milliseconds at ``dbfs`` (sine convention: peak = 10**(dbfs/20)).

    ``dtype="int16"`` (default) gives PCM, ``"float"`` gives float64 in [-1, 1].
    """
    n = round(rate * ms / 1000.0)
    t = np.arange(n, dtype=np.float64) / rate
    wave = 10.0 ** (dbfs / 20.0) * np.sin(2.0 * np.pi * freq * t + phase)
    return to_int16(wave) if dtype == "int16" else wave


def silence(ms: float, rate: int = 8000) -> npt.NDArray[np.int16]:
    return np.zeros(round(rate * ms / 1000.0), dtype=np.int16)


def white_noise(
    ms: float, rate: int = 8000, dbfs: float = -20.0, seed: int = 1
) -> npt.NDArray[np.int16]:
    """Gaussian noise whose RMS level is ``dbfs`` (sine convention)."""
    n = round(rate * ms / 1000.0)
    rms = 10.0 ** (dbfs / 20.0) / math.sqrt(2.0)
    return to_int16(np.random.default_rng(seed).normal(0.0, rms, n))


# -- measurement --------------------------------------------------------------------------


def level_dbfs(samples: npt.ArrayLike) -> float:
    """RMS level in dBFS, 0 dBFS = RMS of a full-scale sine (see module doc)."""
    x = to_float(samples).ravel()
    if x.size == 0:
        return FLOOR_DBFS
    return _db(2.0 * float(np.mean(x * x)))


def peak_dbfs(samples: npt.ArrayLike) -> float:
    """Peak absolute sample relative to full scale (a full-scale sine peaks at 0)."""
    x = to_float(samples).ravel()
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else FLOOR_DBFS


def _spectrum(samples: npt.ArrayLike, pad_to: int | None = None) -> tuple[FloatArray, int, float]:
    """Hann-windowed power spectrum |X|^2, the FFT size, and sum(w^2) for normalisation."""
    x = to_float(samples).ravel()
    if x.size < 8:
        raise ValueError("need at least 8 samples")
    x = x - x.mean()
    window = np.hanning(x.size)
    n_fft = max(pad_to or 0, x.size)
    spectrum = np.fft.rfft(x * window, n=n_fft)
    return np.abs(spectrum) ** 2, n_fft, float(np.sum(window * window))


def dominant_frequency(samples: npt.ArrayLike, rate: int, min_freq: float = 20.0) -> float:
    """Frequency (Hz) of the strongest spectral peak at or above ``min_freq``.

    Hann window, zero-padded FFT, then parabolic interpolation of the log magnitude around the
    peak bin: accurate to well under 1 Hz for a clean tone of 100 ms or more.
    """
    x = to_float(samples).ravel()
    power, n_fft, _ = _spectrum(x, pad_to=max(1 << (x.size - 1).bit_length(), 8192))
    first = max(1, math.ceil(min_freq * n_fft / rate))
    if first >= power.size - 1:
        raise ValueError("min_freq is above the Nyquist frequency")
    k = first + int(np.argmax(power[first:-1]))
    if k <= 0:
        return 0.0
    a, b, c = (math.log(max(float(v), 1e-300)) for v in power[k - 1 : k + 2])
    denom = a - 2.0 * b + c
    offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
    return (k + offset) * rate / n_fft


def band_energy_db(samples: npt.ArrayLike, rate: int, freq: float, width: float) -> float:
    """Level (dBFS, sine convention) of the content between freq - width/2 and freq + width/2.

    A -6 dBFS tone at ``freq`` reads about -6 in its band (make ``width`` at least
    ``4 * rate / len(samples)`` so the Hann main lobe fits) and far lower elsewhere.
    """
    power, n_fft, window_energy = _spectrum(samples)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    weights = np.full(power.size, 2.0)
    weights[0] = 1.0
    if n_fft % 2 == 0:
        weights[-1] = 1.0
    band = (freqs >= freq - width / 2.0) & (freqs <= freq + width / 2.0)
    mean_square = float(np.sum(power[band] * weights[band])) / (n_fft * window_energy)
    return _db(2.0 * mean_square)


def goertzel(samples: npt.ArrayLike, rate: int, freq: float) -> float:
    """Amplitude (full scale 1.0) of the component at ``freq`` by the Goertzel algorithm.

    A sine of peak A at exactly ``freq`` gives about A (for a whole number of cycles; leakage
    otherwise); ``20*log10`` of it is that tone's level in dBFS. Used for DTMF checks.
    """
    x = to_float(samples).ravel()
    n = x.size
    if n == 0:
        return 0.0
    # The single DFT bin that the Goertzel recurrence computes, vectorised.
    omega = 2.0 * math.pi * freq / rate
    bin_value = np.dot(x, np.exp(-1j * omega * np.arange(n)))
    return float(2.0 * abs(bin_value) / n)


DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


def dtmf_tone(digit: str, ms: float = 100, rate: int = 8000, dbfs: float = -10.0) -> FloatArray:
    """The two-tone DTMF signal of a digit (each tone at ``dbfs``), as float."""
    for row, keys in enumerate(DTMF_KEYS):
        if digit.upper() in keys:
            col = keys.index(digit.upper())
            low = tone(DTMF_LOW[row], ms, rate, dbfs, dtype="float")
            high = tone(DTMF_HIGH[col], ms, rate, dbfs, dtype="float")
            return np.asarray(low, dtype=np.float64) + np.asarray(high, dtype=np.float64)
    raise ValueError(f"not a DTMF digit: {digit!r}")


def detect_dtmf(samples: npt.ArrayLike, rate: int = 8000, min_dbfs: float = -35.0) -> str | None:
    """The DTMF digit in a block of samples (>= 40 ms), or None."""
    lows = [goertzel(samples, rate, f) for f in DTMF_LOW]
    highs = [goertzel(samples, rate, f) for f in DTMF_HIGH]
    row, col = int(np.argmax(lows)), int(np.argmax(highs))
    threshold = 10.0 ** (min_dbfs / 20.0)
    if lows[row] < threshold or highs[col] < threshold:
        return None
    # The winning tone of each group must stand out from the rest of its group.
    if sorted(lows)[-2] > lows[row] / 4 or sorted(highs)[-2] > highs[col] / 4:
        return None
    return DTMF_KEYS[row][col]


def xcorr_lag(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[int, float]:
    """Lag of ``b`` relative to ``a`` and the normalised correlation peak.

    ``lag > 0`` means ``b`` is ``a`` delayed by ``lag`` samples (b[n] ~ a[n - lag]). The peak
    is divided by ||a||*||b||: 1.0 for identical (shifted, fully overlapping) signals, near 0
    for unrelated ones; a scaled copy still gives 1.0.
    """
    x = to_float(a).ravel()
    y = to_float(b).ravel()
    if x.size == 0 or y.size == 0:
        return 0, 0.0
    n = x.size + y.size - 1
    n_fft = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(y, n_fft) * np.conj(np.fft.rfft(x, n_fft)), n_fft)
    # corr[k] = sum_n y[n + k] x[n]; negative lags wrap to the end.
    corr = np.concatenate((corr[-(x.size - 1) :], corr[: y.size])) if x.size > 1 else corr[: y.size]
    index = int(np.argmax(np.abs(corr)))
    lag = index - (x.size - 1)
    norm = float(np.linalg.norm(x) * np.linalg.norm(y))
    return lag, (float(corr[index]) / norm if norm > 0 else 0.0)


def active_spans(
    samples: npt.ArrayLike, rate: int, threshold_dbfs: float = -40.0, frame_ms: float = 20.0
) -> list[tuple[float, float]]:
    """(start_s, end_s) spans of 20 ms frames louder than ``threshold_dbfs``."""
    x = to_float(samples).ravel()
    frame = max(1, round(rate * frame_ms / 1000.0))
    spans: list[tuple[float, float]] = []
    start: int | None = None
    for i in range(0, x.size - frame + 1, frame):
        loud = level_dbfs(x[i : i + frame]) > threshold_dbfs
        if loud and start is None:
            start = i
        elif not loud and start is not None:
            spans.append((start / rate, i / rate))
            start = None
    if start is not None:
        spans.append((start / rate, (x.size - x.size % frame) / rate))
    return spans


# -- G.711 ------------------------------------------------------------------------------


def _ulaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0xFF
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32) ^ 0x55
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


ULAW_TO_LINEAR = _ulaw_table()
ALAW_TO_LINEAR = _alaw_table()


def g711_decode(payload: bytes, law: str = "ulaw") -> npt.NDArray[np.int16]:
    """Decode G.711 bytes (``law`` "ulaw"/"pcmu" or "alaw"/"pcma") to int16 PCM."""
    table = ALAW_TO_LINEAR if law.lower() in ("alaw", "pcma", "a") else ULAW_TO_LINEAR
    return table[np.frombuffer(payload, dtype=np.uint8)]


def g711_encode(samples: npt.ArrayLike, law: str = "ulaw") -> bytes:
    """Encode PCM to G.711 exactly as the ITU reference (Sun g711.c) does."""
    pcm = to_int16(samples).astype(np.int32)
    if law.lower() in ("alaw", "pcma", "a"):
        value = pcm >> 3
        mask = np.where(value >= 0, 0xD5, 0x55)
        value = np.where(value >= 0, value, -value - 1)
        seg = np.searchsorted(_SEG_AEND, value, side="left")
        shift = np.where(seg < 2, 1, seg)
        code = (np.minimum(seg, 7) << 4) | ((value >> shift) & 0x0F)
        code = np.where(seg >= 8, 0x7F, code)
    else:
        value = pcm >> 2
        mask = np.where(value < 0, 0x7F, 0xFF)
        value = np.minimum(np.abs(value), 8159) + (0x84 >> 2)
        seg = np.searchsorted(_SEG_UEND, value, side="left")
        code = (np.minimum(seg, 7) << 4) | ((value >> (np.minimum(seg, 7) + 1)) & 0x0F)
        code = np.where(seg >= 8, 0x7F, code)
    return (code ^ mask).astype(np.uint8).tobytes()


_SEG_AEND = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_SEG_UEND = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])


# -- WAV files --------------------------------------------------------------------------


def read_wav(path: str | Path) -> tuple[int, npt.NDArray[np.generic]]:
    """Read a WAV file: (sample rate, array of shape (frames, channels)).

    Parses RIFF by hand so that it handles what the stdlib ``wave`` module does not: IEEE
    float, WAVE_FORMAT_EXTENSIBLE, G.711 (decoded to int16), and files whose header sizes
    were never finalised (a writer killed mid-way: the data chunk runs to the end of file).
    dtype: uint8 / int16 / int32 (24-bit is widened to int32) / float32 / float64 as stored.
    """
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] not in (b"RIFF", b"RF64") or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    payload: bytes | None = None
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        (size,) = struct.unpack_from("<I", data, offset + 4)
        body_start = offset + 8
        if chunk_id == b"data":
            end = len(data) if size in (0, 0xFFFFFFFF) else min(len(data), body_start + size)
            payload = data[body_start:end]
            if fmt is not None:
                break
        elif chunk_id == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body_start)
            if tag == _WAVE_FORMAT_EXTENSIBLE and size >= 40:
                (tag,) = struct.unpack_from("<H", data, body_start + 24)  # subformat GUID
            fmt = (tag, channels, rate, bits)
        offset = body_start + size + (size & 1)
    if fmt is None or payload is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    width = bits // 8
    usable = len(payload) - len(payload) % (width * channels)
    payload = payload[:usable]
    samples: npt.NDArray[np.generic]
    if tag == _WAVE_FORMAT_PCM:
        if bits == 8:
            samples = np.frombuffer(payload, dtype=np.uint8)
        elif bits == 16:
            samples = np.frombuffer(payload, dtype="<i2").astype(np.int16)
        elif bits == 24:
            raw = np.frombuffer(payload, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
            samples = ((raw[:, 0] << 8) | (raw[:, 1] << 16) | (raw[:, 2] << 24)).astype(np.int32)
        elif bits == 32:
            samples = np.frombuffer(payload, dtype="<i4").astype(np.int32)
        else:
            raise ValueError(f"{path}: unsupported PCM width {bits}")
    elif tag == _WAVE_FORMAT_IEEE_FLOAT:
        samples = np.frombuffer(payload, dtype="<f4" if bits == 32 else "<f8").copy()
    elif tag in (_WAVE_FORMAT_ALAW, _WAVE_FORMAT_MULAW):
        samples = g711_decode(payload, "alaw" if tag == _WAVE_FORMAT_ALAW else "ulaw")
    else:
        raise ValueError(f"{path}: unsupported WAV format tag {tag:#x}")
    return rate, samples.reshape(-1, channels)


def read_wav_mono(path: str | Path) -> tuple[int, FloatArray]:
    """(rate, float64 mono in [-1, 1]): channels averaged."""
    rate, samples = read_wav(path)
    return rate, to_float(samples).mean(axis=1)


def write_wav(
    path: str | Path, rate: int, samples: npt.ArrayLike, *, sample_format: str = "pcm16"
) -> Path:
    """Write ``samples`` (1-D mono, or (frames, channels)) as 16-bit PCM or 32-bit float."""
    array = np.asarray(samples)
    if array.ndim == 1:
        array = array[:, None]
    channels = array.shape[1]
    if sample_format == "pcm16":
        tag, bits, body = _WAVE_FORMAT_PCM, 16, to_int16(array).astype("<i2").tobytes()
    elif sample_format == "float32":
        tag, bits, body = _WAVE_FORMAT_IEEE_FLOAT, 32, to_float(array).astype("<f4").tobytes()
    else:
        raise ValueError("sample_format must be 'pcm16' or 'float32'")
    block_align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block_align, block_align, bits)
    header = b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(body)) + b"WAVE"
    header += b"fmt " + struct.pack("<I", len(fmt)) + fmt
    header += b"data" + struct.pack("<I", len(body))
    out = Path(path)
    out.write_bytes(header + body)
    return out
