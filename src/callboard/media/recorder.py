"""Recorders: engine taps on the media clock, and a writer thread per recording.

On the clock a tap only copies the tick's frames to bytes and batches them into a bounded
queue; when the writer lags so far that the queue is full, the batch is dropped and counted,
and the writer later fills the gap with silence so the file keeps the call's timeline. The
writer thread does everything slow: resampling to the file's rate, WAV writes, the merge of
per-participant tracks. Pausing is a flag the tap reads: paused ticks travel as silence.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from callboard.media.frames import FRAME_SAMPLES, SAMPLE_RATE
from callboard.media.resample import Resampler
from callboard.media.wav import HEADER_BYTES, WavWriter

log = logging.getLogger(__name__)

# 100 ms per queue item: five times fewer lock round trips on the clock than one per frame.
BATCH_FRAMES = 5
# Ten seconds of audio may wait for a slow disk before the clock starts dropping frames.
MAX_QUEUED_BATCHES = 100
# A WAV channel count the merged multi-channel file will not exceed.
MAX_MERGED_CHANNELS = 64
FRAME_MS = FRAME_SAMPLES * 1000 // SAMPLE_RATE

_SILENT_FRAME = bytes(FRAME_SAMPLES * 2)

# (rate, said, heard); None = a paused tick. The rate is the leg's mix rate, which changes
# when it moves to a room of another rate.
LegItem = tuple[int, bytes | None, bytes] | None
RoomItem = tuple[bytes | None, list[tuple[str, bytes | None]] | None]  # (mix, members)


@dataclass(slots=True)
class _Batch:
    gap: int  # frames dropped just before these (written as silence)
    items: list[Any]


class FrameHandoff:
    """The bounded, never-blocking path from the clock to one writer thread."""

    def __init__(self, max_batches: int = MAX_QUEUED_BATCHES) -> None:
        self.queue: queue.Queue[_Batch | None] = queue.Queue(max_batches)
        self.stop = threading.Event()
        self.final: _Batch | None = None
        self.dropped_frames = 0
        self._pending: list[Any] = []
        self._gap = 0

    def push(self, item: Any) -> None:
        """On the clock: one tick's item."""
        self._pending.append(item)
        if len(self._pending) >= BATCH_FRAMES:
            self._send()

    def _send(self) -> None:
        batch = _Batch(self._gap, self._pending)
        self._pending = []
        try:
            self.queue.put_nowait(batch)
        except queue.Full:
            self._gap += len(batch.items)
            self.dropped_frames += len(batch.items)
        else:
            self._gap = 0

    def finish(self) -> None:
        """On the loop, once the tap is off the engine: hand over the rest and stop."""
        self.final = _Batch(self._gap, self._pending)
        self._pending = []
        self._gap = 0
        self.stop.set()
        # Wake a writer waiting on an empty queue; a full one means it is busy draining and
        # sees `stop` when done.
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)


class LegRecorderTap:
    """LegTap: what the participant said and what it heard, as bytes."""

    def __init__(self, handoff: FrameHandoff) -> None:
        self.handoff = handoff
        self.paused = False

    def feed(self, received: np.ndarray | None, heard: np.ndarray, rate: int) -> None:
        if self.paused:
            self.handoff.push(None)
            return
        said = None if received is None else received.tobytes()
        self.handoff.push((rate, said, heard.tobytes()))


class RoomRecorderTap:
    """RoomTap: the room mix and, for per-participant tracks, every member's own input."""

    def __init__(self, handoff: FrameHandoff, per_participant: bool) -> None:
        self.handoff = handoff
        self.per_participant = per_participant
        self.paused = False

    def feed(
        self, mix: np.ndarray, members: list[tuple[str, np.ndarray | None]], rate: int
    ) -> None:
        # A room's rate never changes: the sink was made for it.
        tracks: list[tuple[str, bytes | None]] | None = None
        if self.per_participant:
            # Members are listed even while paused: a join is dated by its first tick.
            if self.paused:
                tracks = [(key, None) for key, _ in members]
            else:
                tracks = [(key, None if f is None else f.tobytes()) for key, f in members]
        self.handoff.push((None if self.paused else mix.tobytes(), tracks))


