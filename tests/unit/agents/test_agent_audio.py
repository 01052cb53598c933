"""AgentAudio: what the agent hears (bounded, resampled to 16 kHz, silence when the leg sends
nothing) and what it says (any rate, any chunking, paced, flushed at once on barge-in)."""

import asyncio

import numpy as np

from callboard.core.agents import HEARD_QUEUE_FRAMES, AgentAudio, HeardPump
from callboard.media.frames import FRAME_SAMPLES
from callboard.media.streamed import FADE_SAMPLES


async def take(audio: AgentAudio, count: int) -> list[np.ndarray]:
    """Listen until `count` frames came (or a second passed)."""
    frames: list[np.ndarray] = []
    audio.listen(lambda frame: frames.append(frame.copy()))
    for _ in range(100):
        if len(frames) >= count:
            break
        await asyncio.sleep(0.01)
    audio.listen(None)
    return frames[:count]


async def test_heard_frames_are_16k_and_a_missing_frame_is_silence() -> None:
    audio = AgentAudio()
    audio.feed(np.full(160, 1000, dtype=np.int16), np.zeros(160, np.int16), 8000)
    audio.feed(None, np.zeros(160, np.int16), 8000)
    audio.feed(np.full(960, 1000, dtype=np.int16), np.zeros(960, np.int16), 48000)
    frames = await take(audio, 3)
    assert [len(f) for f in frames] == [FRAME_SAMPLES] * 3
    assert not frames[1].any()


async def test_a_slow_reader_loses_the_oldest_frames_only() -> None:
    audio = AgentAudio()
    for i in range(HEARD_QUEUE_FRAMES + 10):
        audio.write_frame(np.full(FRAME_SAMPLES, i, dtype=np.int16))
    assert audio.heard_dropped == 10
    frames = await take(audio, HEARD_QUEUE_FRAMES)
    assert frames[0][0] == 10 and frames[-1][0] == HEARD_QUEUE_FRAMES + 9


async def test_speech_at_any_rate_is_paced_and_flushed_at_once() -> None:
    audio = AgentAudio()
    audio.play(np.full(24000, 3000, dtype=np.int16), 24000)  # 1 s at 24 kHz in one chunk
    assert audio.speech.buffered_ms == 1000
    first = audio.read_frame()
    assert first is not None and len(first) == FRAME_SAMPLES
    audio.interrupt()
    assert audio.speech.buffered_ms == 0 and audio.last_interrupt is not None
    faded = audio.read_frame()  # 5 ms ramping down, then silence
    assert faded is not None and not faded[FADE_SAMPLES:].any()
    silent = audio.read_frame()
    assert silent is not None and not silent.any()


async def test_close_ends_hearing_and_speech() -> None:
    audio = AgentAudio()
    audio.play(np.full(16000, 3000, dtype=np.int16), 16000)
    audio.write_frame(np.zeros(FRAME_SAMPLES, np.int16))
    audio.close()
    assert await take(audio, 1) == []  # what was queued is not handed on after the close
    assert audio.read_frame() is None  # nothing more is played
    audio.play(np.full(320, 1, dtype=np.int16), 16000)  # late audio is ignored
    audio.write_frame(np.zeros(FRAME_SAMPLES, np.int16))


async def test_frames_go_to_the_consumer_once_per_tick_and_an_error_stops_it() -> None:
    pump = HeardPump()
    first, second = AgentAudio(pump), AgentAudio(pump)
    got: list[str] = []
    errors: list[BaseException] = []
    first.listen(lambda frame: got.append("first"))

    def broken(frame: np.ndarray) -> None:
        got.append("second")
        raise RuntimeError("socket gone")

    second.listen(broken, errors.append)
    for audio in (first, second):  # one tick: each is fed one frame
        audio.write_frame(np.zeros(FRAME_SAMPLES, np.int16))
    assert got == []  # nothing runs inside the tick
    await asyncio.sleep(0)
    assert got == ["first", "second"] and len(errors) == 1
    second.write_frame(np.zeros(FRAME_SAMPLES, np.int16))
    await asyncio.sleep(0)
    assert got == ["first", "second"]  # the failed consumer was dropped
