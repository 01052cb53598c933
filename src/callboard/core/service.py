"""The call service: the registry of legs, the host every leg reports to (`LegHost`), and
the wiring of the managers (rooms, recordings, WebSocket participants, speaking detection)
with the lifecycle hub. It holds the rules of API-NOTES that span legs: webhook routing,
exactly one `leg.disconnected`, the timeout sweep. Leg construction lives beside each
transport (`sip_legs.py`); media work is left to the engine and the clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from functools import partial
from typing import Any

from callboard.config import Settings
from callboard.core.agents import AgentManager
from callboard.core.amd import AnsweringMachineDetection
from callboard.core.errors import NotFound, Unavailable
from callboard.core.leg import Leg, LegState
from callboard.core.lifecycle import Lifecycle
from callboard.core.recording import RecordingManager
from callboard.core.rooms import RoomManager
from callboard.core.sip_legs import SipLegs
from callboard.core.speaking_detection import SpeakingDetection
from callboard.core.stt import SttManager
from callboard.core.webrtc_legs import WebRtcLegs
from callboard.core.ws_participant import WsParticipants
from callboard.events.base import LegEvent, LegOrRoomEvent
from callboard.events.bus import Envelope, EventBus
from callboard.events.metrics import Metrics
from callboard.events.types import (
    Cdr,
    LegDisconnected,
)
from callboard.events.webhooks import WebhookTarget
from callboard.media.engine import MediaEngine
from callboard.memory import collect_freelists, release_free_memory
from callboard.sip.ua import SipUserAgent
from callboard.speech.stt.service import SttService
from callboard.speech.tts.service import TtsService

log = logging.getLogger(__name__)

SWEEP_PERIOD = 1.0
# Seconds after the last leg ended at which memory is given back a second time: past the
# call router's LINGER (40 s), when the ended calls' SIP state is gone too.
IDLE_TRIM_AFTER_LINGER = 45.0
ENDED_WEBHOOK_MEMORY = 4096


class CallService:
    def __init__(
        self,
        settings: Settings,
        bus: EventBus,
        metrics: Metrics,
        ua: SipUserAgent,
        engine: MediaEngine,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.metrics = metrics
        self.ua = ua
        self.engine = engine
        self.legs: dict[str, Leg] = {}
        # Webhooks of legs that just ended, for events still being routed after removal.
        self._ended_webhooks: OrderedDict[str, WebhookTarget | None] = OrderedDict()
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # When the last leg ended (None while legs exist), and the idle trims still due.
        self._idle_since: float | None = 0.0
        self._trims_due: list[float] = []
        self.lifecycle = Lifecycle()
        self.rooms = RoomManager(
            engine=engine,
            bus=bus,
            lifecycle=self.lifecycle,
            find_leg=self.get_leg,
            default_rate=settings.default_sample_rate,
            max_rooms=settings.max_rooms,
        )
        self.recordings = RecordingManager(
            directory=settings.recording_dir,
            engine=engine,
            lifecycle=self.lifecycle,
            find_leg=self.get_leg,
            rooms=self.rooms,
        )
        self.ws_participants = WsParticipants(engine, self.rooms, self.lifecycle)
        self.speaking = SpeakingDetection(engine, self.lifecycle)
        self.amd = AnsweringMachineDetection(engine, self.lifecycle, self.rooms.media_ready)
        self.tts = TtsService(settings)
        self.stt = SttManager(
            engine=engine,
            lifecycle=self.lifecycle,
            rooms=self.rooms,
            find_leg=self.get_leg,
            service=SttService(settings),
        )
        self.agents = AgentManager(
            engine=engine, lifecycle=self.lifecycle, rooms=self.rooms, find_leg=self.get_leg
        )
        # Leg construction lives beside each transport.
        self.sip = SipLegs(
            self,
            ua,
            settings,
            register=self._register,
            spawn=self._spawn,
            hand_over=self.rooms.hand_over,
            admit=self.admit_leg,
        )
        self.webrtc = WebRtcLegs(
            self, settings, self.sip.ports, register=self._register, admit=self.admit_leg
        )
        metrics.set_gauge_sources(lambda: len(self.legs), lambda: len(self.rooms.rooms))

    # ---- lifecycle ----

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())
        await self.tts.warm_up()

    async def shutdown(self) -> None:
        for leg in list(self.legs.values()):
            leg.hangup("api_hangup")
        for room in self.rooms.list():
            room.playbacks.stop_all()  # no download or decoder outlives the loop
        # Every leg ends at once when hung up (an unanswered outbound one too: its CANCEL
        # goes on in the background).
        for leg in list(self.legs.values()):
            log.error("leg %s (%s) did not end on hang-up", leg.id, leg.type.value)
            leg.release("api_hangup")
        # Room recordings too: every file final and its recording.finished published.
        await self.recordings.close()
        await self.stt.close()
        await self.stt.service.aclose()
        await self.agents.close()
        await self.tts.aclose()
        if self._sweeper is not None:
            self._sweeper.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- events ----

    def publish_leg_event(self, leg: Leg, event: LegEvent | LegOrRoomEvent) -> Envelope:
        """An event about `leg`: it carries the leg's id, and its app_id when it has one."""
        return self.bus.publish(event, leg_id=leg.id, app_id=leg.app_id or None)

    def resolve_webhook(self, event: Envelope) -> WebhookTarget | None:
        """API-NOTES routing: the leg's webhook, else the room's, else the global one."""
        leg_id = event.get("leg_id")
        room_id = event.get("room_id")
        if leg_id:
            leg = self.legs.get(leg_id)
            target = leg.webhook if leg is not None else self._ended_webhooks.get(leg_id)
            if target is not None:
                return target
            if not room_id and leg is not None:
                room_id = leg.room_id
        if room_id:
            room = self.rooms.rooms.get(room_id)
            if room is not None and room.webhook is not None:
                return room.webhook
            if room is None and self.rooms.ended_webhooks.get(room_id) is not None:
                # A deleted room's late events (a recording finishing) still go to its hook.
                return self.rooms.ended_webhooks[room_id]
        return self._global_webhook()

    def _global_webhook(self) -> WebhookTarget | None:
        if self.settings.webhook_url:
            return WebhookTarget(self.settings.webhook_url, self.settings.webhook_secret)
        return None

    # ---- lookups ----

    def get_leg(self, leg_id: str) -> Leg:
        leg = self.legs.get(leg_id)
        if leg is None:
            raise NotFound(f"leg {leg_id} not found")
        return leg

    def list_legs(self) -> list[Leg]:
        return list(self.legs.values())

    def at_capacity(self) -> str | None:
        """Why no new leg can be taken (MAX_LEGS), or None."""
        limit = self.settings.max_legs
        if limit and len(self.legs) >= limit:
            return f"too many legs: MAX_LEGS ({limit}) reached"
        return None

    def admit_leg(self) -> None:
        """Unavailable (503) when a new leg would pass MAX_LEGS; running calls are untouched."""
        refusal = self.at_capacity()
        if refusal is not None:
            raise Unavailable(refusal)

    # ---- leg bookkeeping ----

    def _register(self, leg: Leg) -> None:
        self.legs[leg.id] = leg
        self.lifecycle.on_leg_ended(leg.id, partial(leg.playbacks.stop_all, "hangup"))
        self.metrics.leg_state(leg.type.value, leg.state.value)

    # ---- LegHost: what legs report ----

    def leg_state_changed(self, leg: Leg) -> None:
        self.metrics.leg_state(leg.type.value, leg.state.value)

    def attach_media(self, leg: Leg) -> None:
        """The leg's media endpoint exists: put it on the engine, with its flags and in the
        room it belongs to (a leg added to a room while still ringing enters the mix now)."""
        endpoint = leg.endpoint()
        if endpoint is None:
            return
        self.engine.attach(leg.id, endpoint)
        self.media_flags_changed(leg)
        self.rooms.sync_media(leg)
        self.speaking.ensure(leg)

    def media_flags_changed(self, leg: Leg) -> None:
        """The one place the engine's copy of a leg's muted/deaf flags is written."""
        media = self.engine.get(leg.id)
        if media is not None:
            media.muted, media.deaf = leg.muted, leg.deaf
        if leg.muted:
            self.speaking.muted(leg)

    def media_ready(self, leg: Leg) -> None:
        """The leg reached early_media or connected: a pending room join happens now, and a
        connected leg gets speaking detection."""
        self.speaking.ensure(leg)
        self.amd.media_ready(leg)  # a leg armed with AMD joins its room after the verdict
        self.rooms.media_ready(leg)

    def hold_changed(self, leg: Leg) -> None:
        """Hold state changed (rooms keep running; nothing to do for a lone leg)."""

    def dtmf_from_leg(self, leg: Leg, digit: str) -> None:
        self.rooms.broadcast_dtmf(leg, digit)

    def leg_finished(self, leg: Leg, reason: str) -> None:
        """The one place a leg ends: state, media, the single leg.disconnected, metrics."""
        if leg.ended:
            return
        now = self.now()
        # Whatever features attached to the leg (playbacks, a recording, speaking detection;
        # later STT, an agent, AMD) ends first, while the leg is still in its room and its
        # media on the engine.
        self.lifecycle.leg_ended(leg.id)
        # Where this leg's events go (its own webhook, else its room's), kept for the events
        # published after it has left its room and the registry.
        webhook = self.resolve_webhook({"leg_id": leg.id})
        self.rooms.leg_gone(leg)
        leg.set_state(LegState.HUNG_UP)
        leg.end_reason = reason
        leg.ended_at = now
        self.engine.detach(leg.id)
        total = now - leg.created_at
        answered = now - leg.answered_at if leg.answered_at is not None else 0.0
        cdr = Cdr(
            reason=reason,
            duration_total=round(total, 3),
            duration_answered=round(answered, 3),
        )
        event = LegDisconnected(leg_type=leg.type.value, cdr=cdr, quality=leg.quality())
        # Only a leg's or room's own hook needs remembering: the global one is found anyway,
        # and a flood of calls on it then leaves no trail of ended legs behind.
        if webhook is not None and webhook != self._global_webhook():
            self._ended_webhooks[leg.id] = webhook
            while len(self._ended_webhooks) > ENDED_WEBHOOK_MEMORY:
                self._ended_webhooks.popitem(last=False)
        self.legs.pop(leg.id, None)
        self.publish_leg_event(leg, event)
        self.metrics.leg_ended(leg.type.value, reason, answered, total)
        log.info("leg %s ended: %s after %.1fs", leg.id, reason, total)

    # ---- timeouts ----

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_PERIOD)
            try:
                self._sweep()
            except Exception:
                log.exception("leg sweep failed")

    def _sweep(self) -> None:
        now = self.now()
        for leg in list(self.legs.values()):
            reason = leg.timed_out(now)
            if reason is not None:
                leg.hangup(reason)
        # Idle again after calls: give the memory of the burst back (memory.py), at once and
        # again once the SIP layer has let go of the ended calls (they linger for late
        # retransmissions).
        if self.legs:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
            self._trims_due = [now, now + IDLE_TRIM_AFTER_LINGER]
        if self._trims_due and now >= self._trims_due[0] and not self.legs:
            self._trims_due.pop(0)
            collect_freelists()
            self._spawn(asyncio.to_thread(release_free_memory))
