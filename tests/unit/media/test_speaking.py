"""Speaking detection, driven by generated signals at 16 kHz in 20 ms frames.

The speech is synthetic (a glottal pulse train with a syllable envelope) so the tests run
anywhere; when `espeak-ng` is installed, one more test runs the same checks on real
synthesised speech.
"""

from __future__ import annotations

import math
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soxr

from callboard.media.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from callboard.media.speaking import SILENCE_DBFS, SpeakingDetector, frame_dbfs
from tests.helpers.peers import require_binary

FULL_SCALE_RMS = 32768.0 / math.sqrt(2.0)  # RMS of a full-scale sine: 0 dBFS
HANGOVER_MS = 400
START_MS = 60

Event = tuple[int, str]  # (time in ms at the end of the frame that produced it, event)
NoiseSource = Callable[[int, float], np.ndarray]  # (duration ms, level dBFS) -> float signal


# --- signals -------------------------------------------------------------------------------


def scale_to_dbfs(signal: np.ndarray, dbfs: float) -> np.ndarray:
    """`signal` (float) scaled so that its RMS reads `dbfs`."""
    rms = float(np.sqrt(np.mean(signal**2)))
    return np.asarray(signal * (FULL_SCALE_RMS * 10.0 ** (dbfs / 20.0) / rms), dtype=np.float64)


