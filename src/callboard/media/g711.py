"""ITU-T G.711 mu-law and A-law as NumPy lookup tables.

The tables are built once, vectorised, with the rounding of the ITU-T G.191 reference
implementation (negative inputs are quantised via one's complement, so the quantiser is
symmetric). Encoding indexes a 64K table with the int16 samples viewed as uint16; decoding
indexes a 256-entry table with the payload bytes.
"""

from __future__ import annotations

import numpy as np

# Bit length of 0..255 as a lookup (segment number of the companded value).
_BIT_THRESHOLDS = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=np.int32)


def _bit_length(values: np.ndarray) -> np.ndarray:
    return np.searchsorted(_BIT_THRESHOLDS, values, side="right").astype(np.int32)


def _all_int16() -> np.ndarray:
    """Every int16 value, ordered by its uint16 bit pattern (the table index)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    x = _all_int16()
    magnitude = np.where(x < 0, (~x) >> 2, x >> 2) + 33
    magnitude = np.minimum(magnitude, 0x1FFF)
    segment = _bit_length(magnitude >> 6) + 1
    high = 8 - segment
    low = 15 - ((magnitude >> segment) & 0x0F)
    code = (high << 4) | low
    code = np.where(x >= 0, code | 0x80, code)
    return code.astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    code = np.arange(256, dtype=np.int32)
    inverted = ~code
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 4 << (exponent + 1)
    magnitude = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    return np.where(code < 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_encode() -> np.ndarray:
    x = _all_int16()
    magnitude = np.where(x < 0, (~x) >> 4, x >> 4)
    # Segment 0 and 1 share a step size; above that each segment doubles it.
    exponent = np.where(magnitude > 15, _bit_length(magnitude >> 5) + 1, 0)
    shifted = np.where(exponent > 0, (magnitude >> np.maximum(exponent - 1, 0)) - 16, magnitude)
    code = shifted + (exponent << 4)
    code = np.where(x >= 0, code | 0x80, code)
    return (code ^ 0x55).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    code = np.arange(256, dtype=np.int32)
    bits = (code ^ 0x55) & 0x7F
    exponent = bits >> 4
    mantissa = bits & 0x0F
    mantissa = np.where(exponent > 0, mantissa + 16, mantissa)
    mantissa = (mantissa << 4) + 8
    mantissa = np.where(exponent > 1, mantissa << np.maximum(exponent - 1, 0), mantissa)
    return np.where(code > 127, mantissa, -mantissa).astype(np.int16)


ULAW_ENCODE_TABLE = _build_ulaw_encode()
ULAW_DECODE_TABLE = _build_ulaw_decode()
ALAW_ENCODE_TABLE = _build_alaw_encode()
ALAW_DECODE_TABLE = _build_alaw_decode()
for _table in (ULAW_ENCODE_TABLE, ULAW_DECODE_TABLE, ALAW_ENCODE_TABLE, ALAW_DECODE_TABLE):
    _table.flags.writeable = False


def _as_index(pcm: np.ndarray) -> np.ndarray:
    if pcm.dtype != np.int16:
        pcm = np.clip(pcm, -32768, 32767).astype(np.int16)
    return pcm.view(np.uint16)


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> mu-law bytes (one byte per sample)."""
    return ULAW_ENCODE_TABLE.take(_as_index(pcm)).tobytes()


def ulaw_decode(data: bytes) -> np.ndarray:
    """mu-law bytes -> new int16 array."""
    return ULAW_DECODE_TABLE.take(np.frombuffer(data, dtype=np.uint8))


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples -> A-law bytes (one byte per sample)."""
    return ALAW_ENCODE_TABLE.take(_as_index(pcm)).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes -> new int16 array."""
    return ALAW_DECODE_TABLE.take(np.frombuffer(data, dtype=np.uint8))


QUIET_DBFS = -40.0
_QUIET_POWER = (32768.0**2 / 2) * 10 ** (QUIET_DBFS / 10)  # mean square at that level


class G711Law:
    """One companding law, for coding many legs' frames in one NumPy call each way."""

    __slots__ = ("_decode_f32", "decode_table", "encode_table", "name")

    def __init__(self, name: str, decode_table: np.ndarray, encode_table: np.ndarray) -> None:
        self.name = name
        self.decode_table = decode_table
        self.encode_table = encode_table
        self._decode_f32 = decode_table.astype(np.float32)

    def decode_rows(self, payloads: list[bytes], samples: int) -> np.ndarray:
        """Payloads of `samples` bytes each -> (len, samples) float32 sample values."""
        codes = np.frombuffer(b"".join(payloads), dtype=np.uint8)
        return self._decode_f32.take(codes).reshape(len(payloads), samples)

    def is_quiet(self, payload: bytes) -> bool:
        """RMS below QUIET_DBFS: a pause, where dropping a frame is not heard."""
        pcm = self._decode_f32.take(np.frombuffer(payload, dtype=np.uint8))
        return bool(pcm.size) and float(pcm.dot(pcm)) / pcm.size < _QUIET_POWER

    def encode_rows(self, frames: np.ndarray) -> bytes:
        """(rows, samples) int16 -> every row's payload, concatenated (row i at i * samples)."""
        return self.encode_table.take(frames.view(np.uint16)).tobytes()


ULAW = G711Law("PCMU", ULAW_DECODE_TABLE, ULAW_ENCODE_TABLE)
ALAW = G711Law("PCMA", ALAW_DECODE_TABLE, ALAW_ENCODE_TABLE)
