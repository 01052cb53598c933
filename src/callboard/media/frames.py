"""The unit of audio exchanged inside the media engine: 20 ms of 16 kHz mono int16."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_SILENCE.flags.writeable = False


def silence() -> np.ndarray:
    """One frame of silence; shared and read-only, so callers must copy before writing."""
    return _SILENCE


def samples_per_frame(rate: int, ms: int = FRAME_MS) -> int:
    """Number of samples in `ms` milliseconds at `rate` Hz."""
    return rate * ms // 1000


def saturate16(total: np.ndarray, in_place: bool = False) -> np.ndarray:
    """A wider sum of samples (int32) clipped to int16. Two ufuncs: np.clip's Python wrapper
    costs twice as much, and this runs for every leg that hears a source, every tick."""
    out = total if in_place else np.minimum(total, 32767)
    if in_place:
        np.minimum(out, 32767, out=out)
    np.maximum(out, -32768, out=out)
    return out.astype(np.int16)
