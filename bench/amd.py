"""Answering-machine detection on the labelled corpus (tests/helpers/amd_corpus.py): the
verdicts per label, human/machine accuracy, beep timing and false beeps, with the default
AMDParams (beep_timeout 12 s: the longest greetings end 9 s after the verdict). A second run
gives the human answers at espeak's slower default rates, to show where the classic method's
1.5 s greeting_duration starts to call people machines.

    python bench/amd.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.amd_corpus import HUMAN_VOICES, Clip, build, score

from callboard.media.amd import AmdDetector, AmdParams

SLOW_HUMANS = (("en-us", 165), ("en", 150))


def report(title: str, voices: tuple[tuple[str, int], ...]) -> None:
    with tempfile.TemporaryDirectory() as cache:
        clips = build(Path(cache), voices)
    scores = score(clips, AmdParams(beep_timeout=12000))
    audio_s = sum(len(clip.audio) for clip in clips) / 16000
    errors = np.array(scores.beep_errors_ms) if scores.beep_errors_ms else np.zeros(1)
    print(f"== {title}: {len(clips)} clips, {audio_s:.0f} s of audio ==")
    for label, results in sorted(scores.verdicts.items()):
        print(f"  {label:9s} -> {results}")
    print(
        f"  human/machine accuracy {scores.human_machine_accuracy:.1%} "
        f"({scores.human_machine_right}/{scores.human_machine_total})"
    )
    print(
        f"  beeps found within 200 ms of their end: {scores.beeps_in_time}/{scores.beep_clips}; "
        f"delay after the end {errors.min():.0f}-{errors.max():.0f} ms "
        f"(median {np.median(errors):.0f}); false beeps {scores.false_beeps}"
    )
    print(f"  detector on the media clock: {frame_cost(clips)}")
    for line in scores.wrong:
        print(f"  wrong: {line}")


def frame_cost(clips: list[Clip]) -> str:
    """CPU per 20 ms frame while deciding, and while listening for a beep."""
    deciding = listening = 0.0
    counts = [0, 0]
    for clip in clips:
        detector = AmdDetector(AmdParams(beep_timeout=12000))
        pcm = np.clip(np.round(clip.audio * 32767), -32768, 32767).astype(np.int16)
        for i in range(len(pcm) // 320):
            frame = pcm[i * 320 : (i + 1) * 320]
            before = detector.verdict is None
            started = time.perf_counter()
            detector.frame(frame, 16000)
            spent = time.perf_counter() - started
            if before:
                deciding += spent
                counts[0] += 1
            else:
                listening += spent
                counts[1] += 1
            if detector.done:
                break
    return (
        f"{deciding / max(counts[0], 1) * 1e6:.1f} us per frame deciding, "
        f"{listening / max(counts[1], 1) * 1e6:.1f} us listening for a beep"
    )


def main() -> None:
    report(f"corpus (human answers at {HUMAN_VOICES})", HUMAN_VOICES)
    report(f"human answers at espeak's slower rates {SLOW_HUMANS}", SLOW_HUMANS)


if __name__ == "__main__":
    main()
