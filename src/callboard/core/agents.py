"""AI agents on legs and rooms: each session is a provider client (agents/<provider>.py) run
as a task, bridged to the call by an `AgentAudio`.

- A leg agent hears the leg alone (a tap on what the leg says) and speaks on the leg's behalf
  (`MediaEngine.add_leg_voice`): to the leg when it is in no room, into its room's mix when it
  is in one, so that everyone hears it; moving rooms moves the voice with the leg.
- A room agent is a participant of the room: it hears mixed-minus-self and everyone hears it.
  It ends when the room is deleted or its last participant leaves.

The agent's speech is played from a paced buffer (media/streamed.py): whatever the provider's
chunking and speed, the clock takes one frame a tick, and a barge-in flushes it at once.
Nothing here waits on a provider on the clock: the clock only copies frames into a bounded
queue that the client's sender drains.

Every session ends with exactly one `agent.disconnected` (also one that never connected),
with the reason: stopped, hangup, room_deleted, room_empty, provider_closed or error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from callboard.agents.base import SAMPLE_RATE, AgentClient, AgentError, InjectionUnsupported
from callboard.core.errors import Conflict, NotFound, NotSupported
from callboard.core.leg import Leg, LegState
from callboard.core.lifecycle import Lifecycle, Registration
from callboard.events.base import LegOrRoomEvent
from callboard.events.types import (
    AgentConnected,
    AgentDisconnected,
    AgentResponse,
    AgentUserTranscript,
)
from callboard.media.engine import MediaEngine
from callboard.media.frames import FRAME_SAMPLES
from callboard.media.resample import Resampler
from callboard.media.streamed import StreamedSource

if TYPE_CHECKING:
    from callboard.core.rooms import RoomManager

log = logging.getLogger(__name__)

HEARD_QUEUE_FRAMES = 50  # 1 s of the call may wait for a slow socket; older frames are dropped
# A provider may send a whole reply at once, faster than real time: hold up to this much.
SPEECH_BUFFER_MS = 120_000
GOODBYE_TIMEOUT = 1.0  # seconds for the provider's polite goodbye when we end the session
STOP_TIMEOUT = 3.0  # seconds for the client to wind down once cancelled

_SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
_SILENCE.setflags(write=False)


class HeardPump:
    """Hands every session the frames the clock queued for it, once per tick for all of them:
    one callback after the tick instead of a task waking up per session 50 times a second.
    It runs right after the tick, never inside it: the clock only queues."""

    def __init__(self) -> None:
        self._pending: list[AgentAudio] = []
        self._scheduled = False

    def wake(self, audio: AgentAudio) -> None:
        self._pending.append(audio)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for audio in pending:
            audio.deliver()


HeardConsumer = Callable[[np.ndarray], None]


class AgentAudio:
    """The media side of one session. The clock feeds it what the agent should hear (as a leg
    tap, or as the room participant's `write_frame`) and takes the agent's speech from
    `speech` (a leg voice, or the participant's `read_frame`). What it hears goes, resampled
    to 16 kHz, to the consumer the session's client `listen`s with, through the pump."""

    sample_rate = SAMPLE_RATE  # as a room participant: the engine converts to the room's rate
    law = None
    forward_key = None

    def __init__(self, pump: HeardPump | None = None) -> None:
        self.speech = StreamedSource(SPEECH_BUFFER_MS)
        self._pump = pump or HeardPump()
        self._heard: deque[tuple[np.ndarray | None, int]] = deque(maxlen=HEARD_QUEUE_FRAMES)
        self._waiting = False  # in the pump's list
        self._consumer: HeardConsumer | None = None
        self._on_error: Callable[[BaseException], None] | None = None
        self._to_16k: dict[int, Resampler] = {}
        self._from_rate: dict[int, Resampler] = {}
        self.closed = False
        self.heard_dropped = 0
        self.speech_refused_ms = 0
        self.last_interrupt: float | None = None

    # ---- the clock's side ----

    def feed(self, received: np.ndarray | None, heard: np.ndarray, rate: int) -> None:
        """LegTap: what the leg said this tick (None when nothing came: silence)."""
        self._put(None if received is None else received.copy(), rate)

    def read_frame(self) -> np.ndarray | None:
        """As a room participant: the agent's voice."""
        return self.speech.next_frame()

    def write_frame(self, pcm: np.ndarray) -> None:
        """As a room participant: the room's mix minus the agent, at 16 kHz."""
        self._put(pcm.copy(), SAMPLE_RATE)

    def prefer_rate(self, rate: int) -> None:
        """Always 16 kHz as a participant: the engine converts to the room's rate."""

    def _put(self, frame: np.ndarray | None, rate: int) -> None:
        if self.closed:
            return
        if len(self._heard) == HEARD_QUEUE_FRAMES:
            self.heard_dropped += 1  # the deque drops the oldest
        self._heard.append((frame, rate))
        if self._consumer is not None and not self._waiting:
            self._waiting = True
            self._pump.wake(self)

    # ---- the session's side (AgentLink audio) ----

    def listen(
        self,
        consumer: HeardConsumer | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Give each frame heard from now on (and those queued) to `consumer`; an exception
        it raises goes to `on_error` and stops the listening. None stops it."""
        self._consumer, self._on_error = consumer, on_error
        if consumer is not None and self._heard and not self._waiting:
            self._waiting = True
            self._pump.wake(self)

    def deliver(self) -> None:
        self._waiting = False
        consumer = self._consumer
        while self._heard and consumer is not None and not self.closed:
            frame, rate = self._heard.popleft()
            if frame is None:
                frame = _SILENCE
            elif rate != SAMPLE_RATE:
                resampler = self._to_16k.get(rate)
                if resampler is None:
                    resampler = self._to_16k[rate] = Resampler(rate, SAMPLE_RATE)
                frame = resampler.process(frame)
            try:
                consumer(frame)
            except Exception as exc:
                on_error, self._consumer, self._on_error = self._on_error, None, None
                if on_error is not None:
                    on_error(exc)
                return

    def play(self, pcm: np.ndarray, rate: int) -> None:
        if self.closed or not len(pcm):
            return
        if rate != SAMPLE_RATE:
            resampler = self._from_rate.get(rate)
            if resampler is None:
                resampler = self._from_rate[rate] = Resampler(rate, SAMPLE_RATE)
            pcm = resampler.process(pcm.astype(np.int16, copy=False))
        taken = self.speech.offer(pcm)
        if taken < len(pcm):
            refused = (len(pcm) - taken) * 1000 // SAMPLE_RATE
            if not self.speech_refused_ms:
                log.warning("agent speech beyond %d s of buffer dropped", SPEECH_BUFFER_MS // 1000)
            self.speech_refused_ms += refused

    def interrupt(self) -> None:
        self.speech.flush()
        self.last_interrupt = time.monotonic()

    def close(self) -> None:
        """Silence now, and end what the agent hears."""
        if self.closed:
            return
        self.closed = True
        self._consumer = self._on_error = None
        self._heard.clear()
        self.speech.flush()
        self.speech.close()


class AgentSession:
    """One provider client bridged to a leg or a room; also the client's `AgentLink`."""

    def __init__(
        self,
        client: AgentClient,
        audio: AgentAudio,
        publish: Callable[[LegOrRoomEvent], None],
        detach: Callable[[], None],
        on_end: Callable[[AgentSession], None],
    ) -> None:
        self.client = client
        self.provider = client.provider
        self.audio = audio
        self._publish = publish
        self._detach = detach
        self._on_end = on_end
        self.running = False  # connected and not ended: messages may be injected
        self.ended = False
        self._stop_reason: str | None = None
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"agent-{self.provider}"
        )

    async def _run(self) -> None:
        reason, error = "provider_closed", None
        try:
            await self.client.run(self)
        except asyncio.CancelledError:
            reason = self._stop_reason or "stopped"
        except AgentError as exc:
            reason, error = "error", str(exc) or f"{self.provider} agent failed"
        except Exception as exc:
            log.exception("%s agent failed", self.provider)
            reason, error = "error", f"{self.provider} agent failed: {type(exc).__name__}"
        finally:
            self._end(self._stop_reason or reason, error if self._stop_reason is None else None)

    def _end(self, reason: str, error: str | None) -> None:
        if self.ended:
            return
        self.ended = True
        self.running = False
        self.audio.close()
        self._detach()
        self._on_end(self)
        if error:
            log.warning("%s agent ended: %s", self.provider, error)
        else:
            log.info("%s agent ended (%s)", self.provider, reason)
        self._publish(AgentDisconnected(provider=self.provider, reason=reason, error=error))

    async def stop(self, reason: str) -> None:
        """End the session from our side: a goodbye to the provider (bounded), then the task
        is cancelled; the call is silent at once."""
        if self.ended or self._stop_reason is not None:
            return
        self._stop_reason = reason
        self.audio.close()
        if self.running:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(GOODBYE_TIMEOUT):
                    await self.client.goodbye()
        self.task.cancel()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(STOP_TIMEOUT):
                await asyncio.shield(self.task)
        if not self.ended:  # a client that ignores its cancellation still frees the call
            self._end(reason, None)

    async def inject(self, message: str) -> None:
        if not self.running:
            raise Conflict("the agent session is not running")
        try:
            await self.client.inject(message)
        except InjectionUnsupported as exc:
            raise NotSupported(str(exc)) from None
        except AgentError as exc:
            raise Conflict(f"the message could not be sent: {exc}") from None

    # ---- AgentLink ----

    def listen(
        self,
        consumer: HeardConsumer | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.audio.listen(consumer, on_error)

    def play(self, pcm: np.ndarray, rate: int) -> None:
        self.audio.play(pcm, rate)

    def interrupt(self) -> None:
        self.audio.interrupt()

    def connected(self, conversation_id: str | None) -> None:
        if self.ended:
            return
        self.running = True
        self._publish(AgentConnected(provider=self.provider, conversation_id=conversation_id))

    def user_transcript(self, text: str) -> None:
        if not self.ended:
            log.debug("%s agent heard: %s", self.provider, text)
            self._publish(AgentUserTranscript(text=text))

    def agent_response(self, text: str) -> None:
        if not self.ended:
            log.debug("%s agent said: %s", self.provider, text)
            self._publish(AgentResponse(text=text))


ClientFactory = Callable[[], AgentClient]


class AgentManager:
    def __init__(
        self,
        *,
        engine: MediaEngine,
        lifecycle: Lifecycle,
        rooms: RoomManager,
        find_leg: Callable[[str], Leg],
    ) -> None:
        self.engine = engine
        self.lifecycle = lifecycle
        self.rooms = rooms
        self._find_leg = find_leg
        self._legs: dict[str, AgentSession] = {}
        self._rooms: dict[str, AgentSession] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._pump = HeardPump()

    # ---- legs ----

    def start_leg(self, leg_id: str, make_client: ClientFactory) -> None:
        """404 unknown leg; 409 not connected, no media, or an agent already attached; then
        the client (503 without a key)."""
        leg = self._find_leg(leg_id)
        if leg.state is not LegState.CONNECTED:
            raise Conflict(f"leg is {leg.state.value}; an agent needs a connected leg")
        if leg.id in self._legs:
            raise Conflict(f"an agent is already attached to leg {leg.id}")
        if self.engine.get(leg.id) is None:
            raise Conflict(f"leg {leg.id} has no audio reader/writer yet")
        client = make_client()
        audio = AgentAudio(self._pump)
        ear = self.engine.add_leg_tap(leg.id, audio)
        voice = self.engine.add_leg_voice(leg.id, audio.speech)
        cleanup: list[Registration] = []

        def detach() -> None:
            ear.remove()
            voice.remove()
            for registration in cleanup:
                registration.cancel()

        session = AgentSession(
            client, audio, leg.publish, detach, lambda s: self._forget(self._legs, leg.id, s)
        )
        self._legs[leg.id] = session
        cleanup.append(self.lifecycle.on_leg_ended(leg.id, lambda: self._stop(session, "hangup")))

    def leg_session(self, leg_id: str) -> AgentSession:
        self._find_leg(leg_id)
        session = self._legs.get(leg_id)
        if session is None:
            raise NotFound(f"no agent attached to leg {leg_id}")
        return session

    async def stop_leg(self, leg_id: str) -> None:
        await self.leg_session(leg_id).stop("stopped")

    # ---- rooms ----

    def start_room(self, room_id: str, make_client: ClientFactory) -> None:
        room = self.rooms.get(room_id)
        if room.dropping:
            raise Conflict(f"room {room_id} is being deleted")
        if room_id in self._rooms:
            raise Conflict(f"an agent is already attached to room {room_id}")
        if room.empty:
            raise Conflict(f"room {room_id} has no participants")
        client = make_client()
        audio = AgentAudio(self._pump)
        key = f"agent-{room_id}"
        media = self.engine.attach(key, audio)
        self.engine.join_room(media, room_id)
        cleanup: list[Registration] = []

        def detach() -> None:
            self.engine.detach(key)
            for registration in cleanup:
                registration.cancel()

        session = AgentSession(
            client,
            audio,
            lambda event: self.rooms.publish(room, event),
            detach,
            lambda s: self._forget(self._rooms, room_id, s),
        )
        self._rooms[room_id] = session
        cleanup.append(
            self.lifecycle.on_room_dropped(room_id, lambda: self._stop(session, "room_deleted"))
        )
        cleanup.append(self.rooms.watch_emptied(room_id, lambda: self._stop(session, "room_empty")))

    def room_session(self, room_id: str) -> AgentSession:
        self.rooms.get(room_id)
        session = self._rooms.get(room_id)
        if session is None:
            raise NotFound(f"no agent attached to room {room_id}")
        return session

    async def stop_room(self, room_id: str) -> None:
        await self.room_session(room_id).stop("stopped")

    # ---- both ----

    @staticmethod
    def _forget(table: dict[str, AgentSession], key: str, session: AgentSession) -> None:
        if table.get(key) is session:
            del table[key]

    def _stop(self, session: AgentSession, reason: str) -> None:
        task = asyncio.get_running_loop().create_task(session.stop(reason))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        sessions = [*self._legs.values(), *self._rooms.values()]
        await asyncio.gather(*(s.stop("stopped") for s in sessions), return_exceptions=True)
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)
