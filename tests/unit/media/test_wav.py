"""The streaming WAV writer: valid after every header rewrite, after close, and after a kill."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

from callboard.media.wav import HEADER_BYTES, WavWriter


def _read(path: Path) -> tuple[int, int, np.ndarray]:
    """(rate, channels, samples as (frames, channels)) through the stdlib reader."""
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = wav.readframes(wav.getnframes())
    samples = np.frombuffer(data, dtype="<i2").reshape(-1, channels)
    return rate, channels, samples


def _ramp(frames: int, channels: int, start: int = 0) -> np.ndarray:
    """Distinct content per sample and channel, so any misplacement shows."""
    base = (np.arange(start, start + frames) % 20000).astype(np.int16)
    return np.stack([base + 1000 * c for c in range(channels)], axis=1).astype(np.int16)


def test_fresh_file_is_a_valid_empty_wav(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "a.wav", sample_rate=8000, channels=2)
    rate, channels, samples = _read(writer.path)
    assert (rate, channels, len(samples)) == (8000, 2, 0)
    writer.close()


@pytest.mark.parametrize(("rate", "channels"), [(8000, 2), (16000, 1), (48000, 2), (44100, 3)])
def test_close_gives_exact_content_rate_and_layout(
    tmp_path: Path, rate: int, channels: int
) -> None:
    path = tmp_path / "b.wav"
    writer = WavWriter(path, sample_rate=rate, channels=channels)
    written: list[np.ndarray] = []
    for i in range(7):  # odd chunk sizes, crossing the 1 s header rewrite
        chunk = _ramp(rate // 3 + i, channels, start=sum(len(c) for c in written))
        writer.write(chunk)
        written.append(chunk)
    writer.close()
    writer.close()  # twice is harmless
    got_rate, got_channels, samples = _read(path)
    assert (got_rate, got_channels) == (rate, channels)
    np.testing.assert_array_equal(samples, np.concatenate(written))
    assert path.stat().st_size == HEADER_BYTES + samples.size * 2


def test_header_counts_audio_at_each_rewrite_without_close(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    writer = WavWriter(path, sample_rate=16000, channels=1, header_every_s=1.0)
    frames_seen = []
    for _second in range(3):
        for _ in range(50):  # one second in 20 ms frames
            writer.write(_ramp(320, 1)[:, 0])
        # Read with a separate handle, as a player would while the call goes on.
        _, _, samples = _read(path)
        frames_seen.append(len(samples))
    assert frames_seen == [16000, 32000, 48000]
    writer.write(_ramp(320, 1)[:, 0])  # not yet counted: still valid, one frame shorter
    assert len(_read(path)[2]) == 48000
    writer.close()
    assert len(_read(path)[2]) == 48320


def test_sigkill_leaves_a_playable_file_up_to_the_last_second(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    script = textwrap.dedent(
        f"""
        import os, signal
        import numpy as np
        from pathlib import Path
        from callboard.media.wav import WavWriter
        w = WavWriter(Path({str(path)!r}), sample_rate=8000, channels=2)
        frame = np.full((160, 2), [1000, -2000], dtype=np.int16)
        for _ in range(125):  # 2.5 s in 20 ms frames
            w.write(frame)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], env=dict(os.environ), timeout=30)
    assert proc.returncode == -9
    rate, channels, samples = _read(path)
    assert (rate, channels) == (8000, 2)
    assert len(samples) == 2 * 8000  # the rewrite at 2 s; the last half second is not counted
    assert (samples[:, 0] == 1000).all() and (samples[:, 1] == -2000).all()


def test_silence_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.wav"
    writer = WavWriter(path, sample_rate=8000, channels=2)
    writer.write_silence(12345)
    with pytest.raises(ValueError):
        writer.write(np.zeros(3, dtype=np.int16))  # not whole stereo frames
    assert writer.frames == 12345
    writer.close()
    with pytest.raises(ValueError):
        writer.write_bytes(b"\0\0\0\0")
    _, _, samples = _read(path)
    assert samples.shape == (12345, 2) and not samples.any()
    with pytest.raises(FileExistsError):  # never overwrites another recording
        WavWriter(path, sample_rate=8000, channels=1)
    with pytest.raises(ValueError):
        WavWriter(tmp_path / "e.wav", sample_rate=0, channels=1)