@dataclass
class RecordingResult:
    """What a finished recording left on disk."""

    duration_ms: int
    files: list[Path]  # every finished file: the main one first
    tracks: dict[str, Path] = field(default_factory=dict)  # participant -> mono track
    merged: Path | None = None  # one channel per participant, in `tracks` order
    # participant -> (first, last) ms of the recording's timeline it was in the room for
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    dropped_frames: int = 0
    error: str | None = None


def _pcm(data: bytes | None, silent: bytes = _SILENT_FRAME) -> np.ndarray:
    return np.frombuffer(data or silent, dtype="<i2")


class LegRecordingSink:
    """Stereo: left = what the participant said, right = what it heard, at the file's rate."""

    def __init__(self, writer: WavWriter) -> None:
        self.writer = writer
        self._rate = 0  # of the frames coming in; the resamplers are made for it
        self._left = Resampler(SAMPLE_RATE, writer.sample_rate)
        self._right = Resampler(SAMPLE_RATE, writer.sample_rate)
        self._silence = np.zeros((writer.sample_rate * FRAME_MS // 1000, 2), dtype=np.int16)
        self._ticks = 0
        self.errors: list[str] = []

    def add(self, item: LegItem) -> None:
        self._ticks += 1
        if item is None:
            self.writer.write(self._silence)
            return
        rate, said, heard = item
        if rate != self._rate:
            self._rate = rate
            self._left = Resampler(rate, self.writer.sample_rate)
            self._right = Resampler(rate, self.writer.sample_rate)
        silent = bytes(rate * FRAME_MS // 1000 * 2)
        left = self._left.process(_pcm(said, silent))
        right = self._right.process(_pcm(heard, silent))
        stereo = np.empty((len(left), 2), dtype=np.int16)
        stereo[:, 0] = left
        stereo[:, 1] = right
        self.writer.write(stereo)

    def add_gap(self, frames: int) -> None:
        for _ in range(frames):
            self.add(None)

    def close(self) -> RecordingResult:
        try:
            self.writer.close()
        except OSError as exc:  # the disk is full: the file counts what reached it
            self.errors.append(f"closing failed: {exc}")
        return RecordingResult(self._ticks * FRAME_MS, [self.writer.path])


class RoomRecordingSink:
    """Mono mix at the room's rate (the writer's), plus (optionally) one mono track per
    participant on one timeline.

    A participant's track is created at its first tick and starts with silence back to the
    recording's start; once it has left, it gets silence until the end, so every track has
    the mix's length. At close the tracks are also merged into one multi-channel file.
    """

    def __init__(
        self,
        mix: WavWriter,
        track_path: Callable[[str], Path] | None = None,
        merged_path: Path | None = None,
    ) -> None:
        self.mix = mix
        self.rate = mix.sample_rate
        self._frame = self.rate * FRAME_MS // 1000
        self._silent = bytes(self._frame * 2)
        self._track_path = track_path
        self._merged_path = merged_path
        self._tracks: dict[str, WavWriter] = {}
        self._spans: dict[str, list[int]] = {}  # participant -> [first tick, last tick + 1]
        self._broken: set[str] = set()  # participants whose track could not be created
        self._ticks = 0
        self.errors: list[str] = []

    def add(self, item: RoomItem | None) -> None:
        mix, members = item if item is not None else (None, None)
        self.mix.write_bytes(mix or self._silent)
        if self._track_path is not None:
            seen: set[str] = set()
            for key, frame in members or ():
                span = self._spans.get(key)
                if span is None:
                    self._spans[key] = [self._ticks, self._ticks + 1]
                else:
                    span[1] = self._ticks + 1
                track = self._tracks.get(key) or self._open_track(key)
                if track is not None:
                    track.write_bytes(frame or self._silent)
                    seen.add(key)
            for key, track in self._tracks.items():
                if key not in seen:
                    track.write_bytes(self._silent)
        self._ticks += 1

    def add_gap(self, frames: int) -> None:
        for _ in range(frames):
            self.add(None)

    def _open_track(self, key: str) -> WavWriter | None:
        if key in self._broken or self._track_path is None:
            return None
        try:
            track = WavWriter(self._track_path(key), sample_rate=self.rate, channels=1)
            track.write_silence(self._ticks * self._frame)
        except OSError as exc:
            self._broken.add(key)
            self.errors.append(f"track of {key}: {exc}")
            log.error("recording %s: cannot create the track of %s: %s", self.mix.path, key, exc)
            return None
        self._tracks[key] = track
        return track

    def close(self) -> RecordingResult:
        try:
            self.mix.close()
        except OSError as exc:  # the disk is full: the file counts what reached it
            self.errors.append(f"closing failed: {exc}")
        result = RecordingResult(self._ticks * FRAME_MS, [self.mix.path])
        result.spans = {k: (a * FRAME_MS, b * FRAME_MS) for k, (a, b) in self._spans.items()}
        for key, track in self._tracks.items():
            try:
                track.close()
            except OSError as exc:
                self.errors.append(f"track of {key}: {exc}")
                continue
            result.tracks[key] = track.path
            result.files.append(track.path)
        if self._merged_path is not None and result.tracks:
            paths = list(result.tracks.values())[:MAX_MERGED_CHANNELS]
            try:
                merge_tracks(paths, self._merged_path, self._ticks * self._frame, self.rate)
            except OSError as exc:
                self.errors.append(f"multi-channel file: {exc}")
                log.error("recording %s: merging the tracks failed: %s", self.mix.path, exc)
            else:
                result.merged = self._merged_path
                result.files.append(self._merged_path)
        return result


def merge_tracks(paths: list[Path], out: Path, frames: int, rate: int = SAMPLE_RATE) -> None:
    """Interleave equally long mono tracks at `rate` into one WAV, a second at a time."""
    chunk = rate
    writer = WavWriter(out, sample_rate=rate, channels=len(paths))
    sources = []
    try:
        for path in paths:
            source = open(path, "rb")  # noqa: SIM115 - closed below
            sources.append(source)
            source.seek(HEADER_BYTES)
        done = 0
        while done < frames:
            count = min(chunk, frames - done)
            block = np.zeros((count, len(paths)), dtype=np.int16)
            for column, source in enumerate(sources):
                samples = np.frombuffer(source.read(count * 2), dtype="<i2")
                block[: len(samples), column] = samples
            writer.write(block)
            done += count
    finally:
        for source in sources:
            source.close()
        writer.close()


class Recorder:
    """One recording's writer thread: drains the handoff into a sink, finalises on stop.

    `result` completes (from the thread) once every file is closed, also after a failure:
    whatever was written stays a valid WAV."""

    def __init__(
        self, name: str, handoff: FrameHandoff, sink: LegRecordingSink | RoomRecordingSink
    ) -> None:
        self.handoff = handoff
        self.sink = sink
        self.result: concurrent.futures.Future[RecordingResult] = concurrent.futures.Future()
        # A daemon: an orderly shutdown stops every recording first; anything else is a crash,
        # after which the file is valid up to its last header rewrite.
        self._thread = threading.Thread(target=self._run, name=f"recorder-{name}", daemon=True)
        self._error: str | None = None
        # Told (from the writer thread) when writing failed, so the recording can end now
        # rather than when somebody stops it.
        self.on_failure: Callable[[], None] | None = None

    def start(self) -> None:
        self._thread.start()

    def _take(self, batch: _Batch | None) -> None:
        if batch is None or self._error is not None:
            return
        try:
            if batch.gap:
                self.sink.add_gap(batch.gap)
            for item in batch.items:
                self.sink.add(item)
        except (OSError, ValueError) as exc:
            # Typically a full disk: stop writing; the file stays valid up to here.
            self._error = f"writing failed: {exc}"
            log.error("recorder %s: %s", self._thread.name, self._error)
            if self.on_failure is not None:
                self.on_failure()

    def _run(self) -> None:
        handoff = self.handoff
        try:
            while not handoff.stop.is_set():
                try:
                    batch = handoff.queue.get(timeout=1.0)
                except queue.Empty:
                    continue
                self._take(batch)
            while True:
                try:
                    self._take(handoff.queue.get_nowait())
                except queue.Empty:
                    break
            self._take(handoff.final)
        except Exception:
            log.exception("recorder %s failed", self._thread.name)
            self._error = self._error or "internal recorder error"
        try:
            result = self.sink.close()
        except Exception as exc:
            log.exception("recorder %s: closing failed", self._thread.name)
            self.result.set_exception(exc)
            return
        errors = [e for e in (self._error, *getattr(self.sink, "errors", ())) if e]
        result.error = "; ".join(errors) or None
        result.dropped_frames = handoff.dropped_frames
        self.result.set_result(result)
