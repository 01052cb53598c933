import numpy as np
import pytest

from callboard.media.frames import FRAME_SAMPLES, SAMPLE_RATE
from callboard.media.tones import (
    COUNTRIES,
    TONE_PLANS,
    TONE_TYPES,
    ToneGenerator,
    resolve_tone,
)

from .audio_analysis import db, peak_frequency, rms, spectral_peaks, thd_n_db


def frames(name: str, seconds: float, level: float = -13.0) -> np.ndarray:
    generator = ToneGenerator(resolve_tone(name), level)
    count = int(seconds * 50)
    return np.concatenate([generator.next_frame() for _ in range(count)])


def on_off_pattern_ms(signal: np.ndarray) -> list[tuple[bool, int]]:
    """Runs of tone-on / tone-off, in 5 ms resolution."""
    block = SAMPLE_RATE // 200
    energy = np.abs(signal[: len(signal) // block * block]).reshape(-1, block).max(axis=1)
    on = energy > 300
    runs: list[tuple[bool, int]] = []
    for state in on:
        if runs and runs[-1][0] == bool(state):
            runs[-1] = (runs[-1][0], runs[-1][1] + 5)
        else:
            runs.append((bool(state), 5))
    return runs


def test_every_country_has_every_tone() -> None:
    assert set(TONE_PLANS) == {f"{c}_{t}" for c in COUNTRIES for t in TONE_TYPES}


def test_resolve() -> None:
    assert resolve_tone("ringback") is TONE_PLANS["us_ringback"]
    assert resolve_tone("GB-Busy") is TONE_PLANS["gb_busy"]
    with pytest.raises(ValueError):
        resolve_tone("xx_ringback")
    with pytest.raises(KeyError):
        resolve_tone("warble")


def test_frames_are_20ms_int16() -> None:
    frame = ToneGenerator(resolve_tone("us_dial")).next_frame()
    assert frame.dtype == np.int16
    assert frame.shape == (FRAME_SAMPLES,)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("us_ringback", [440.0, 480.0]),
        ("us_busy", [480.0, 620.0]),
        ("us_dial", [350.0, 440.0]),
        ("gb_ringback", [400.0, 450.0]),
        ("de_dial", [425.0]),
        ("fr_busy", [440.0]),
        ("jp_dial", [400.0]),
    ],
)
def test_frequencies(name: str, expected: list[float]) -> None:
    first_burst = frames(name, 0.2)  # every plan starts with at least 200 ms of tone
    assert spectral_peaks(first_burst, SAMPLE_RATE, len(expected)) == pytest.approx(expected, abs=5)


def test_modulated_tone_has_sidebands() -> None:
    signal = frames("in_dial", 1.0)
    # 400 Hz x 25 Hz: carrier plus sidebands at 375 and 425 Hz.
    assert spectral_peaks(signal, SAMPLE_RATE, 3) == pytest.approx([375, 400, 425], abs=2)


def test_level_per_component() -> None:
    signal = frames("de_dial", 1.0, level=-13.0)
    assert db(rms(signal) / (32767 / np.sqrt(2))) == pytest.approx(-13.0, abs=0.1)
    quieter = frames("de_dial", 1.0, level=-23.0)
    assert db(rms(quieter) / rms(signal)) == pytest.approx(-10.0, abs=0.1)


@pytest.mark.parametrize(
    ("name", "cadence_ms"),
    [
        ("us_busy", [500, 500]),
        ("us_ringback", [2000, 4000]),
        ("gb_ringback", [400, 200, 400, 2000]),
        ("it_dial", [200, 200, 600, 1000]),
        ("ru_congestion", [175, 175]),
    ],
)
def test_cadence(name: str, cadence_ms: list[int]) -> None:
    cycle_s = sum(cadence_ms) / 1000
    runs = on_off_pattern_ms(frames(name, cycle_s * 2 + 0.1))
    expected = [(i % 2 == 0, ms) for i, ms in enumerate(cadence_ms)] * 2
    measured = runs[: len(expected)]
    assert [state for state, _ in measured] == [state for state, _ in expected]
    for (_, got), (_, want) in zip(measured, expected, strict=True):
        assert abs(got - want) <= 10


def test_continuous_tone_is_phase_continuous_across_frames() -> None:
    signal = frames("fr_dial", 2.0)
    assert abs(peak_frequency(signal, SAMPLE_RATE) - 440.0) < 0.5
    assert thd_n_db(signal, SAMPLE_RATE, 440.0) < -50.0


def test_burst_edges_are_faded() -> None:
    signal = frames("us_busy", 1.0).astype(np.int32)
    # No step bigger than a full-level sine can make between two samples.
    assert np.max(np.abs(np.diff(signal))) < 2 * 7336 * 2 * np.pi * 620 / SAMPLE_RATE


def test_alternating_level_congestion() -> None:
    signal = frames("au_congestion", 1.5)
    # 375 ms bursts (6000 samples) at 0 and 750 ms; measure inside each, away from fades.
    first = rms(signal[800:5200])
    second = rms(signal[12800:17200])
    assert db(second / first) == pytest.approx(-10.0, abs=0.5)
