"""A streaming 16-bit PCM WAV writer whose file stays playable while it grows.

The header's RIFF and data sizes are rewritten every `header_every` frames of audio and on
close, always after the audio they count has been handed to the OS. A process killed mid-way
(SIGKILL, OOM) therefore leaves a valid WAV holding everything up to the last rewrite, about
a second by default, with any later samples as harmless trailing bytes.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

HEADER_BYTES = 44
SAMPLE_BYTES = 2
# RIFF sizes are 32-bit; stop short of the limit rather than write a header that lies.
MAX_DATA_BYTES = 0xFFFFFFFF - (HEADER_BYTES - 8)


def wav_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    """The canonical 44-byte header of a PCM s16le WAV with `data_bytes` of samples."""
    block_align = channels * SAMPLE_BYTES
    return b"".join(
        (
            b"RIFF",
            struct.pack("<I", HEADER_BYTES - 8 + data_bytes),
            b"WAVEfmt ",
            struct.pack(
                "<IHHIIHH",
                16,
                1,  # WAVE_FORMAT_PCM
                channels,
                sample_rate,
                sample_rate * block_align,
                block_align,
                SAMPLE_BYTES * 8,
            ),
            b"data",
            struct.pack("<I", data_bytes),
        )
    )


class WavFullError(OSError):
    """The file reached the 4 GiB a RIFF header can describe."""


class WavWriter:
    """Appends interleaved int16 frames to a WAV file; not thread-safe (one writer thread)."""

    def __init__(
        self,
        path: Path,
        *,
        sample_rate: int,
        channels: int,
        header_every_s: float = 1.0,
    ) -> None:
        if sample_rate <= 0 or not 1 <= channels <= 64:
            raise ValueError(f"invalid WAV format: {sample_rate} Hz, {channels} channels")
        self.path = path
        self.sample_rate = sample_rate
        self.channels = channels
        self._header_every = max(1, int(sample_rate * header_every_s))
        self._data_bytes = 0
        self._since_header = 0
        self._file: BinaryIO | None = open(path, "xb")  # noqa: SIM115 - closed in close()
        try:
            self._file.write(wav_header(sample_rate, channels, 0))
            self._file.flush()
        except BaseException:
            self._file.close()
            raise

    @property
    def frames(self) -> int:
        """Sample frames (one sample per channel) written so far."""
        return self._data_bytes // (self.channels * SAMPLE_BYTES)

    @property
    def closed(self) -> bool:
        return self._file is None

    def write(self, samples: np.ndarray) -> None:
        """Append samples: shape (n, channels), or 1-D interleaved (mono: just the samples)."""
        data = np.ascontiguousarray(samples, dtype="<i2").tobytes()
        if len(data) % (self.channels * SAMPLE_BYTES):
            raise ValueError(f"{len(data)} bytes is not whole {self.channels}-channel frames")
        self.write_bytes(data)

    def write_silence(self, frames: int) -> None:
        """Append `frames` sample frames of digital silence."""
        step = self.sample_rate  # a second at a time keeps the buffer small
        while frames > 0:
            count = min(frames, step)
            self.write_bytes(bytes(count * self.channels * SAMPLE_BYTES))
            frames -= count

    def write_bytes(self, data: bytes) -> None:
        """Append already interleaved s16le bytes (a whole number of frames)."""
        file = self._file
        if file is None:
            raise ValueError(f"{self.path} is closed")
        if self._data_bytes + len(data) > MAX_DATA_BYTES:
            raise WavFullError(f"{self.path}: WAV size limit reached")
        file.write(data)
        self._data_bytes += len(data)
        self._since_header += len(data) // (self.channels * SAMPLE_BYTES)
        if self._since_header >= self._header_every:
            self.flush()

    def flush(self) -> None:
        """Hand buffered audio to the OS, then make the header count it."""
        file = self._file
        if file is None:
            return
        file.flush()
        end = file.tell()
        file.seek(4)
        file.write(struct.pack("<I", HEADER_BYTES - 8 + self._data_bytes))
        file.seek(40)
        file.write(struct.pack("<I", self._data_bytes))
        file.seek(end)
        file.flush()
        self._since_header = 0

    def close(self) -> None:
        """Final header and close; safe to call twice. When the disk refuses the last
        buffered audio (full), the header is made to count what did reach it, so the file
        stays a valid WAV, and the error is raised."""
        file = self._file
        if file is None:
            return
        try:
            self.flush()
        except OSError:
            self._count_what_is_on_disk(file.fileno())
            with contextlib.suppress(OSError):
                file.close()  # the buffered rest cannot be written; the descriptor is freed
            raise
        finally:
            self._file = None
        file.close()

    def _count_what_is_on_disk(self, fd: int) -> None:
        on_disk = os.fstat(fd).st_size - HEADER_BYTES
        data = max(0, on_disk - on_disk % (self.channels * SAMPLE_BYTES))
        self._data_bytes = data
        with contextlib.suppress(OSError):
            os.pwrite(fd, struct.pack("<I", HEADER_BYTES - 8 + data), 4)
            os.pwrite(fd, struct.pack("<I", data), 40)
