import numpy as np
import pytest

from callboard.media.resample import Resampler

from .audio_analysis import db, peak_frequency, rms, thd_n_db, tone

PAIRS = [(8000, 16000), (16000, 8000), (16000, 48000), (48000, 16000), (8000, 48000)]


def _stream(resampler: Resampler, signal: np.ndarray, chunk: int) -> list[np.ndarray]:
    return [resampler.process(signal[i : i + chunk]) for i in range(0, len(signal), chunk)]


@pytest.mark.parametrize(("src", "dst"), [*PAIRS, (44100, 16000), (16000, 44100)])
def test_every_frame_has_the_exact_output_length(src: int, dst: int) -> None:
    resampler = Resampler(src, dst)
    n = src // 50
    outputs = _stream(resampler, tone(1000.0, src, n * 20), n)
    assert [len(o) for o in outputs] == [dst // 50] * 20
    assert all(o.dtype == np.int16 for o in outputs)


def test_identity_returns_the_input() -> None:
    frame = tone(1000.0, 16000, 320)
    assert Resampler(16000, 16000).process(frame) is frame


def test_invalid_rates_are_rejected() -> None:
    with pytest.raises(ValueError):
        Resampler(0, 8000)


@pytest.mark.parametrize(("low", "high"), [(8000, 16000), (16000, 48000)])
def test_round_trip_keeps_a_clean_tone(low: int, high: int) -> None:
    """1 kHz through low->high->low frame by frame: frequency, level, no edge clicks."""
    up, down = Resampler(low, high), Resampler(high, low)
    n = low // 50
    signal = tone(1000.0, low, n * 100, amplitude=10000.0)
    there = _stream(up, signal, n)
    back = np.concatenate([down.process(frame) for frame in there])
    settled = back[n * 10 :]
    assert abs(peak_frequency(settled, low) - 1000.0) < 1.0
    assert abs(db(rms(settled) / rms(signal))) < 0.5
    assert thd_n_db(settled, low, 1000.0) < -40.0
    # The intermediate stream is clean too, across all its frame boundaries.
    high_stream = np.concatenate(there)[high // 50 * 10 :]
    assert thd_n_db(high_stream, high, 1000.0) < -40.0


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_delay_is_small(src: int, dst: int) -> None:
    resampler = Resampler(src, dst)
    assert resampler.delay_ms is not None
    assert resampler.delay_ms < 3.5  # 48 taps per phase: speech quality over the last ms
    impulse = np.zeros(src // 50 * 3, dtype=np.int16)
    impulse[0] = 20000
    out = np.concatenate(_stream(resampler, impulse, src // 50)).astype(np.float64)
    measured_ms = int(np.argmax(np.abs(out))) / dst * 1000
    assert abs(measured_ms - resampler.delay_ms) < 0.3


def test_downsampling_rejects_aliases() -> None:
    """A 6 kHz tone has no place at 8 kHz: it must not fold back to 2 kHz."""
    down = Resampler(16000, 8000)
    signal = tone(6000.0, 16000, 320 * 50, amplitude=10000.0)
    out = np.concatenate(_stream(down, signal, 320))[1600:]
    assert db(rms(out) / rms(signal)) < -50.0


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (48000, 16000), (16000, 8000)])
def test_odd_chunk_sizes_stay_continuous(src: int, dst: int) -> None:
    resampler = Resampler(src, dst)
    signal = tone(1000.0, src, src * 2, amplitude=10000.0)
    out = np.concatenate(_stream(resampler, signal, 77))
    # Nothing lost: at most one output sample is still held back.
    assert len(signal) * dst // src - len(out) <= 1
    assert thd_n_db(out[dst // 10 :], dst, 1000.0) < -40.0


def test_non_integer_ratio_falls_back_to_soxr() -> None:
    resampler = Resampler(44100, 16000)
    signal = tone(1000.0, 44100, 882 * 100, amplitude=10000.0)
    out = np.concatenate(_stream(resampler, signal, 882))
    settled = out[16000:]
    assert abs(peak_frequency(settled, 16000) - 1000.0) < 1.0
    assert abs(db(rms(settled) / rms(signal))) < 0.5
    assert thd_n_db(settled, 16000, 1000.0) < -40.0


@pytest.mark.parametrize("freq", [300.0, 1000.0, 3000.0, 3400.0, 3600.0])
def test_telephone_band_survives_an_8k_16k_8k_round_trip(freq: float) -> None:
    """The whole telephone band passes (PESQ weighs 3-4 kHz): within 1 dB up to 3.6 kHz."""
    up, down = Resampler(8000, 16000), Resampler(16000, 8000)
    t = np.arange(8000 * 2) / 8000
    x = (np.sin(2 * np.pi * freq * t) * 10000).astype(np.int16)
    y = np.concatenate([down.process(up.process(x[i : i + 160])) for i in range(0, len(x), 160)])
    steady_in = x[4000:12000].astype(np.float64)
    steady_out = y[4000:12000].astype(np.float64)
    gain_db = 20 * np.log10(np.sqrt(np.mean(steady_out**2)) / np.sqrt(np.mean(steady_in**2)))
    assert abs(gain_db) < 1.0, f"{freq} Hz: {gain_db:.2f} dB"
