"""The offline provider: sentence splitting, and Piper's speech streamed sentence by sentence
at 16 kHz."""

from __future__ import annotations

import time

import numpy as np

from callboard.config import load_settings
from callboard.speech.tts.base import TtsRequest
from callboard.speech.tts.local import MAX_SENTENCE_CHARS, LocalTts, split_sentences


def test_sentences_are_split_at_their_ends_and_long_runs_cut() -> None:
    assert split_sentences("Hi there. How are you?  Fine!\\nBye") == [
        "Hi there.",
        "How are you?",
        "Fine!\\nBye",
    ]
    assert split_sentences("One.\nTwo") == ["One.", "Two"]
    long = ", ".join(["word " * 10] * 20)
    parts = split_sentences(long)
    assert all(len(p) <= MAX_SENTENCE_CHARS + 1 for p in parts) and len(parts) > 1
    assert " ".join(parts).split() == long.split()


async def test_first_sentence_arrives_before_the_rest_is_made() -> None:
    tts = LocalTts(load_settings({}))
    await tts.load()
    text = "The birch canoe slid on the smooth planks. " * 4
    started = time.monotonic()
    arrivals: list[float] = []
    chunks: list[bytes] = []
    async for chunk in tts.synthesize(TtsRequest(text=text)):
        arrivals.append(time.monotonic() - started)
        chunks.append(chunk)
    assert len(chunks) == 4
    assert arrivals[0] < arrivals[-1] / 2
    audio = np.frombuffer(b"".join(chunks), "<i2").astype(np.float64)
    seconds = len(audio) / 16000
    assert 6 < seconds < 14, seconds  # four ~2.4 s sentences
    assert np.sqrt(np.mean(audio**2)) > 500  # speech, not silence