def silence(ms: int) -> np.ndarray:
    return np.zeros(ms * SAMPLE_RATE // 1000)


def white_noise(ms: int, dbfs: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale_to_dbfs(rng.standard_normal(ms * SAMPLE_RATE // 1000), dbfs)


def pink_noise(ms: int, dbfs: float, seed: int = 2) -> np.ndarray:
    """1/f power spectrum down to 20 Hz, by shaping white noise in the frequency domain."""
    n = ms * SAMPLE_RATE // 1000
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(freqs, 20.0))
    return scale_to_dbfs(np.fft.irfft(spectrum, n), dbfs)


def syllable(ms: int, f0: float, seed: int) -> np.ndarray:
    """A voiced syllable: harmonics of a gliding f0 with a vowel-like spectral tilt, under a
    raised-cosine envelope (so onset and decay take tens of ms, as in speech)."""
    rng = np.random.default_rng(seed)
    n = ms * SAMPLE_RATE // 1000
    t = np.arange(n) / SAMPLE_RATE
    glide = f0 * (1.0 + 0.15 * (t / t[-1] - 0.5) * rng.choice([-1.0, 1.0]))
    phase = 2 * np.pi * np.cumsum(glide) / SAMPLE_RATE
    formant = rng.uniform(500.0, 900.0)
    voiced = np.zeros(n)
    for k in range(1, 16):
        # Glottal roll-off (1/k) times a broad first-formant bump.
        gain = (1.0 / k) * (1.0 + 2.0 * math.exp(-(((k * f0 - formant) / 300.0) ** 2)))
        voiced += gain * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    envelope = np.sin(np.pi * np.arange(n) / n) ** 2
    return np.asarray(voiced * envelope, dtype=np.float64)


def word(syllables: int = 3, dbfs: float = -25.0, seed: int = 0) -> np.ndarray:
    """Syllables at ~4 per second, each 180-260 ms, levels varying +-3 dB around `dbfs`
    (measured over the syllables' active parts)."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(syllables):
        s = syllable(int(rng.uniform(180, 260)), rng.uniform(120.0, 220.0), seed * 100 + i)
        parts.append(s * 10.0 ** (rng.uniform(-3.0, 3.0) / 20.0))
    signal = np.concatenate(parts)
    # Level over the samples within 20 dB of the peak, roughly what a meter reads during the
    # syllables (the envelope's quiet edges would otherwise pull the average down).
    active = signal[np.abs(signal) > 0.1 * np.abs(signal).max()]
    return scale_to_dbfs(signal, dbfs) * (
        float(np.sqrt(np.mean(signal**2))) / float(np.sqrt(np.mean(active**2)))
    )


def mix(*parts: np.ndarray) -> np.ndarray:
    """Sum equal-length float signals and quantise to int16."""
    total = np.asarray(np.sum(parts, axis=0), dtype=np.float64)
    return np.clip(np.rint(total), -32768, 32767).astype(np.int16)


def over_noise(speech: np.ndarray, noise_dbfs: float = -50.0, seed: int = 3) -> np.ndarray:
    ms = len(speech) * 1000 // SAMPLE_RATE
    return mix(speech[: ms * SAMPLE_RATE // 1000], white_noise(ms, noise_dbfs, seed))


def ms_of(samples: int) -> int:
    return samples * 1000 // SAMPLE_RATE


def run(signal: np.ndarray, detector: SpeakingDetector | None = None) -> list[Event]:
    detector = detector or SpeakingDetector()
    events: list[Event] = []
    for i in range(len(signal) // FRAME_SAMPLES):
        event = detector.update(signal[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
        if event is not None:
            events.append(((i + 1) * FRAME_MS, event))
    return events


def pairs(events: list[Event]) -> list[tuple[int, int]]:
    """(started_ms, stopped_ms) pairs; asserts the events alternate, starting with started."""
    kinds = [kind for _, kind in events]
    assert kinds == ["started", "stopped"] * (len(kinds) // 2), events
    return [(events[i][0], events[i + 1][0]) for i in range(0, len(events), 2)]


# --- level ---------------------------------------------------------------------------------


def test_frame_dbfs_convention() -> None:
    t = np.arange(FRAME_SAMPLES) / SAMPLE_RATE
    full = np.rint(32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert frame_dbfs(full) == pytest.approx(0.0, abs=0.01)
    minus20 = np.rint(3276.8 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert frame_dbfs(minus20) == pytest.approx(-20.0, abs=0.01)
    noise = mix(white_noise(FRAME_MS * 50, -50.0))
    assert frame_dbfs(noise) == pytest.approx(-50.0, abs=0.05)
    assert frame_dbfs(np.zeros(FRAME_SAMPLES, dtype=np.int16)) == SILENCE_DBFS
    assert frame_dbfs(np.zeros(0, dtype=np.int16)) == SILENCE_DBFS


def test_generated_signals_have_the_stated_levels() -> None:
    """Guards the fixtures: a wrong noise level would make the noise tests meaningless."""
    for noise in (white_noise(10_000, -50.0), pink_noise(10_000, -50.0)):
        assert frame_dbfs(mix(noise)) == pytest.approx(-50.0, abs=0.1)
    loud = word(dbfs=-25.0)
    assert -28.0 < frame_dbfs(mix(loud)) < -24.0


# --- words and sentences -------------------------------------------------------------------


def test_a_word_is_one_pair_with_bounded_timing() -> None:
    for seed, level in enumerate((-20.0, -25.0, -30.0)):
        speech = word(3, level, seed)
        lead = 1000
        signal = over_noise(np.concatenate([silence(lead), speech, silence(1500)]), seed=seed)
        ((started, stopped),) = pairs(run(signal))
        end = lead + ms_of(len(speech))
        assert lead + START_MS <= started <= lead + 100, (level, started)
        # The syllable envelope fades over its last tens of ms, so the level may drop under
        # the stop threshold slightly before the nominal end.
        assert end + HANGOVER_MS - 80 <= stopped <= end + HANGOVER_MS + 60, (level, stopped)


def test_sentence_with_200ms_pauses_is_one_pair() -> None:
    parts = [silence(500)]
    for i in range(6):
        parts += [word(2 + i % 3, -25.0 + 2 * (i % 2), seed=10 + i), silence(200)]
    parts.append(silence(1000))
    assert len(pairs(run(over_noise(np.concatenate(parts))))) == 1


def test_two_words_a_second_apart_are_two_pairs() -> None:
    first, second = word(2, -25.0, seed=20), word(3, -25.0, seed=21)
    signal = over_noise(np.concatenate([silence(500), first, silence(1000), second, silence(1000)]))
    found = pairs(run(signal))
    assert len(found) == 2
    second_onset = 500 + ms_of(len(first)) + 1000
    assert second_onset + START_MS <= found[1][0] <= second_onset + 100


def test_a_held_vowel_is_not_taken_for_noise() -> None:
    """4 s without any gap: the noise floor must not climb onto it (minimum over ~1.5 s,
    then a slow rise) and cut it off."""
    lead = 500
    vowel = syllable(4000, 150.0, seed=50)
    vowel[400:-400] = np.sin(2 * np.pi * 150.0 * np.arange(len(vowel) - 800) / SAMPLE_RATE)
    vowel = scale_to_dbfs(vowel, -25.0)
    signal = over_noise(np.concatenate([silence(lead), vowel, silence(1000)]))
    ((_, stopped),) = pairs(run(signal))
    end = lead + ms_of(len(vowel))
    assert end <= stopped <= end + HANGOVER_MS + 60


def test_quiet_speech_below_the_start_threshold_does_not_start() -> None:
    signal = over_noise(np.concatenate([silence(500), word(3, -48.0, seed=5), silence(500)]))
    assert run(signal) == []


# --- noise and clicks ----------------------------------------------------------------------


@pytest.mark.parametrize("noise", [white_noise, pink_noise])
@pytest.mark.parametrize("noise_adapt", [True, False])
def test_noise_at_minus_50_dbfs_never_starts(noise: NoiseSource, noise_adapt: bool) -> None:
    signal = mix(noise(180_000, -50.0))  # three minutes
    assert run(signal, SpeakingDetector(noise_adapt=noise_adapt)) == []


@pytest.mark.parametrize("noise", [white_noise, pink_noise])
def test_steady_noise_at_minus_35_dbfs_is_not_speech_for_long(noise: NoiseSource) -> None:
    signal = mix(noise(60_000, -35.0))
    detector = SpeakingDetector()
    events = run(signal, detector)
    assert -39.0 < detector.noise_floor_dbfs < -35.0
    # It is above the fixed start threshold, so it may start once, until the noise floor
    # has been learnt; after that it must stop and stay stopped.
    assert len(events) <= 2
    if events:
        ((_, stopped),) = pairs(events)
        assert stopped <= 5000


def test_steady_noise_holds_speaking_without_noise_adaptation() -> None:
    """The control for the test above: the thresholds alone cannot reject it."""
    events = run(mix(white_noise(20_000, -35.0)), SpeakingDetector(noise_adapt=False))
    assert [kind for _, kind in events] == ["started"]


def test_speech_over_an_adapted_noise_floor_is_still_detected() -> None:
    lead = 8000
    speech = word(3, -20.0, seed=30)
    body = np.concatenate([silence(lead), speech, silence(2000)])
    signal = mix(body, white_noise(ms_of(len(body)), -35.0))
    events = [e for e in run(signal) if e[0] > 5000]  # after the noise has been learnt
    ((started, stopped),) = pairs(events)
    end = lead + ms_of(len(speech))
    # The adapted start threshold (floor + 9 dB, about -27 dBFS) catches the onset later.
    assert lead <= started <= lead + 120
    assert end <= stopped <= end + HANGOVER_MS + 60


def test_clicks_and_short_bursts_never_start() -> None:
    rng = np.random.default_rng(7)
    period = 500 * SAMPLE_RATE // 1000
    signal = white_noise(20_000, -50.0)
    for k, start in enumerate(range(period, len(signal) - period, period)):
        offset = start + int(rng.integers(0, FRAME_SAMPLES))  # straddle frame boundaries
        kind = k % 3
        if kind == 0:  # a full-scale single-sample click
            signal[offset] = 32767.0
        elif kind == 1:  # a 5 ms crack
            signal[offset : offset + 80] += rng.uniform(-20000, 20000, 80)
        else:  # one loud 20 ms frame, exactly aligned
            aligned = start // FRAME_SAMPLES * FRAME_SAMPLES
            signal[aligned : aligned + FRAME_SAMPLES] += scale_to_dbfs(
                rng.standard_normal(FRAME_SAMPLES), -10.0
            )
    assert run(mix(signal)) == []


def test_bursts_start_only_from_start_ms_on() -> None:
    def burst(ms: int) -> np.ndarray:
        body = np.concatenate([silence(500), white_noise(ms, -20.0, seed=ms), silence(1000)])
        return mix(body, white_noise(ms_of(len(body)), -50.0))

    assert run(burst(2 * FRAME_MS)) == []  # 40 ms < start_ms
    assert len(pairs(run(burst(START_MS)))) == 1
    assert run(burst(100), SpeakingDetector(start_ms=120)) == []
    assert len(pairs(run(burst(120), SpeakingDetector(start_ms=120)))) == 1


# --- reset and parameters ------------------------------------------------------------------


def test_reset_returns_to_not_speaking_without_an_event() -> None:
    speech = over_noise(word(6, -25.0, seed=40))
    frames = [speech[i : i + FRAME_SAMPLES] for i in range(0, len(speech), FRAME_SAMPLES)]
    detector = SpeakingDetector()
    events = [detector.update(f) for f in frames[:15]]
    assert "started" in events and detector.speaking

    detector.reset()  # muted mid-word
    assert not detector.speaking

    # Unmuted mid-word: a fresh start, which again needs start_ms of speech ...
    rest = [detector.update(f) for f in frames[15:]]
    first = next(i for i, e in enumerate(rest) if e is not None)
    assert rest[first] == "started"
    assert first == START_MS // FRAME_MS - 1
    # ... and after the reset no orphan "stopped" comes out of a silent leg.
    quiet = mix(white_noise(3000, -50.0))
    detector.reset()
    assert run(quiet, detector) == []
    assert not detector.speaking


def test_reset_when_silent_changes_nothing() -> None:
    detector = SpeakingDetector()
    detector.reset()
    signal = over_noise(np.concatenate([silence(300), word(2, -25.0, seed=41), silence(800)]))
    assert len(pairs(run(signal, detector))) == 1


def test_hangover_is_configurable() -> None:
    signal = over_noise(np.concatenate([silence(300), word(2, -25.0, seed=42), silence(2000)]))
    short = pairs(run(signal, SpeakingDetector(hangover_ms=200)))
    long = pairs(run(signal, SpeakingDetector(hangover_ms=800)))
    assert long[0][1] - short[0][1] == 600


def test_invalid_thresholds_are_rejected() -> None:
    with pytest.raises(ValueError):
        SpeakingDetector(start_dbfs=-50.0, stop_dbfs=-40.0)


def test_odd_sized_frames_are_measured_correctly() -> None:
    detector = SpeakingDetector(start_ms=20)
    loud = mix(white_noise(10, -20.0))  # 160 samples
    assert detector.update(loud) == "started"


# --- real speech ---------------------------------------------------------------------------


def espeak(text: str, path: Path) -> np.ndarray:
    binary = require_binary("espeak-ng")  # installed by scripts/test; fails under CI if missing
    subprocess.run([binary, "-w", str(path), text], check=True, timeout=30)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return np.asarray(soxr.resample(data.astype(np.float64), rate, SAMPLE_RATE))


def test_real_speech(tmp_path: Path) -> None:
    sentence = espeak("The quick brown fox jumps over the lazy dog.", tmp_path / "a.wav")
    reply = espeak("Yes.", tmp_path / "b.wav")
    sentence = scale_to_dbfs(sentence, -28.0)
    reply = reply * (np.abs(sentence).max() / np.abs(reply).max())
    signal = over_noise(
        np.concatenate([silence(500), sentence, silence(1000), reply, silence(1000)])
    )
    found = pairs(run(signal))
    assert len(found) == 2, found
    # Onset and end of the sentence: the first and last frames above the stop threshold.
    count = len(sentence) // FRAME_SAMPLES
    levels = [frame_dbfs(mix(f)) for f in sentence[: count * FRAME_SAMPLES].reshape(count, -1)]
    loud = [i for i, level in enumerate(levels) if level > -45.0]
    onset, end = 500 + loud[0] * FRAME_MS, 500 + (loud[-1] + 1) * FRAME_MS
    assert onset + START_MS <= found[0][0] <= onset + 200
    assert end + HANGOVER_MS - 20 <= found[0][1] <= end + HANGOVER_MS + 60


# --- cost ----------------------------------------------------------------------------------


def test_cost_per_frame() -> None:
    count = 5000
    body = np.concatenate([word(4, -25.0, seed=s) for s in range(30)] + [silence(40_000)])
    signal = over_noise(body[: count * FRAME_SAMPLES])
    frames = [signal[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(count)]
    best = math.inf
    for _ in range(3):
        detector = SpeakingDetector()
        update = detector.update
        began = time.perf_counter()
        for frame in frames:
            update(frame)
        best = min(best, (time.perf_counter() - began) / count * 1e6)
    print(f"\nSpeakingDetector.update: {best:.2f} us per frame")
    assert best < 15.0
