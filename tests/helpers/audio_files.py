"""Audio files made at test time: WAV of any width and channel count, MP3 (PyAV/LAME)."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import numpy.typing as npt

from tests.helpers.audio import to_float


def wav_bytes(samples: npt.ArrayLike, rate: int, bits: int = 16) -> bytes:
    """A PCM WAV of ``samples`` (1-D mono or (frames, channels), float in [-1, 1] or int16),
    8, 16, 24 or 32 bits per sample."""
    x = to_float(samples)
    if x.ndim == 1:
        x = x[:, None]
    channels = x.shape[1]
    full = float(2 ** (bits - 1))
    ints = np.clip(np.round(x * full), -full, full - 1).astype(np.int64)
    if bits == 8:
        body = (ints + 128).astype(np.uint8).tobytes()
    elif bits == 16:
        body = ints.astype("<i2").tobytes()
    elif bits == 24:
        raw = ints.astype("<i4").reshape(-1, 1).view(np.uint8).reshape(-1, 4)
        body = raw[:, :3].tobytes()
    elif bits == 32:
        body = ints.astype("<i4").tobytes()
    else:
        raise ValueError(f"unsupported width {bits}")
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(body))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(body))
        + body
    )


def mp3_bytes(samples: npt.ArrayLike, rate: int, bitrate: int = 128_000) -> bytes:
    """An MP3 (LAME via PyAV) of mono or stereo float/int16 ``samples``."""
    x = to_float(samples).astype(np.float32)
    if x.ndim == 1:
        x = x[:, None]
    layout = "mono" if x.shape[1] == 1 else "stereo"
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout=layout)
        stream.bit_rate = bitrate
        planar = np.ascontiguousarray(x.T)
        step = 1152
        for start in range(0, planar.shape[1], step):
            chunk = np.ascontiguousarray(planar[:, start : start + step])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()
