from collections.abc import Callable

import numpy as np
import pytest

from callboard.media import g711

# --- an independent per-sample reference, after the ITU-T G.191 STL g711.c -----------


def ref_ulaw_compress(x: int) -> int:
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    high = 8 - segno
    low = 15 - ((absno >> segno) & 0x0F)
    code = (high << 4) | low
    return code | 0x80 if x >= 0 else code


def ref_ulaw_expand(code: int) -> int:
    sign = -1 if code < 0x80 else 1
    mantissa = ~code
    exponent = (mantissa >> 4) & 0x07
    segment = exponent + 1
    mantissa &= 0x0F
    step = 4 << segment
    return sign * ((0x80 << exponent) + step * mantissa + step // 2 - 4 * 33)


def ref_alaw_compress(x: int) -> int:
    ix = (~x) >> 4 if x < 0 else x >> 4
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if x >= 0:
        ix |= 0x80
    return ix ^ 0x55


def ref_alaw_expand(code: int) -> int:
    ix = (code ^ 0x55) & 0x7F
    iexp = ix >> 4
    mant = ix & 0x0F
    if iexp > 0:
        mant += 16
    mant = (mant << 4) + 8
    if iexp > 1:
        mant <<= iexp - 1
    return mant if code > 127 else -mant


ALL_PCM = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = bytes(range(256))


def test_known_ulaw_code_points() -> None:
    pcm = np.array([0, -1, 32767, -32768, 8, -8], dtype=np.int16)
    assert list(g711.ulaw_encode(pcm)) == [0xFF, 0x7F, 0x80, 0x00, 0xFE, 0x7E]
    decoded = g711.ulaw_decode(bytes([0xFF, 0x7F, 0x80, 0x00, 0xF0, 0x70, 0xFE]))
    assert decoded.tolist() == [0, 0, 32124, -32124, 120, -120, 8]


def test_known_alaw_code_points() -> None:
    pcm = np.array([0, -1, 32767, -32768], dtype=np.int16)
    assert list(g711.alaw_encode(pcm)) == [0xD5, 0x55, 0xAA, 0x2A]
    decoded = g711.alaw_decode(bytes([0xD5, 0x55, 0xAA, 0x2A]))
    assert decoded.tolist() == [8, -8, 32256, -32256]


@pytest.mark.parametrize(
    ("encode", "reference"),
    [(g711.ulaw_encode, ref_ulaw_compress), (g711.alaw_encode, ref_alaw_compress)],
)
def test_encoder_matches_reference_for_every_sample(
    encode: Callable[[np.ndarray], bytes], reference: Callable[[int], int]
) -> None:
    expected = bytes(reference(int(x)) for x in ALL_PCM)
    assert encode(ALL_PCM) == expected


@pytest.mark.parametrize(
    ("decode", "reference"),
    [(g711.ulaw_decode, ref_ulaw_expand), (g711.alaw_decode, ref_alaw_expand)],
)
def test_decoder_matches_reference_for_every_code(
    decode: Callable[[bytes], np.ndarray], reference: Callable[[int], int]
) -> None:
    assert decode(ALL_CODES).tolist() == [reference(c) for c in range(256)]


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(g711.ulaw_encode, g711.ulaw_decode), (g711.alaw_encode, g711.alaw_decode)],
)
def test_decoded_values_survive_reencoding(
    encode: Callable[[np.ndarray], bytes], decode: Callable[[bytes], np.ndarray]
) -> None:
    levels = decode(ALL_CODES)
    assert np.array_equal(decode(encode(levels)), levels)


@pytest.mark.parametrize(
    ("encode", "decode", "max_relative_error"),
    [(g711.ulaw_encode, g711.ulaw_decode, 0.035), (g711.alaw_encode, g711.alaw_decode, 0.035)],
)
def test_quantisation_error_is_logarithmic(
    encode: Callable[[np.ndarray], bytes],
    decode: Callable[[bytes], np.ndarray],
    max_relative_error: float,
) -> None:
    pcm = ALL_PCM[np.abs(ALL_PCM.astype(np.int32)) > 1024]
    error = np.abs(decode(encode(pcm)).astype(np.int32) - pcm.astype(np.int32))
    assert np.max(error / np.abs(pcm.astype(np.int32))) < max_relative_error


def test_decode_returns_int16_of_payload_length() -> None:
    out = g711.ulaw_decode(bytes(160))
    assert out.dtype == np.int16
    assert out.shape == (160,)


def test_wider_input_types_are_clipped_to_int16() -> None:
    wide = np.array([100000, -100000, 0], dtype=np.int32)
    assert g711.ulaw_encode(wide) == g711.ulaw_encode(np.array([32767, -32768, 0], np.int16))
