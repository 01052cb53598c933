"""Text-to-speech into a leg or a room: a TTS job is a playback (same registry, volume and
stop) whose frames come from a `StreamedSource` that a task fills from the speech service.

The task runs on the event loop and only waits on the network or a worker thread; the media
clock takes one frame a tick from the source and never waits (an underrun plays silence).
Events: `tts.started` when the first audio frame is played, then exactly one of `tts.finished`
(with why) or `tts.error` (with the provider's message).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from callboard.core.errors import BadRequest, Conflict
from callboard.core.playback import Playback, Publish, volume_gain
from callboard.core.speech_choice import choose_provider, no_key
from callboard.events.base import LegOrRoomEvent
from callboard.events.types import TtsFailed, TtsFinished, TtsStarted
from callboard.media.streamed import StreamedSource
from callboard.speech.tts.base import TtsError, TtsProvider, TtsRequest
from callboard.speech.tts.service import TtsService

if TYPE_CHECKING:
    from callboard.core.leg import Leg
    from callboard.core.room import Room
    from callboard.core.rooms import RoomManager
    from callboard.media.engine import MediaEngine

log = logging.getLogger(__name__)

# Synthesis may run ahead of playback by this much; more waits (backpressure on the provider).
PLAYOUT_AHEAD_MS = 30_000


def prepare_tts(
    service: TtsService,
    *,
    provider: str | None,
    text: str | None,
    voice: str | None,
    model_id: str | None = None,
    language: str | None = None,
    prompt: str | None = None,
    volume: int = 0,
    api_key: str | None = None,
) -> tuple[TtsProvider, TtsRequest]:
    """The checks of API-NOTES in their order: 503 for a cloud provider without a key, then
    400 for missing text, a missing voice (cloud providers) and the volume range."""
    chosen, engine = choose_provider(service, provider, "TTS")
    request = TtsRequest(
        text=text or "",
        voice=voice or None,
        model_id=model_id or None,
        language=language or None,
        prompt=prompt or None,
        api_key=api_key or None,
    )
    if not engine.configured(request):
        raise no_key(chosen)
    if not request.text.strip():
        raise BadRequest("text is required")
    if engine.needs_voice and not request.voice:
        raise BadRequest(f"voice is required for the {chosen} provider")
    volume_gain(volume)
    return engine, request


class TtsPlayback(Playback):
    def __init__(
        self,
        publish: Publish,
        volume: int,
        service: TtsService,
        provider: TtsProvider,
        request: TtsRequest,
    ) -> None:
        super().__init__(publish, volume)
        self.id = f"tts-{secrets.token_hex(4)}"
        self._service = service
        self._provider = provider
        self._request = request
        self._stream = StreamedSource(PLAYOUT_AHEAD_MS)
        self._task: asyncio.Task[None] | None = None
        self._announced = False

    def begin(self, on_error: Callable[[Playback, str], None]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._fill(on_error))

    async def _fill(self, on_error: Callable[[Playback, str], None]) -> None:
        carry = b""
        try:
            async for chunk in self._service.stream(self._provider, self._request):
                data = carry + chunk
                usable = len(data) - len(data) % 2
                carry = data[usable:]
                if usable and not await self._stream.write(np.frombuffer(data[:usable], "<i2")):
                    return  # stopped meanwhile
            self._stream.close()  # plays out, then the engine ends the playback (completed)
        except TtsError as exc:
            on_error(self, str(exc) or f"{self._provider.name} TTS failed")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("TTS %s failed", self.id)
            on_error(self, f"{self._provider.name} TTS failed: {type(exc).__name__}")

    def next_frame(self) -> np.ndarray | None:
        if self.stopped:
            return None
        frame = self._stream.next_frame()
        if frame is None:
            return None
        if not self._announced and self._stream.started:
            self._announced = True
            self.publish(TtsStarted(tts_id=self.id))
        return self.scaled(frame)

    def close(self) -> None:
        super().close()
        self._stream.close()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def end_event(self, error: str | None, reason: str) -> LegOrRoomEvent:
        if error is not None:
            return TtsFailed(tts_id=self.id, error=error)
        return TtsFinished(tts_id=self.id, reason=reason)


def speak_on_leg(
    engine: MediaEngine,
    service: TtsService,
    leg: Leg,
    provider: TtsProvider,
    request: TtsRequest,
    volume: int,
) -> TtsPlayback:
    """Heard by the leg alone, on top of its room's mix."""
    media = engine.get(leg.id)
    if media is None or leg.ended:
        raise Conflict(f"leg is {leg.state.value} and has no audio writer yet")
    job = TtsPlayback(leg.publish, volume, service, provider, request)
    leg.playbacks.start(media, job)
    return job


def speak_in_room(
    rooms: RoomManager,
    service: TtsService,
    room: Room,
    provider: TtsProvider,
    request: TtsRequest,
    volume: int,
) -> TtsPlayback:
    """Heard by every participant of the room."""
    if room.dropping:
        raise Conflict(f"room {room.id} is being deleted")
    if room.empty:
        raise Conflict(f"room {room.id} has no participants")
    playback = TtsPlayback(partial(rooms.publish, room), volume, service, provider, request)
    room.playbacks.start(rooms.engine.room(room.id), playback)
    return playback
