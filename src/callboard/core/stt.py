"""Speech-to-text on legs and rooms: a tap on the media clock copies what a leg says into a
bounded queue; a task per stream resamples it to 16 kHz and hands it to the provider, and
publishes `stt.text` for what comes back.

Room STT is one stream per participant, fed with that participant's own audio before the mix
(a muted participant is still transcribed); legs that join later are added, legs that leave
are dropped. A dropped provider connection is reconnected once (the audio in flight is lost),
then the stream ends with `stt.error`. Stopping never waits on a stuck provider for long:
the audio ends, the provider gets FINISH_TIMEOUT to send its last results, then the stream's
task is cancelled. Transcripts never reach the log above debug.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import numpy as np

from callboard.core.errors import Conflict, NotFound
from callboard.core.leg import Leg, LegState
from callboard.core.lifecycle import Lifecycle, Registration
from callboard.core.speech_choice import choose_provider, no_key
from callboard.events.types import SttFailed, SttText
from callboard.media.engine import AttachmentHandle, MediaEngine
from callboard.media.frames import FRAME_MS
from callboard.media.resample import Resampler
from callboard.speech.stt.base import SAMPLE_RATE, SttError, SttProvider, SttRequest
from callboard.speech.stt.service import SttService

if TYPE_CHECKING:
    from callboard.core.rooms import RoomManager

log = logging.getLogger(__name__)

QUEUE_FRAMES = 500  # 10 s of audio may wait for a slow provider; older frames are dropped
CHUNK_FRAMES = 5  # 100 ms per message to the provider
FINISH_TIMEOUT = 5.0


class SttTap:
    """The clock's side: copy the leg's own frame and its rate into a bounded queue."""

    def __init__(self) -> None:
        self._frames: deque[tuple[np.ndarray, int]] = deque(maxlen=QUEUE_FRAMES)
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def feed(self, received: np.ndarray | None, heard: np.ndarray, rate: int) -> None:
        if received is None or self.closed:
            return
        if len(self._frames) == QUEUE_FRAMES:
            self.dropped += 1  # the deque drops the oldest
        self._frames.append((received.copy(), rate))
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def audio(self) -> AsyncIterator[bytes]:
        """16 kHz PCM16 in 100 ms chunks until closed."""
        resamplers: dict[int, Resampler] = {}
        pending: list[np.ndarray] = []
        while True:
            while self._frames:
                frame, rate = self._frames.popleft()
                if rate != SAMPLE_RATE:
                    resampler = resamplers.get(rate) or resamplers.setdefault(
                        rate, Resampler(rate, SAMPLE_RATE)
                    )
                    frame = resampler.process(frame)
                pending.append(frame)
                if len(pending) >= CHUNK_FRAMES:
                    yield np.concatenate(pending).astype("<i2").tobytes()
                    pending = []
            if self.closed:
                if pending:
                    yield np.concatenate(pending).astype("<i2").tobytes()
                return
            self._ready.clear()
            await self._ready.wait()


class SttStream:
    """One leg's transcription: tap, provider task, events."""

    def __init__(
        self,
        engine: MediaEngine,
        leg: Leg,
        provider: SttProvider,
        request: SttRequest,
        room_id: str | None = None,
    ) -> None:
        self.leg = leg
        self.room_id = room_id
        self._provider = provider
        self._request = request
        self._tap = SttTap()
        self._handle: AttachmentHandle = engine.add_leg_tap(leg.id, self._tap)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        reconnected = False
        while True:
            try:
                async for result in self._provider.transcribe(self._tap.audio(), self._request):
                    text = result.text.strip()
                    if text:
                        log.debug("stt %s: %s", self.leg.id, text)
                        self.leg.publish(
                            SttText(text=text, is_final=result.is_final, room_id=self.room_id)
                        )
                return
            except SttError as exc:
                if exc.transient and not reconnected and not self._tap.closed:
                    reconnected = True
                    log.info(
                        "%s STT of leg %s dropped; reconnecting", self._provider.name, self.leg.id
                    )
                    continue
                self._fail(str(exc) or f"{self._provider.name} STT failed")
                return
            except Exception as exc:
                log.exception("STT of leg %s failed", self.leg.id)
                self._fail(f"{self._provider.name} STT failed: {type(exc).__name__}")
                return

    def _fail(self, error: str) -> None:
        log.warning("%s STT of leg %s ended: %s", self._provider.name, self.leg.id, error)
        self._handle.remove()
        self.leg.publish(SttFailed(error=error, room_id=self.room_id))

    def stop(self) -> asyncio.Task[None]:
        """End the audio; the provider may send its last results for FINISH_TIMEOUT."""
        self._handle.remove()
        self._tap.close()
        return asyncio.get_running_loop().create_task(self._finish())

    async def _finish(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._task), FINISH_TIMEOUT)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._tap.dropped:
            seconds = self._tap.dropped * FRAME_MS / 1000
            log.warning(
                "%s STT of leg %s fell behind: %.1f s of its audio was not transcribed",
                self._provider.name,
                self.leg.id,
                seconds,
            )

    @property
    def done(self) -> bool:
        return self._task.done()


