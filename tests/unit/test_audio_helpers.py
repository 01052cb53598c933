"""The audio analysis helpers must be right before tests can trust what they say."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.audio import (
    FLOOR_DBFS,
    active_spans,
    band_energy_db,
    detect_dtmf,
    dominant_frequency,
    dtmf_tone,
    g711_decode,
    g711_encode,
    goertzel,
    level_dbfs,
    peak_dbfs,
    read_wav,
    read_wav_mono,
    silence,
    to_float,
    to_int16,
    tone,
    white_noise,
    write_wav,
    xcorr_lag,
)


class TestLevels:
    def test_full_scale_sine_is_zero_dbfs(self) -> None:
        x = tone(1000, 500, 8000, 0.0, dtype="float")
        assert level_dbfs(x) == pytest.approx(0.0, abs=0.01)
        assert peak_dbfs(x) == pytest.approx(0.0, abs=0.01)

    @pytest.mark.parametrize("dbfs", [-3.0, -6.0, -20.0, -40.0])
    def test_tone_measures_what_was_asked(self, dbfs: float) -> None:
        assert level_dbfs(tone(440, 1000, 16000, dbfs)) == pytest.approx(dbfs, abs=0.05)

    def test_full_scale_square_is_plus_three(self) -> None:
        square = np.where(np.arange(800) % 8 < 4, 1.0, -1.0)
        assert level_dbfs(square) == pytest.approx(3.01, abs=0.01)

    def test_silence_is_the_floor(self) -> None:
        assert level_dbfs(silence(100)) == FLOOR_DBFS
        assert level_dbfs(np.array([], dtype=np.int16)) == FLOOR_DBFS

    def test_int16_and_float_agree(self) -> None:
        pcm = tone(300, 200, 8000, -12)
        assert level_dbfs(pcm) == pytest.approx(level_dbfs(to_float(pcm)), abs=1e-9)

    def test_noise_level(self) -> None:
        assert level_dbfs(white_noise(2000, 8000, -20)) == pytest.approx(-20, abs=0.2)


class TestFrequency:
    @pytest.mark.parametrize(
        ("freq", "rate"), [(440.0, 8000), (1003.7, 8000), (3399.0, 8000), (150.2, 16000)]
    )
    def test_dominant_frequency_is_accurate(self, freq: float, rate: int) -> None:
        assert dominant_frequency(tone(freq, 200, rate, -10), rate) == pytest.approx(freq, abs=0.5)

    def test_dominant_frequency_with_noise_and_a_weaker_tone(self) -> None:
        rate = 16000
        x = (
            to_float(tone(700, 500, rate, -6))
            + to_float(tone(2500, 500, rate, -20))
            + to_float(white_noise(500, rate, -30))
        )
        assert dominant_frequency(x, rate) == pytest.approx(700, abs=1)

    def test_dc_is_ignored(self) -> None:
        x = to_float(tone(500, 200, 8000, -20)) + 0.3
        assert dominant_frequency(x, 8000) == pytest.approx(500, abs=1)

    def test_band_energy(self) -> None:
        x = tone(1000, 500, 8000, -6)
        assert band_energy_db(x, 8000, 1000, 100) == pytest.approx(-6, abs=0.1)
        assert band_energy_db(x, 8000, 2000, 200) < -80
        mixed = to_float(x) + to_float(tone(3000, 500, 8000, -26))
        assert band_energy_db(mixed, 8000, 3000, 100) == pytest.approx(-26, abs=0.2)

    def test_goertzel_amplitude(self) -> None:
        x = tone(1000, 100, 8000, -6, dtype="float")
        assert 20 * math.log10(goertzel(x, 8000, 1000)) == pytest.approx(-6, abs=0.05)
        assert goertzel(x, 8000, 1500) < 0.01
        assert goertzel(np.array([]), 8000, 1000) == 0.0

    @pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
    def test_dtmf_round_trip(self, digit: str) -> None:
        assert detect_dtmf(dtmf_tone(digit, 60)) == digit

    def test_dtmf_rejects_a_single_tone_and_silence(self) -> None:
        assert detect_dtmf(tone(697, 60, 8000, -10)) is None
        assert detect_dtmf(silence(60)) is None
        with pytest.raises(ValueError):
            dtmf_tone("x")


class TestCorrelation:
    def test_lag_of_a_delayed_copy(self) -> None:
        a = to_float(white_noise(500, 8000, -10, seed=3))
        b = np.concatenate([np.zeros(137), a])[: a.size] * 0.5
        lag, peak = xcorr_lag(a, b)
        assert lag == 137
        assert peak > 0.9

    def test_negative_lag(self) -> None:
        a = to_float(white_noise(300, 8000, -10, seed=4))
        assert xcorr_lag(a, a[50:])[0] == -50  # b starts 50 samples into a: b leads
        assert xcorr_lag(a[50:], a)[0] == 50

    def test_unrelated_signals_correlate_weakly(self) -> None:
        a = to_float(white_noise(500, 8000, -10, seed=5))
        b = to_float(white_noise(500, 8000, -10, seed=6))
        assert abs(xcorr_lag(a, b)[1]) < 0.1
        assert xcorr_lag(np.array([]), b) == (0, 0.0)


class TestSpans:
    def test_active_spans(self) -> None:
        x = np.concatenate([silence(200), tone(500, 400, 8000, -10), silence(200)])
        ((start, end),) = active_spans(x, 8000)
        assert start == pytest.approx(0.2, abs=0.021)
        assert end == pytest.approx(0.6, abs=0.021)


class TestG711:
    def test_tables_match_the_reference_decoder(self) -> None:
        # Spot values from ITU-T G.711 / the Sun reference implementation.
        assert g711_decode(bytes([0xFF, 0x7F, 0x00, 0x80]), "ulaw").tolist() == [
            0, 0, -32124, 32124
        ]  # fmt: skip
        assert g711_decode(bytes([0xD5, 0x55, 0x2A, 0xAA]), "alaw").tolist() == [
            8, -8, -32256, 32256
        ]  # fmt: skip

    def test_alaw_codes_round_trip(self) -> None:
        codes = bytes(range(256))
        assert g711_encode(g711_decode(codes, "alaw"), "alaw") == codes

    @pytest.mark.parametrize("law", ["ulaw", "alaw"])
    def test_quantisation_noise_is_small(self, law: str) -> None:
        x = tone(1000, 100, 8000, -6)
        y = g711_decode(g711_encode(x, law), law)
        error = to_float(y) - to_float(x)
        assert level_dbfs(error) < level_dbfs(x) - 30  # G.711 SNR is about 38 dB

    def test_ulaw_zero_has_two_codes(self) -> None:
        # 0x7F and 0xFF both decode to 0; everything else round-trips exactly.
        codes = bytes(c for c in range(256) if c != 0x7F)
        assert g711_encode(g711_decode(codes, "ulaw"), "ulaw") == codes


class TestWav:
    def test_pcm16_round_trip(self, tmp_path: Path) -> None:
        x = tone(440, 100, 16000, -6)
        path = write_wav(tmp_path / "a.wav", 16000, x)
        rate, y = read_wav(path)
        assert rate == 16000
        assert y.dtype == np.int16 and y.shape == (x.size, 1)
        assert np.array_equal(y[:, 0], x)

    def test_stereo_float_round_trip(self, tmp_path: Path) -> None:
        left = tone(440, 50, 48000, -6, dtype="float")
        right = tone(880, 50, 48000, -12, dtype="float")
        path = write_wav(
            tmp_path / "f.wav", 48000, np.stack([left, right], 1), sample_format="float32"
        )
        rate, y = read_wav(path)
        assert rate == 48000 and y.dtype == np.float32 and y.shape == (left.size, 2)
        assert np.allclose(y[:, 1], right, atol=1e-6)
        _, mono = read_wav_mono(path)
        assert np.allclose(mono, (left + right) / 2, atol=1e-6)

    def test_stdlib_wave_can_read_what_we_write(self, tmp_path: Path) -> None:
        import wave

        path = write_wav(tmp_path / "s.wav", 8000, tone(1000, 20, 8000))
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (
                8000, 1, 2, 160
            )  # fmt: skip

    def test_unfinalised_header_reads_to_end_of_file(self, tmp_path: Path) -> None:
        x = tone(500, 40, 8000)
        path = write_wav(tmp_path / "u.wav", 8000, x)
        data = bytearray(path.read_bytes())
        data[4:8] = b"\x00\x00\x00\x00"
        data[40:44] = b"\x00\x00\x00\x00"  # data chunk size never written
        path.write_bytes(bytes(data) + b"\x01")  # and a torn last sample
        _, y = read_wav(path)
        assert np.array_equal(y[:, 0], x)

    def test_extensible_24_bit(self, tmp_path: Path) -> None:
        values = np.array([0, (1 << 23) - 1, -(1 << 23), 12345], dtype=np.int64)
        body = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in values)
        guid_pcm = bytes.fromhex("0100000000001000800000aa00389b71")  # KSDATAFORMAT PCM
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 8000, 24000, 3, 24, 22, 24, 4) + guid_pcm
        riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
        riff += b"LIST" + struct.pack("<I", 3) + b"abc\x00"  # odd chunk, padded
        riff += b"data" + struct.pack("<I", len(body)) + body
        path = tmp_path / "x.wav"
        path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
        rate, y = read_wav(path)
        assert rate == 8000 and y.dtype == np.int32
        assert (y[:, 0].astype(np.int64) // 256).tolist() == values.tolist()

    def test_alaw_wav_is_decoded(self, tmp_path: Path) -> None:
        codes = g711_encode(tone(1000, 20, 8000), "alaw")
        fmt = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)
        riff = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
        riff += b"data" + struct.pack("<I", len(codes)) + codes
        path = tmp_path / "a.wav"
        path.write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
        _, y = read_wav(path)
        assert np.array_equal(y[:, 0], g711_decode(codes, "alaw"))

    def test_not_a_wav(self, tmp_path: Path) -> None:
        path = tmp_path / "n.wav"
        path.write_bytes(b"hello world, not a wav")
        with pytest.raises(ValueError):
            read_wav(path)

    def test_to_int16_clips(self) -> None:
        assert to_int16(np.array([2.0, -2.0, 0.5])).tolist() == [32767, -32768, 16384]
