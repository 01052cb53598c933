"""The real Pipecat test bots (tests/helpers/pipecat_bots.py), driven over the wire as
Callboard's client will: a raw websockets client speaking pipecat's own protobuf frames."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from tests.helpers.audio import dominant_frequency
from tests.helpers.peers import free_port, free_port_range
from tests.helpers.pipecat_bots import (
    BotCall,
    Received,
    running_bot,
    text_frame,
    transcription_frame,
)
from tests.helpers.standins.stt_common import tone_pcm

BURST = tone_pcm([(440, 0.5), (0, 0.5)])  # 0.5 s of 440 Hz then 0.5 s of silence, 16 kHz
REPLY_HZ = 660


def is_audio(r: Received) -> bool:
    return r.kind == "audio"


def is_message(kind: str) -> Callable[[Received], bool]:
    def match(r: Received) -> bool:
        return r.kind == "message" and isinstance(r.message, dict) and r.message.get("type") == kind

    return match


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


async def test_echo_returns_audio_and_text() -> None:
    sent = tone_pcm([(440, 0.5), (880, 0.5)])
    with running_bot("--kind", "echo", "--port", str(free_port("tcp"))) as bot:
        async with BotCall(bot.url()) as call:
            await call.play(sent)
            await call.wait_quiet("audio", quiet=0.5)
            await call.send(text_frame("hello"))
            await call.send(transcription_frame("hi there"))
            await call.wait_for(lambda r: r.message == {"echo": "hi there"}, 5)
            echoed, rate = call.audio()
            assert rate == 16000
            assert echoed == sent  # 1 s is 25 whole 40 ms chunks: nothing held back
            assert call.messages() == [{"echo": "hello"}, {"echo": "hi there"}]
            assert {r.num_channels for r in call.received if is_audio(r)} == {1}


async def test_tone_answers_injects_and_takes_a_second_client() -> None:
    args = ["--kind", "tone", "--port", str(free_port("tcp")), "--reply-seconds", "1"]
    with running_bot(*args, "--reply-frequency", str(REPLY_HZ)) as bot:
        async with BotCall(bot.url()) as call:
            await call.play(BURST)
            heard = await call.wait_for(is_message("user-transcription"), 5)
            await call.wait_quiet("audio", quiet=0.5)
            transcript, output = call.messages()
            assert transcript["label"] == "rtvi-ai"
            assert transcript["data"]["text"] == "tone 440"
            assert transcript["data"]["final"] is True
            assert output["type"] == "bot-output"
            assert output["data"]["text"] == "I heard tone 440"
            reply, rate = call.audio(after=heard)
            assert rate == 24000
            assert len(reply) / 2 / rate == pytest.approx(1.0, abs=0.05)
            assert dominant_frequency(samples(reply), rate) == pytest.approx(REPLY_HZ, abs=5)
            # pipecat paces its output at about real time, in 40 ms frames.
            frames = [r for r in call.received if is_audio(r)]
            assert {len(r.audio) for r in frames[:-1]} == {1920}
            assert frames[-1].at - frames[0].at > 0.5

            # One client at a time: a second one is turned away while the first is on.
            async with BotCall(bot.url()) as intruder:
                await asyncio.wait_for(intruder.closed.wait(), 5)
            assert intruder.close_code == 1013

        # The first client has gone; the bot takes the next one, which injects a line.
        async with BotCall(bot.url()) as call:
            await call.send(transcription_frame("what is the weather"))
            injected = await call.wait_for(lambda r: r.kind == "message", 5)
            assert call.received[injected].message == {"injected": "what is the weather"}
            await call.wait_quiet("audio", quiet=0.5)
            reply, rate = call.audio(after=injected)
            assert len(reply) / 2 / rate == pytest.approx(1.0, abs=0.05)
            await call.send(text_frame("hello"))
            await call.wait_for(lambda r: r.message == {"injected": "hello"}, 5)


async def test_tone_greeting_and_barge_in() -> None:
    args = ["--kind", "tone", "--port", str(free_port("tcp")), "--reply-seconds", "5"]
    with running_bot(*args, "--greeting") as bot:
        # A caller who hangs up mid-greeting, and the next one on at once: what was left for
        # the first must not reach the second, nor cut the second's greeting short.
        async with BotCall(bot.url()) as first:
            await first.wait_for(is_audio, 5)
        async with BotCall(bot.url()) as call:
            # The greeting starts on connect, unasked; the caller talks over it.
            started = await call.wait_for(is_audio, 5)
            await asyncio.sleep(0.5)
            talking = len(call.received)
            await call.play(BURST)
            cut = await call.wait_for(lambda r: r.kind == "interruption", 5, after=started)
            assert cut >= talking, "the greeting was cut before the caller spoke"
            greeting, _ = call.audio(until=cut)
            assert 0.3 < len(greeting) / 2 / 24000 < 2.5  # of the 5 s greeting
            heard = await call.wait_for(is_message("user-transcription"), 5, after=cut)
            assert call.received[heard].message["data"]["text"] == "tone 440"
            # After the interruption, nothing more of the greeting: at most the 40 ms frame
            # that was being written.
            leftover, _ = call.audio(after=cut, until=heard)
            assert len(leftover) <= 1920
            await call.wait_for(is_audio, 5, after=heard)  # the answer to the burst


async def test_count_serves_independent_pipelines() -> None:
    base = free_port_range(3, "tcp")
    with running_bot("--kind", "echo", "--port", str(base), "--count", "3") as bot:
        assert bot.ports == [base, base + 1, base + 2]
        calls = [BotCall(bot.url(i)) for i in range(3)]
        for call in calls:
            await call.__aenter__()
        try:
            pcms = [tone_pcm([(300 + 200 * i, 0.2)]) for i in range(3)]
            await asyncio.gather(*(c.play(p) for c, p in zip(calls, pcms, strict=True)))
            for call, pcm in zip(calls, pcms, strict=True):
                await call.wait_for(is_audio, 5)
                await call.wait_quiet("audio", quiet=0.3)
                assert call.audio()[0] == pcm  # each caller hears only itself
        finally:
            for call in calls:
                await call.close()
