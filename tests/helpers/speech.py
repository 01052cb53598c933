"""Offline speech for tests: espeak-ng, read back as float samples at the rate asked for."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np
import soxr

from tests.helpers.peers import require_binary


def espeak(
    text: str, rate: int, *, voice: str = "en-us", speed: int = 175, workdir: Path | None = None
) -> np.ndarray:
    """`text` spoken by espeak-ng (`voice`, `speed` words a minute) as floats at `rate`."""
    binary = require_binary("espeak-ng")  # fails under CI when missing
    directory = Path(workdir or tempfile.gettempdir())
    key = hashlib.sha1(f"{voice}|{speed}|{text}".encode()).hexdigest()[:12]
    path = directory / f"espeak-{key}.wav"
    subprocess.run(
        [binary, "-v", voice, "-s", str(speed), "-w", str(path), text],
        check=True,
        timeout=60,
        capture_output=True,
    )
    with wave.open(str(path), "rb") as wav:
        source_rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return soxr.resample(data.astype(np.float64) / 32768.0, source_rate, rate)
