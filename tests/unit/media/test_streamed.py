"""The paced playout buffer: bursts in, one frame a tick out, bounded, flushable."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from callboard.media.engine import MediaEngine
from callboard.media.streamed import FADE_SAMPLES, StreamedSource

from .audio_analysis import tone
from .test_engine import FakeEndpoint, _room, _run

FRAME = 320


def _speech(seconds: float, freq: float = 500.0) -> np.ndarray:
    return tone(freq, 16000, int(16000 * seconds))


def _drain(source: StreamedSource, ticks: int) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for _ in range(ticks):
        frame = source.next_frame()
        out.append(None if frame is None else frame.copy())
    return out


def test_a_burst_plays_at_one_frame_a_tick_in_order_then_silence_then_the_end() -> None:
    source = StreamedSource()
    audio = _speech(1.0)
    for part in np.array_split(audio, 7):  # chunks that are no multiple of a frame
        assert source.offer(part) == len(part)
    assert source.buffered_ms == 1000
    frames = _drain(source, 50)
    assert np.array_equal(np.concatenate(frames), audio)  # type: ignore[arg-type]
    assert source.played_frames == 50 and source.underrun_frames == 0
    # Nothing more yet: silence (counted as underrun), never a repeat of the last frame.
    gap = _drain(source, 3)
    assert all(f is not None and not f.any() for f in gap) and source.underrun_frames == 3
    source.offer(audio[:100])  # a partial frame waits for the rest...
    assert not _drain(source, 1)[0].any()  # type: ignore[union-attr]
    source.close()  # ...or for the end, and then plays padded with silence
    last = _drain(source, 2)
    assert np.array_equal(last[0][:100], audio[:100]) and not last[0][100:].any()  # type: ignore[index]
    assert last[1] is None


def test_nothing_plays_before_the_first_audio_and_that_is_no_underrun() -> None:
    source = StreamedSource()
    assert all(not f.any() for f in _drain(source, 5))  # type: ignore[union-attr]
    assert source.underrun_frames == 0 and not source.started


def test_flush_silences_at_once_and_says_how_much_was_dropped() -> None:
    source = StreamedSource()
    speech = _speech(2.0)
    source.offer(speech)
    _drain(source, 10)
    assert source.flush() == 1800
    assert source.buffered_ms == 0 and source.flushed_ms == 1800
    faded = _drain(source, 1)[0]  # 5 ms ramping down from where the speech was, then silence
    assert faded is not None and not faded[FADE_SAMPLES:].any()
    ramp = np.linspace(1.0, 0.0, FADE_SAMPLES, endpoint=False)
    expected = speech[3200 : 3200 + FADE_SAMPLES] * ramp  # what was next, ramped down
    assert np.abs(faded[:FADE_SAMPLES] - expected).max() <= 1
    assert not _drain(source, 1)[0].any()  # type: ignore[union-attr]
    source.offer(_speech(0.1, 900.0))  # speaking again after the barge-in
    assert _drain(source, 1)[0].any()  # type: ignore[union-attr]


async def test_write_waits_for_room_so_the_buffer_stays_bounded() -> None:
    source = StreamedSource(max_ms=200)
    audio = _speech(1.0)
    writer = asyncio.create_task(source.write(audio))
    played: list[np.ndarray] = []
    for _ in range(60):
        await asyncio.sleep(0)
        assert source.buffered_ms <= 200
        frame = source.next_frame()
        assert frame is not None
        played.append(frame.copy())
        if writer.done():
            break
    await asyncio.wait_for(writer, 1)
    source.close()
    while (frame := source.next_frame()) is not None:
        played.append(frame.copy())
    heard = np.concatenate(played)
    start = int(np.flatnonzero(heard)[0])  # silent ticks before the writer's first chunk
    assert np.array_equal(heard[start - start % FRAME :][: len(audio)], audio)


async def test_close_and_flush_release_a_waiting_writer() -> None:
    source = StreamedSource(max_ms=100)
    writer = asyncio.create_task(source.write(_speech(1.0)))
    await asyncio.sleep(0)
    assert not writer.done()
    source.flush()
    await asyncio.sleep(0)
    source.close()
    await asyncio.wait_for(writer, 1)
    with pytest.raises(RuntimeError):
        source.offer(_speech(0.1))
    with pytest.raises(ValueError):
        StreamedSource(max_ms=10)


def test_in_the_engine_a_burst_is_heard_at_real_time() -> None:
    engine = MediaEngine()
    listener = FakeEndpoint(8000)
    legs = _room(engine, "r", listener=listener)
    source = StreamedSource()
    source.offer(_speech(0.5, 700.0))  # half a second, all at once
    legs["listener"].sources.append(source)
    _run(engine, 40)
    loud = [float(np.abs(f).max()) > 1000 for f in listener.written]
    # 25 frames of audio (the resampler's few samples of delay aside), then silence.
    assert loud[:24] == [True] * 24 and not any(loud[27:])


async def test_a_flush_ends_a_waiting_write_so_the_interrupted_reply_never_resumes() -> None:
    source = StreamedSource(max_ms=100)
    reply = _speech(1.0, 900.0)
    writer = asyncio.create_task(source.write(reply))
    await asyncio.sleep(0)
    assert source.buffered_ms == 100
    assert source.flush() == 100
    await asyncio.sleep(0)  # the writer wakes: it must not refill the buffer with the reply
    assert writer.done() and writer.result() is False
    assert source.buffered_ms == 0
    assert await source.write(_speech(0.05)) is True  # the next reply is taken in full
