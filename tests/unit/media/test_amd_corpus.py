"""Answering-machine detection measured on the labelled corpus the suite builds itself
(tests/helpers/amd_corpus.py): the issue's bars, with the default parameters."""

from __future__ import annotations

from pathlib import Path

from callboard.media.amd import AmdParams
from tests.helpers.amd_corpus import build, score
from tests.helpers.peers import require_binary


def test_the_corpus_is_classified_and_its_beeps_found(tmp_path: Path) -> None:
    require_binary("espeak-ng")
    clips = build(tmp_path)
    labels = {clip.label for clip in clips}
    assert labels == {"human", "machine", "no_speech"}
    assert sum(clip.beep_end_s is not None for clip in clips) >= 20
    scores = score(clips, AmdParams(beep_timeout=12000))
    assert scores.human_machine_accuracy >= 0.95, scores.wrong
    assert scores.verdicts["no_speech"] == {"no_speech": 4}, scores.verdicts
    # A beep is reported within 200 ms of its end, and never where there is none.
    assert scores.beep_rate >= 0.95, scores.wrong
    assert scores.false_beeps == 0, scores.wrong
