"""Recorders without a network: engine taps -> bounded handoff -> writer thread -> WAV files."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from callboard.media.engine import MediaEngine
from callboard.media.recorder import (
    FrameHandoff,
    LegRecorderTap,
    LegRecordingSink,
    Recorder,
    RecordingResult,
    RoomRecorderTap,
    RoomRecordingSink,
)
from callboard.media.wav import WavWriter

from .audio_analysis import peak_frequency, rms, tone

FRAME = 320  # 20 ms at 16 kHz


def _read(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = wav.readframes(wav.getnframes())
    return rate, np.frombuffer(data, dtype="<i2").reshape(-1, channels)


def _frames(freq: float, count: int, rate: int = 16000) -> list[np.ndarray]:
    n = rate // 50
    signal = tone(freq, rate, n * count)
    return [signal[i * n : (i + 1) * n] for i in range(count)]


def _finish(recorder: Recorder) -> RecordingResult:
    recorder.handoff.finish()
    return recorder.result.result(timeout=10)


class _Endpoint:
    """A leg's transport as the engine sees it: gives a tone, keeps nothing."""

    law = None
    forward_key = None

    def __init__(self, rate: int, frames: list[np.ndarray]) -> None:
        self.sample_rate = rate
        self.frames = frames

    def read_frame(self) -> np.ndarray | None:
        return self.frames.pop(0) if self.frames else None

    def write_frame(self, pcm: np.ndarray) -> None:
        pass

    def prefer_rate(self, rate: int) -> None:
        pass


class _Tone:
    """A FrameSource: what the leg is sent."""

    def __init__(self, freq: float) -> None:
        self.frames = _frames(freq, 1000)

    def next_frame(self) -> np.ndarray | None:
        return self.frames.pop(0) if self.frames else None


def test_lone_8k_leg_records_said_left_heard_right_at_8k(tmp_path: Path) -> None:
    engine = MediaEngine()
    media = engine.attach("leg", _Endpoint(8000, _frames(440, 200, rate=8000)))
    media.sources.append(_Tone(1000))
    writer = WavWriter(tmp_path / "leg.wav", sample_rate=8000, channels=2)
    handoff = FrameHandoff()
    tap = LegRecorderTap(handoff)
    recorder = Recorder("leg", handoff, LegRecordingSink(writer))
    recorder.start()
    engine.add_leg_tap("leg", tap)
    for tick in range(150):
        tap.paused = 100 <= tick < 125
        engine.tick()
    result = _finish(recorder)
    assert result.error is None and result.duration_ms == 150 * 20
    rate, samples = _read(result.files[0])
    assert rate == 8000 and samples.shape == (150 * 160, 2)
    left, right = samples[:, 0], samples[:, 1]
    talk = slice(10 * 160, 100 * 160)
    assert abs(peak_frequency(left[talk], rate) - 440) < 5
    assert abs(peak_frequency(right[talk], rate) - 1000) < 5
    assert rms(left[talk]) > 4000 and rms(right[talk]) > 4000
    # Paused: exact silence on both channels (give the resampler's tail a frame).
    paused = slice(101 * 160, 125 * 160)
    assert not samples[paused].any()
    assert rms(right[126 * 160 :]) > 4000  # resumed


def test_full_queue_drops_but_the_timeline_keeps_its_length(tmp_path: Path) -> None:
    writer = WavWriter(tmp_path / "slow.wav", sample_rate=16000, channels=2)
    handoff = FrameHandoff(max_batches=2)
    tap = LegRecorderTap(handoff)
    loud = np.full(FRAME, 5000, dtype=np.int16)
    for _ in range(30):  # the writer is not running yet: a disk that does not keep up
        tap.feed(loud, loud, 16000)
    assert handoff.dropped_frames == 20
    for _ in range(7):  # five more dropped; two wait for the end in the tap's batch
        tap.feed(loud, loud, 16000)
    recorder = Recorder("slow", handoff, LegRecordingSink(writer))
    recorder.start()
    result = _finish(recorder)
    assert result.dropped_frames == 25
    _, samples = _read(result.files[0])
    assert len(samples) == 37 * FRAME
    per_frame = samples[:, 0].reshape(37, FRAME)
    kept = per_frame.any(axis=1)
    # Two batches of five kept, the dropped frames written as silence, the last two kept.
    assert kept.tolist() == [True] * 10 + [False] * 25 + [True] * 2


def test_room_tracks_share_one_timeline(tmp_path: Path) -> None:
    mix_writer = WavWriter(tmp_path / "room.wav", sample_rate=16000, channels=1)
    sink = RoomRecordingSink(
        mix_writer,
        track_path=lambda key: tmp_path / f"room-{key}.wav",
        merged_path=tmp_path / "room-multichannel.wav",
    )
    handoff = FrameHandoff()
    tap = RoomRecorderTap(handoff, per_participant=True)
    recorder = Recorder("room", handoff, sink)
    recorder.start()
    a_frames, b_frames = _frames(500, 150), _frames(900, 150)
    for tick in range(150):
        members: list[tuple[str, np.ndarray | None]] = []
        if tick < 100:
            members.append(("a", a_frames[tick]))  # a leaves at 2.0 s
        if tick >= 50:
            members.append(("b", b_frames[tick] if tick != 60 else None))  # b joins at 1.0 s
        mix = sum((f for _, f in members if f is not None), np.zeros(FRAME, dtype=np.int32))
        tap.feed(np.asarray(mix, dtype=np.int16), members, 16000)
    result = _finish(recorder)
    assert result.error is None
    assert list(result.tracks) == ["a", "b"] and result.merged is not None
    _, mix = _read(result.files[0])
    _, a = _read(result.tracks["a"])
    _, b = _read(result.tracks["b"])
    _, merged = _read(result.merged)
    assert len(mix) == len(a) == len(b) == len(merged) == 150 * FRAME
    second = 16000
    assert not b[:second].any() and rms(b[second + FRAME : 2 * second]) > 4000
    assert abs(peak_frequency(b[second : 3 * second, 0], 16000) - 900) < 5
    assert rms(a[: 2 * second]) > 4000 and not a[2 * second :].any()
    np.testing.assert_array_equal(merged[:, 0], a[:, 0])
    np.testing.assert_array_equal(merged[:, 1], b[:, 0])
    assert abs(peak_frequency(mix[2 * second :, 0], 16000) - 900) < 5


def test_paused_room_records_silence_but_dates_joins(tmp_path: Path) -> None:
    mix_writer = WavWriter(tmp_path / "p.wav", sample_rate=16000, channels=1)
    sink = RoomRecordingSink(mix_writer, track_path=lambda key: tmp_path / f"p-{key}.wav")
    handoff = FrameHandoff()
    tap = RoomRecorderTap(handoff, per_participant=True)
    recorder = Recorder("p", handoff, sink)
    recorder.start()
    loud = np.full(FRAME, 3000, dtype=np.int16)
    tap.paused = True
    for _ in range(20):
        tap.feed(loud, [("a", loud)], 16000)
    tap.paused = False
    for _ in range(20):
        tap.feed(loud, [("a", loud)], 16000)
    result = _finish(recorder)
    _, mix = _read(result.files[0])
    _, a = _read(result.tracks["a"])
    assert len(mix) == len(a) == 40 * FRAME
    assert not mix[: 20 * FRAME].any() and not a[: 20 * FRAME].any()
    assert (mix[20 * FRAME :] == 3000).all() and (a[20 * FRAME :] == 3000).all()
