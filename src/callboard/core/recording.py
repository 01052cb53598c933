"""Recordings of legs and rooms: the API rules, the life cycle and the events around them.

The audio path lives in media/recorder.py (a tap on the clock, a writer thread per
recording). Here: at most one recording per leg and per room; the format chosen at start
(a leg in a room: stereo at the room's rate, said/heard; a lone leg: stereo at its codec's
rate; a room: the mix at its rate, plus per-participant tracks with `multi_channel`); stop on
DELETE, hang-up, room deletion and shutdown; S3 upload after the files are final. A leg that
joins or leaves a room mid-recording keeps the format chosen at start, so one file never
changes layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from callboard.core.errors import CallboardError, Conflict, NotFound
from callboard.core.lifecycle import Lifecycle, Registration
from callboard.events.base import LegOrRoomEvent
from callboard.events.types import (
    ChannelSpan,
    RecordingFinished,
    RecordingPaused,
    RecordingResumed,
    RecordingStarted,
)
from callboard.media.engine import AttachmentHandle, MediaEngine
from callboard.media.recorder import (
    FRAME_MS,
    MAX_MERGED_CHANNELS,
    FrameHandoff,
    LegRecorderTap,
    LegRecordingSink,
    Recorder,
    RecordingResult,
    RoomRecorderTap,
    RoomRecordingSink,
)
from callboard.media.wav import WavWriter
from callboard.storage.s3 import S3Target, S3UploadError, object_key, s3_url, upload_file

if TYPE_CHECKING:
    from callboard.core.leg import Leg
    from callboard.core.rooms import RoomManager

log = logging.getLogger(__name__)

# How long an orderly shutdown waits for recordings to finish (files and S3 uploads).
SHUTDOWN_WAIT_S = 8.0
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")


class RecordingFileError(CallboardError):
    """The recording directory or file could not be created (the seed's 500)."""

    status = 500


@dataclass
class Recording:
    """One running recording of a leg or a room."""

    kind: str  # "leg" or "room"
    target_id: str
    path: Path  # the main file: leg stereo or room mix
    tap: LegRecorderTap | RoomRecorderTap
    recorder: Recorder
    publish: Callable[[LegOrRoomEvent], object]  # publishes an event of this leg or room
    s3: S3Target | None
    multi_channel: bool = False
    finished: asyncio.Future[RecordingResult] | None = None
    attachment: AttachmentHandle | None = None  # the tap on the engine, while it runs
    cleanup: Registration | None = None  # stops it when its leg ends or its room goes

    @property
    def paused(self) -> bool:
        return self.tap.paused

    def location(self, path: Path) -> str:
        """Where a file of this recording ends up: its s3:// URL, else its local path."""
        if self.s3 is None:
            return str(path)
        return s3_url(self.s3, object_key(self.s3, path.name))

    @property
    def file(self) -> str:
        return self.location(self.path)


def _safe_name(text: str, limit: int = 64) -> str:
    """A caller-chosen id as a file-name part: no path separators, dots or odd bytes."""
    return _UNSAFE_NAME_CHARS.sub("_", text)[:limit] or "_"


def _open_main_file(directory: Path, stem: str, rate: int, channels: int) -> WavWriter:
    """Create the directory and the recording's first file (in a worker thread)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return WavWriter(directory / f"{stem}.wav", sample_rate=rate, channels=channels)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RecordingFileError(
            f"Failed to create recording file in {directory}: {reason}"
        ) from None


def _discard(writer: WavWriter) -> None:
    writer.close()
    writer.path.unlink(missing_ok=True)


def _discard_when_opened(opening: asyncio.Future[WavWriter]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        asyncio.get_running_loop().run_in_executor(None, _discard, opening.result())


class MultiChannelFields(TypedDict, total=False):
    """What a multi-channel room recording adds to recording.finished and the DELETE answer."""

    participant_files: dict[str, str]
    multi_channel_file: str
    channels: dict[str, ChannelSpan]
    omitted_legs: list[str]


def multi_channel_fields(
    result: RecordingResult, where: Callable[[Path], str]
) -> MultiChannelFields:
    """A multi-channel room recording as VoiceBlender reports it: `multi_channel_file` with a
    channel per participant in join order, `channels` (participant -> its 0-based channel and
    the span of the timeline it was present for), `omitted_legs` for participants missing
    from that file; and, as the seed asks, each participant's own mono file under
    `participant_files`."""
    fields = MultiChannelFields(
        participant_files={key: where(path) for key, path in result.tracks.items()}
    )
    merged = list(result.tracks)[:MAX_MERGED_CHANNELS] if result.merged is not None else []
    if result.merged is not None:
        fields["multi_channel_file"] = where(result.merged)
        fields["channels"] = {
            key: ChannelSpan(
                channel=index,
                start_ms=result.spans.get(key, (0, 0))[0],
                end_ms=result.spans.get(key, (0, 0))[1],
            )
            for index, key in enumerate(merged)
        }
    omitted = [key for key in result.spans if key not in merged]
    if omitted:
        fields["omitted_legs"] = omitted
    return fields


class RecordingManager:
    """Every running recording, keyed by ("leg", id) or ("room", id)."""

    def __init__(
        self,
        *,
        directory: str,
        engine: MediaEngine,
        lifecycle: Lifecycle,
        find_leg: Callable[[str], Leg],
        rooms: RoomManager,
    ) -> None:
        self.directory = directory
        self.engine = engine
        self.lifecycle = lifecycle
        self._find_leg = find_leg
        self.rooms = rooms
        self.active: dict[tuple[str, str], Recording] = {}
        self._starting: set[tuple[str, str]] = set()
        self._finishing: set[asyncio.Task[None]] = set()

    # ---- start ----

    def _stem(self, kind: str, target_id: str) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{kind}-{_safe_name(target_id)}-{stamp}-{uuid.uuid4().hex[:8]}"

    async def _create(self, key: tuple[str, str], rate: int, channels: int) -> WavWriter:
        if key in self.active or key in self._starting:
            raise Conflict(f"a recording is already in progress on {key[0]} {key[1]}")
        directory = Path(self.directory)
        self._starting.add(key)
        opening = asyncio.ensure_future(
            asyncio.to_thread(_open_main_file, directory, self._stem(*key), rate, channels)
        )
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The client went away mid-request: remove the file once it exists.
            opening.add_done_callback(_discard_when_opened)
            raise
        finally:
            self._starting.discard(key)

    async def start_leg(self, leg_id: str, s3: S3Target | None) -> Recording:
        leg = self._find_leg(leg_id)
        key = ("leg", leg.id)
        media = self.engine.get(leg.id)
        if media is None or leg.ended:
            raise Conflict(f"leg {leg.id} is {leg.state.value} and has no audio to record yet")
        # In a room: what the participant says and hears, at the room's mixing rate. Alone:
        # what the far end says and what we send, at the rate the codec carries. (A leg that
        # moves to a room of another rate later is converted to the file's rate.)
        rate = media.room.rate if media.room is not None else media.endpoint.sample_rate
        writer = await self._create(key, rate, 2)
        media = self.engine.get(leg.id)
        if media is None or leg.ended:
            await asyncio.to_thread(_discard, writer)
            raise Conflict(f"leg {leg.id} hung up while its recording was being set up")
        handoff = FrameHandoff()
        tap = LegRecorderTap(handoff)
        recorder = Recorder(f"leg-{leg.id}", handoff, LegRecordingSink(writer))
        recording = Recording("leg", leg.id, writer.path, tap, recorder, leg.publish, s3)
        recording.attachment = self.engine.add_leg_tap(leg.id, tap)
        self._begin(key, recording)
        log.info("recording leg %s to %s (%d Hz stereo)", leg.id, recording.file, rate)
        return recording

    async def start_room(self, room_id: str, s3: S3Target | None, multi_channel: bool) -> Recording:
        room = self.rooms.get(room_id)
        key = ("room", room.id)
        if room.dropping or self.engine.get_room(room.id) is None:
            raise Conflict(f"room {room.id} is being deleted")
        writer = await self._create(key, room.sample_rate, 1)
        room_media = self.engine.get_room(room.id)
        if room_media is None or room.dropping or self.rooms.rooms.get(room.id) is not room:
            await asyncio.to_thread(_discard, writer)
            raise Conflict(f"room {room.id} was deleted while its recording was being set up")
        base = writer.path.with_suffix("")
        sink = RoomRecordingSink(
            writer,
            track_path=(lambda p: Path(f"{base}-{_safe_name(p)}.wav")) if multi_channel else None,
            merged_path=Path(f"{base}-multichannel.wav") if multi_channel else None,
        )
        handoff = FrameHandoff()
        tap = RoomRecorderTap(handoff, multi_channel)
        recorder = Recorder(f"room-{room.id}", handoff, sink)
        publish = partial(self.rooms.publish, room)
        recording = Recording("room", room.id, writer.path, tap, recorder, publish, s3)
        recording.multi_channel = multi_channel
        recording.attachment = self.engine.add_room_tap(room.id, tap)
        self._begin(key, recording)
        log.info("recording room %s to %s", room.id, recording.file)
        return recording

    def _begin(self, key: tuple[str, str], recording: Recording) -> None:
        self.active[key] = recording
        if recording.kind == "leg":
            # Stopped before the leg's media leaves the engine.
            recording.cleanup = self.lifecycle.on_leg_ended(
                recording.target_id, lambda: self._stop(recording)
            )
        else:
            # Stopped while the room's engine room still exists; room.deleted waits for it.
            recording.cleanup = self.lifecycle.on_room_dropped(
                recording.target_id, lambda: self._stop(recording)
            )
        loop = asyncio.get_running_loop()

        def failed() -> None:  # on the writer thread
            loop.call_soon_threadsafe(self._failed, recording)

        recording.recorder.on_failure = failed
        recording.recorder.start()
        recording.publish(RecordingStarted(file=recording.file))

    def _failed(self, recording: Recording) -> None:
        """Writing failed (a full disk): the recording ends now, with recording.finished
        naming the error; the call goes on."""
        if self.active.get((recording.kind, recording.target_id)) is recording:
            log.warning("recording %s ends early: writing failed", recording.path)
            self._stop(recording)

    # ---- pause / resume ----

    def get(self, kind: str, target_id: str) -> Recording:
        recording = self.active.get((kind, target_id))
        if recording is None:
            if kind == "leg":
                self._find_leg(target_id)  # 404 for the leg first
            else:
                self.rooms.get(target_id)
            raise NotFound(f"no recording in progress on {kind} {target_id}")
        return recording

    def set_paused(self, kind: str, target_id: str, paused: bool) -> str:
        """Pause or resume; the answer word says whether anything changed."""
        recording = self.get(kind, target_id)
        if recording.paused == paused:
            return "already_paused" if paused else "not_paused"
        recording.tap.paused = paused  # read by the tap on the next tick
        event_class = RecordingPaused if paused else RecordingResumed
        recording.publish(event_class(file=recording.file))
        return "paused" if paused else "resumed"

    # ---- stop ----

    async def stop(self, kind: str, target_id: str) -> Recording:
        """DELETE: stop and wait until the files are final (the upload continues after)."""
        recording = self.get(kind, target_id)
        self._stop(recording)
        assert recording.finished is not None
        # A failure to finalise is reported by recording.finished; the answer still says
        # where the file is.
        with contextlib.suppress(Exception):
            await asyncio.shield(recording.finished)
        return recording

    def _stop(self, recording: Recording) -> asyncio.Task[None]:
        """Take the tap off the clock, let the writer finish, publish when done."""
        key = (recording.kind, recording.target_id)
        if self.active.get(key) is recording:
            del self.active[key]
        if recording.cleanup is not None:
            recording.cleanup.cancel()
        if recording.attachment is not None:
            recording.attachment.remove()
        recording.recorder.handoff.finish()
        recording.finished = asyncio.wrap_future(recording.recorder.result)
        task = asyncio.create_task(self._finish(recording))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return task

    async def _finish(self, recording: Recording) -> None:
        assert recording.finished is not None
        try:
            result = await asyncio.shield(recording.finished)
        except Exception as exc:
            log.error("recording %s could not be finalised: %s", recording.path, exc)
            recording.publish(
                RecordingFinished(file=str(recording.path), error=f"finalising failed: {exc}")
            )
            return
        if result.dropped_frames:
            log.warning(
                "recording %s: %d ms of audio dropped (disk too slow), kept as silence",
                recording.path,
                result.dropped_frames * FRAME_MS,
            )
        errors = [result.error] if result.error else []
        uploaded: dict[Path, str] = {}
        if recording.s3 is not None:
            try:
                uploaded = await self._upload(recording.s3, result.files, errors)
            except asyncio.CancelledError:
                errors.append("upload interrupted by shutdown")
                self._publish_finished(recording, result, uploaded, errors)
                raise
        self._publish_finished(recording, result, uploaded, errors)

    async def _upload(
        self, target: S3Target, files: list[Path], errors: list[str]
    ) -> dict[Path, str]:
        uploaded: dict[Path, str] = {}
        for path in files:
            try:
                uploaded[path] = await upload_file(target, path, object_key(target, path.name))
            except S3UploadError as exc:
                # The local file stays; recording.finished names it and says why.
                log.warning("recording kept locally at %s: %s", path, exc)
                errors.append(str(exc))
        return uploaded

    def _publish_finished(
        self,
        recording: Recording,
        result: RecordingResult,
        uploaded: dict[Path, str],
        errors: list[str],
    ) -> None:
        def where(path: Path) -> str:
            return uploaded.get(path, str(path))

        event = RecordingFinished(
            file=where(result.files[0]),
            duration_ms=result.duration_ms,
            local_file=str(result.files[0]) if recording.s3 is not None else None,
            error="; ".join(errors) if errors else None,
            **(multi_channel_fields(result, where) if recording.multi_channel else {}),
        )
        recording.publish(event)
        log.info("recording %s finished (%d ms)", event.file, result.duration_ms)

    def answer_fields(self, recording: Recording) -> dict[str, Any]:
        """The DELETE answer's file fields, for a recording whose files are final."""
        fields: dict[str, Any] = {"file": recording.file}
        finished = recording.finished
        if (
            recording.multi_channel
            and finished is not None
            and finished.done()
            and not finished.exception()
        ):
            fields.update(multi_channel_fields(finished.result(), recording.location))
        return fields

    # ---- shutdown ----

    async def close(self, timeout: float = SHUTDOWN_WAIT_S) -> None:
        """Stop every recording and wait (bounded) until each has published its end."""
        for recording in list(self.active.values()):
            self._stop(recording)
        pending = set(self._finishing)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            log.warning("shutdown: %d recording uploads did not finish in time", len(late))
            await asyncio.wait(late, timeout=1.0)