class SttManager:
    def __init__(
        self,
        *,
        engine: MediaEngine,
        lifecycle: Lifecycle,
        rooms: RoomManager,
        find_leg: Callable[[str], Leg],
        service: SttService,
    ) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self.rooms = rooms
        self._find_leg = find_leg
        self.service = service
        self._legs: dict[str, tuple[SttStream, Registration]] = {}
        self._rooms: dict[str, _RoomStt] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def _prepare(
        self, provider: str | None, language: str | None, partial: bool, api_key: str | None
    ) -> tuple[SttProvider, SttRequest]:
        chosen, engine = choose_provider(self.service, provider, "STT")
        request = SttRequest(language=language or "en", partial=partial, api_key=api_key or None)
        if not engine.configured(request):
            raise no_key(chosen)
        return engine, request

    @staticmethod
    def _check_connected(leg: Leg) -> None:
        if leg.state is not LegState.CONNECTED:
            raise Conflict(f"leg is {leg.state.value}; STT needs a connected leg")

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    # ---- legs ----

    def start_leg(
        self,
        leg_id: str,
        *,
        provider: str | None,
        language: str | None,
        partial: bool,
        api_key: str | None,
    ) -> None:
        leg = self._find_leg(leg_id)
        self._check_connected(leg)
        if leg.id in self._legs:
            raise Conflict(f"STT is already running on leg {leg.id}")
        engine, request = self._prepare(provider, language, partial, api_key)
        if self.engine.get(leg.id) is None:
            raise Conflict(f"leg {leg.id} has no media yet")
        stream = SttStream(self.engine, leg, engine, request)
        cleanup = self.lifecycle.on_leg_ended(leg.id, functools.partial(self._leg_ended, leg.id))
        self._legs[leg.id] = (stream, cleanup)

    async def stop_leg(self, leg_id: str) -> None:
        self._find_leg(leg_id)
        entry = self._legs.pop(leg_id, None)
        if entry is None:
            raise NotFound("no STT in progress")
        stream, cleanup = entry
        cleanup.cancel()
        await stream.stop()

    def _leg_ended(self, leg_id: str) -> None:
        entry = self._legs.pop(leg_id, None)
        if entry is not None:
            self._keep(entry[0].stop())

    # ---- rooms ----

    def start_room(
        self,
        room_id: str,
        *,
        provider: str | None,
        language: str | None,
        partial: bool,
        api_key: str | None,
    ) -> list[str]:
        room = self.rooms.get(room_id)
        if room_id in self._rooms:
            raise Conflict(f"STT is already running in room {room_id}")
        engine, request = self._prepare(provider, language, partial, api_key)
        room_stt = _RoomStt(self, room_id, engine, request)
        self._rooms[room_id] = room_stt
        for leg in list(room.legs.values()):
            room_stt.joined(leg)
        return sorted(room_stt.streams)

    async def stop_room(self, room_id: str) -> None:
        self.rooms.get(room_id)
        room_stt = self._rooms.pop(room_id, None)
        if room_stt is None:
            raise NotFound("no STT in progress")
        await asyncio.gather(*room_stt.close())

    def _room_dropped(self, room_id: str) -> None:
        room_stt = self._rooms.pop(room_id, None)
        if room_stt is not None:
            for task in room_stt.close():
                self._keep(task)

    async def close(self) -> None:
        for leg_id in list(self._legs):
            self._leg_ended(leg_id)
        for room_id in list(self._rooms):
            self._room_dropped(room_id)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)


class _RoomStt:
    """One stream per participant with media, following the room's membership."""

    def __init__(
        self, manager: SttManager, room_id: str, provider: SttProvider, request: SttRequest
    ) -> None:
        self._manager = manager
        self.room_id = room_id
        self._provider = provider
        self._request = request
        self.streams: dict[str, SttStream] = {}
        self._watch = manager.rooms.watch(room_id, self.joined, self.left)
        self._dropped = manager.lifecycle.on_room_dropped(
            room_id, functools.partial(manager._room_dropped, room_id)
        )
        self._leg_cleanups: dict[str, Registration] = {}

    def joined(self, leg: Leg) -> None:
        engine = self._manager.engine
        if leg.id in self.streams or engine.get(leg.id) is None or leg.ended:
            return  # a participant without media yet is not transcribed
        self.streams[leg.id] = SttStream(engine, leg, self._provider, self._request, self.room_id)
        self._leg_cleanups[leg.id] = self._manager.lifecycle.on_leg_ended(
            leg.id, functools.partial(self.left, leg)
        )

    def left(self, leg: Leg) -> None:
        stream = self.streams.pop(leg.id, None)
        cleanup = self._leg_cleanups.pop(leg.id, None)
        if cleanup is not None:
            cleanup.cancel()
        if stream is not None:
            self._manager._keep(stream.stop())

    def close(self) -> list[asyncio.Task[None]]:
        self._watch.cancel()
        self._dropped.cancel()
        for cleanup in self._leg_cleanups.values():
            cleanup.cancel()
        self._leg_cleanups.clear()
        tasks = [stream.stop() for stream in self.streams.values()]
        self.streams.clear()
        return tasks
