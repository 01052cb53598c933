"""The answering-machine detector on synthetic lines: voiced bursts stand in for words (a
harmonic buzz, as a voice has), and tones for beeps and DTMF."""

from __future__ import annotations

import numpy as np
import pytest

from callboard.media.amd import AmdDetector, AmdParams, AmdVerdict, BeepFound, BeepTimeout

RATE = 16000
FRAME = RATE // 50


def _buzz(seconds: float, f0: float = 140.0, dbfs: float = -20.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    return x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20) / np.sqrt(2)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


def _tone(seconds: float, *freqs: float, dbfs: float = -15.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs)
    return x / np.sqrt(np.mean(x**2)) * 10 ** (dbfs / 20) / np.sqrt(2)


def _words(*pattern: float) -> np.ndarray:
    """Alternating word and pause lengths in seconds."""
    pieces = [_buzz(s) if i % 2 == 0 else _silence(s) for i, s in enumerate(pattern)]
    return np.concatenate(pieces)


def _run(audio: np.ndarray, params: AmdParams) -> tuple[list[object], AmdDetector]:
    detector = AmdDetector(params)
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16)
    outcomes: list[object] = []
    for i in range(len(pcm) // FRAME):
        outcomes += detector.frame(pcm[i * FRAME : (i + 1) * FRAME], RATE)
        if detector.done:
            break
    return outcomes, detector


def _verdict(outcomes: list[object]) -> AmdVerdict:
    verdicts = [o for o in outcomes if isinstance(o, AmdVerdict)]
    assert len(verdicts) == 1, outcomes
    return verdicts[0]


def test_a_short_answer_then_waiting_is_human() -> None:
    audio = np.concatenate([_silence(0.6), _words(0.5), _silence(3.0)])
    verdict = _verdict(_run(audio, AmdParams())[0])
    assert verdict.result == "human"
    assert 560 <= verdict.initial_silence_ms <= 660
    assert 400 <= verdict.greeting_duration_ms <= 560
    # Decided once the after-greeting silence (800 ms) has passed.
    assert abs(verdict.total_analysis_ms - (600 + 500 + 800)) <= 60


def test_a_long_greeting_is_a_machine_as_soon_as_it_passes_greeting_duration() -> None:
    audio = np.concatenate([_silence(0.5), _words(0.6, 0.1, 0.7, 0.1, 0.8, 0.1, 1.0)])
    verdict = _verdict(_run(audio, AmdParams())[0])
    assert verdict.result == "machine"
    assert abs(verdict.total_analysis_ms - (500 + 1500)) <= 60


def test_many_words_before_a_pause_is_a_machine() -> None:
    audio = np.concatenate([_silence(0.3), _words(*[0.15, 0.2] * 6), _silence(2)])
    verdict = _verdict(_run(audio, AmdParams(greeting_duration=5000))[0])
    assert verdict.result == "machine"


def test_silence_is_no_speech_and_short_clicks_are_not_words() -> None:
    clicks = np.concatenate([_silence(0.5), _buzz(0.04), _silence(0.7), _buzz(0.04), _silence(3)])
    verdict = _verdict(_run(clicks, AmdParams())[0])
    assert verdict.result == "no_speech"
    assert verdict.total_analysis_ms == 2500
    assert verdict.greeting_duration_ms == 0


def test_a_greeting_that_never_settles_within_the_window_is_not_sure() -> None:
    # Words 0.9 s apart: never 800 ms of silence, four words by 3 s, never 10 s long.
    params = AmdParams(greeting_duration=10000, total_analysis_time=3000)
    verdict = _verdict(_run(_words(*[0.4, 0.5] * 6), params)[0])
    assert verdict.result == "not_sure"
    assert verdict.total_analysis_ms == 3000


def test_hanging_up_mid_analysis_gives_not_sure_once() -> None:
    detector = AmdDetector(AmdParams())
    for _ in range(10):
        detector.frame(np.zeros(FRAME, dtype=np.int16), RATE)
    verdict = detector.give_up()
    assert verdict is not None and verdict.result == "not_sure"
    assert verdict.total_analysis_ms == 200
    assert detector.give_up() is None


@pytest.mark.parametrize(("freq", "ms"), [(440.0, 400), (1000.0, 1000), (1900.0, 1500)])
def test_the_beep_after_a_greeting_is_reported_when_it_ends(freq: float, ms: int) -> None:
    greeting = _words(0.8, 0.1, 0.9, 0.1, 1.2)  # machine at 1.5 s
    audio = np.concatenate([greeting, _silence(0.4), _tone(ms / 1000, freq), _silence(1)])
    outcomes, _ = _run(audio, AmdParams(beep_timeout=5000))
    assert _verdict(outcomes).result == "machine"
    beeps = [o for o in outcomes if isinstance(o, BeepFound)]
    assert len(beeps) == 1
    beep_end_ms = (len(greeting) / RATE + 0.4 + ms / 1000) * 1000
    verdict_ms = _verdict(outcomes).total_analysis_ms
    assert 0 <= verdict_ms + beeps[0].beep_ms - beep_end_ms <= 200


@pytest.mark.parametrize(
    "after",
    [
        _words(0.5, 0.2, 0.8, 0.2, 0.6, 0.2, 0.9),  # more speech
        _tone(0.3, 697.0, 1209.0),  # a DTMF digit (two tones)
        _tone(0.1, 1000.0),  # a click of a tone, shorter than a beep
    ],
    ids=["speech", "dtmf", "short-tone"],
)
def test_no_beep_is_found_in_speech_dtmf_or_a_blip(after: np.ndarray) -> None:
    greeting = _words(0.8, 0.1, 0.9, 0.1, 1.2)
    audio = np.concatenate([greeting, _silence(0.3), after, _silence(3)])
    outcomes, _ = _run(audio, AmdParams(beep_timeout=3000))
    assert not [o for o in outcomes if isinstance(o, BeepFound)]
    timeouts = [o for o in outcomes if isinstance(o, BeepTimeout)]
    assert len(timeouts) == 1 and timeouts[0].waited_ms == 3000


def test_a_human_verdict_ends_detection_and_no_beep_is_sought() -> None:
    audio = np.concatenate([_silence(0.4), _words(0.4), _silence(1.5), _tone(0.5, 1000.0)])
    outcomes, detector = _run(audio, AmdParams(beep_timeout=3000))
    assert _verdict(outcomes).result == "human"
    assert detector.done
    assert len(outcomes) == 1
