"""The call service: owns every leg, creates SIP legs both ways, publishes their events.

The API layer calls only this object. It holds the registries and the rules of API-NOTES
(webhook routing, exactly one `leg.disconnected`, RTP and hold timeouts); media work is left to
the engine and the clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from callboard.config import Settings
from callboard.core.errors import BadRequest, NotFound, Unavailable
from callboard.core.leg import Leg, LegState, LegType
from callboard.core.recording import RecordingManager
from callboard.core.rooms import RoomManager
from callboard.core.sip_leg import SipLeg
from callboard.core.ws_participant import WsParticipants
from callboard.events.base import LegEvent, LegOrRoomEvent
from callboard.events.bus import Envelope, EventBus
from callboard.events.metrics import Metrics
from callboard.events.types import (
    Cdr,
    LegDisconnected,
    LegRinging,
    SpeakingStarted,
    SpeakingStopped,
)
from callboard.events.webhooks import WebhookTarget
from callboard.media.codecs import normalize_codec_name
from callboard.media.engine import MediaEngine
from callboard.media.speaking import SpeakingAnalyser
from callboard.rtp.ports import PortAllocator
from callboard.rtp.session import RtpSession
from callboard.sip.call_model import OutboundOptions
from callboard.sip.errors import SipParseError
from callboard.sip.grammar import is_token
from callboard.sip.message import SipRequest
from callboard.sip.ua import SipCall, SipUserAgent
from callboard.sip.uri import SipUri

log = logging.getLogger(__name__)

DEFAULT_CODECS = ("PCMU", "PCMA", "G722", "opus")
# Headers a user may not set on an outbound INVITE: the stack owns them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
        "Route",
        "Record-Route",
        "Authorization",
        "Proxy-Authorization",
        "Session-Expires",
        "Min-SE",
        "Supported",
        "Require",
    )
)
# Control characters other than HTAB never belong in a header field (CR/LF would split it).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
SWEEP_PERIOD = 1.0
ENDED_WEBHOOK_MEMORY = 4096


@dataclass(frozen=True)
class OutboundRequest:
    uri: str
    from_user: str | None = None
    privacy: str | None = None
    ring_timeout: int = 0
    max_duration: int = 0
    codecs: tuple[str, ...] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    auth_username: str | None = None
    auth_password: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    room_id: str | None = None
    accept_dtmf: bool = True
    app_id: str | None = None


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
        self.ports = PortAllocator(settings.rtp_port_min, settings.rtp_port_max)
        self.legs: dict[str, Leg] = {}
        # Webhooks of legs that just ended, for events still being routed after removal.
        self._ended_webhooks: OrderedDict[str, WebhookTarget | None] = OrderedDict()
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._speaking: dict[str, SpeakingAnalyser] = {}  # leg id -> its speaking detection
        self.rooms = RoomManager(self)
        self.recordings = RecordingManager(self)
        self.ws_participants = WsParticipants(self)
        ua.on_incoming = self._on_incoming_call
        metrics.set_gauge_sources(lambda: len(self.legs), lambda: len(self.rooms.rooms))

    # ---- lifecycle ----

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def shutdown(self) -> None:
        for leg in list(self.legs.values()):
            leg.hangup("api_hangup")
        for room in self.rooms.list():
            room.playbacks.stop_all()  # no download or decoder outlives the loop
        # Every leg ends at once when hung up (an unanswered outbound one too: its CANCEL
        # goes on in the background); release any that still did not.
        for leg in list(self.legs.values()):
            if isinstance(leg, SipLeg):
                leg._release("api_hangup")
        # Room recordings too: every file final and its recording.finished published.
        await self.recordings.close()
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

    def status(self, word: str, **extra: Any) -> dict[str, Any]:
        return {"instance_id": self.settings.instance_id, "status": word, **extra}

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

    # ---- leg bookkeeping ----

    def _register(self, leg: Leg) -> None:
        self.legs[leg.id] = leg
        self.metrics.leg_state(leg.type.value, leg.state.value)

    def attach_media(self, leg: Leg) -> None:
        endpoint = leg.endpoint()
        if endpoint is not None:
            media = self.engine.attach(leg.id, endpoint)
            media.muted, media.deaf = leg.muted, leg.deaf
            if leg.room_id and media.room is None:
                # Added to a room while still ringing: it enters the mix with its media.
                self.engine.join_room(media, leg.room_id)
            self._ensure_speaking_detection(leg)

    def media_flags_changed(self, leg: Leg) -> None:
        media = self.engine.get(leg.id)
        if media is not None:
            media.muted, media.deaf = leg.muted, leg.deaf
            speaking = self._speaking.get(leg.id)
            if leg.muted and speaking is not None:
                speaking.close()  # no speaking events while muted: close the open pair now

    def _speaking_changed(self, leg: Leg, change: str) -> None:
        event_class = SpeakingStarted if change == "started" else SpeakingStopped
        self.publish_leg_event(leg, event_class(room_id=leg.room_id or None))

    def media_ready(self, leg: Leg) -> None:
        """The leg reached early_media or connected: a pending room join happens now, and a
        connected leg gets speaking detection."""
        self._ensure_speaking_detection(leg)
        self.rooms.media_ready(leg)

    def _ensure_speaking_detection(self, leg: Leg) -> None:
        media = self.engine.get(leg.id)
        if media is not None and leg.state is LegState.CONNECTED and leg.id not in self._speaking:
            analyser = SpeakingAnalyser(partial(self._speaking_changed, leg))
            self.engine.add_analyser(leg.id, analyser)
            self._speaking[leg.id] = analyser

    def hold_changed(self, leg: Leg) -> None:
        """Hold state changed (rooms keep running; nothing to do for a lone leg)."""

    def leg_finished(self, leg: Leg, reason: str) -> None:
        """The one place a leg ends: state, media, the single leg.disconnected, metrics."""
        if leg.ended:
            return
        now = self.now()
        speaking = self._speaking.pop(leg.id, None)
        if speaking is not None:
            speaking.close()  # hung up mid-sentence: "stopped" while room_id is still set
        leg.playbacks.stop_all()
        self.recordings.leg_ended(leg)
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
        self._ended_webhooks[leg.id] = webhook
        while len(self._ended_webhooks) > ENDED_WEBHOOK_MEMORY:
            self._ended_webhooks.popitem(last=False)
        self.legs.pop(leg.id, None)
        self.publish_leg_event(leg, event)
        self.metrics.leg_ended(leg.type.value, reason, answered, total)
        log.info("leg %s ended: %s after %.1fs", leg.id, reason, total)

    async def open_rtp(self) -> RtpSession:
        """An RTP session bound to the next free port pair; 503 when the range is used up."""
        rtp = RtpSession(bind_ip=self.settings.sip_listen_ip, ports=self.ports)
        try:
            await rtp.open()
        except OSError as exc:
            raise Unavailable(f"no RTP port available: {exc}") from None
        return rtp

    # ---- outbound ----

    def validate_outbound(self, req: OutboundRequest) -> tuple[SipUri, tuple[str, ...]]:
        shown = _shorten(req.uri)
        try:
            uri = SipUri.parse(req.uri)
        except SipParseError as exc:
            raise BadRequest(f"invalid SIP URI {shown}: {_shorten(str(exc), 120)}") from None
        if not uri.host:
            raise BadRequest(f"invalid SIP URI {shown}: no host")
        if uri.host.startswith("[") and ":" not in self.settings.sip_listen_ip:
            raise BadRequest(f"cannot reach the IPv6 address in {shown}: SIP listens on IPv4")
        if uri.transport not in ("udp", "tcp"):
            raise BadRequest(f"unsupported SIP transport {uri.transport!r} (udp and tcp are)")
        if uri.scheme == "sips":
            raise BadRequest(f"sips: URIs need TLS, which this server does not offer: {shown}")
        if uri.headers:
            raise BadRequest(f"invalid SIP URI {shown}: no headers (?...) in a Request-URI")
        codecs: list[str] = []
        for name in req.codecs or DEFAULT_CODECS:
            try:
                codec = normalize_codec_name(name)
            except ValueError:
                raise BadRequest(
                    f"unknown codec {_shorten(name)} (supported: {', '.join(DEFAULT_CODECS)})"
                ) from None
            if codec not in codecs:
                codecs.append(codec)
        if not codecs:
            raise BadRequest("codecs must not be empty")
        for name, value in req.headers:
            if name.lower() in RESERVED_HEADERS:
                raise BadRequest(
                    f"header {_shorten(name)} is set by the server and cannot be overridden"
                )
            if not is_token(name) or _CONTROL_RE.search(value):
                raise BadRequest(f"invalid SIP header {_shorten(name)}")
        if req.from_user is not None and (
            not req.from_user
            or _CONTROL_RE.search(req.from_user)
            or any(c in req.from_user for c in ' <>@:;"')
        ):
            raise BadRequest(f"invalid from user part {_shorten(req.from_user)}")
        if req.privacy is not None and _CONTROL_RE.search(req.privacy):
            raise BadRequest("invalid privacy value")
        return uri, tuple(codecs)

    async def create_outbound(self, req: OutboundRequest) -> Leg:
        uri, codecs = self.validate_outbound(req)
        webhook = WebhookTarget(req.webhook_url, req.webhook_secret) if req.webhook_url else None
        leg = SipLeg(
            self,
            LegType.SIP_OUTBOUND,
            webhook=webhook,
            app_id=req.app_id,
            accept_dtmf=req.accept_dtmf,
        )
        leg.max_duration = req.max_duration
        leg.pending_room = req.room_id
        leg.dialed_uri = req.uri
        rtp = await self.open_rtp()
        leg.rtp = rtp
        call = self.ua.new_outbound_call(leg, rtp.local_port, codecs)
        leg.call = call
        self._register(leg)
        if req.ring_timeout > 0:
            call.set_ring_timeout(req.ring_timeout)
        options = OutboundOptions(
            uri=uri,
            from_user=req.from_user,
            privacy=req.privacy,
            headers=req.headers,
            codecs=codecs,
            auth_username=req.auth_username,
            auth_password=req.auth_password,
        )
        self._spawn(call.start_outbound(options))
        return leg

    # ---- inbound ----

    def _on_incoming_call(self, call: SipCall, request: SipRequest) -> None:
        """A new INVITE, already answered 180 by the call layer. The leg binds no RTP port
        until it is answered or sends early media (SipLeg._open_media), so ringing calls,
        and a scanner's junk INVITEs, cannot use up the port range; an unanswered one ends
        after INBOUND_RING_TIMEOUT with 480 and reason ring_timeout."""
        headers = _x_headers(request.headers.items())
        url = _header(headers, "X-Webhook-URL")
        webhook = None
        if url and url.startswith(("http://", "https://")):
            webhook = WebhookTarget(url, _header(headers, "X-Webhook-Secret"))
        app_id = _header(headers, "X-App-ID")
        leg = SipLeg(self, LegType.SIP_INBOUND, webhook=webhook, app_id=app_id)
        leg.sip_headers = headers
        leg.call = call
        call.listener = leg
        self._register(leg)
        if self.settings.inbound_ring_timeout > 0:
            leg.start_ring_timer(self.settings.inbound_ring_timeout)
        leg.publish(
            LegRinging(
                from_=str(request.from_addr.uri),
                to=str(request.to_addr.uri),
                sip_headers=leg.sip_headers or {},
            )
        )

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
            if not isinstance(leg, SipLeg):
                continue
            if leg.state is LegState.CONNECTED and not leg.held:
                last = leg.last_media_activity()
                if last is not None and now - last > self.settings.rtp_timeout:
                    log.info("leg %s: no RTP for %.0fs", leg.id, now - last)
                    leg.hangup("rtp_timeout")
            elif leg.held_since is not None and now - leg.held_since > self.settings.hold_timeout:
                leg.hangup("hold_timeout")


def _shorten(text: str, limit: int = 80) -> str:
    """User input echoed in an error, cut so a megabyte of it never lands in a log line."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _x_headers(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The X-* headers of an INVITE, names as the caller wrote them."""
    return {name: value for name, value in items if name.lower().startswith("x-")}


def _header(headers: dict[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None
