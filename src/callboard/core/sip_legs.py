"""SIP legs both ways, built beside their transport: validating and placing outbound calls,
turning each screened inbound INVITE into a ringing leg, and the RTP ports they bind."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from callboard.config import Settings
from callboard.core.errors import BadRequest, CallboardError, Unavailable
from callboard.core.leg import Leg, LegHost, LegState, LegType
from callboard.core.outbound import OutboundRequest
from callboard.core.rooms import Place
from callboard.core.sip_leg import DialWatcher, SipLeg, SipTimeouts
from callboard.core.sip_referral import HandOver, SipReferrals
from callboard.events.types import LegRinging
from callboard.events.webhooks import WebhookTarget
from callboard.media.codecs import normalize_codec_name
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


class SipLegs:
    """Creates SIP legs and hands each to `register` (the service's leg registry)."""

    def __init__(
        self,
        host: LegHost,
        ua: SipUserAgent,
        settings: Settings,
        *,
        register: Callable[[Leg], None],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        hand_over: HandOver,
        admit: Callable[[], None] = lambda: None,
    ) -> None:
        self.host = host
        self.ua = ua
        self.settings = settings
        self.ports = PortAllocator(settings.rtp_port_min, settings.rtp_port_max)
        self._register = register
        self._spawn = spawn
        self._hand_over = hand_over
        self._admit = admit  # raises when no new leg may be taken (MAX_LEGS)
        self._timeouts = SipTimeouts(
            rtp=settings.rtp_timeout,
            hold=settings.hold_timeout,
            transfer=settings.transfer_timeout,
        )
        self._referrals = (
            SipReferrals(self, hand_over=hand_over, spawn=spawn, timeout=settings.transfer_timeout)
            if settings.sip_refer_auto_dial
            else None
        )
        ua.on_incoming = self._on_incoming_call

    def _new_leg(
        self,
        leg_type: LegType,
        *,
        webhook: WebhookTarget | None,
        app_id: str | None,
        accept_dtmf: bool = True,
    ) -> SipLeg:
        return SipLeg(
            self.host,
            leg_type,
            open_rtp=self.open_rtp,
            timeouts=self._timeouts,
            webhook=webhook,
            app_id=app_id,
            accept_dtmf=accept_dtmf,
            referrals=self._referrals,
        )

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
        for credential in (req.auth_username, req.auth_password):
            if credential is not None and _CONTROL_RE.search(credential):
                raise BadRequest("auth username and password must not hold control characters")
        return uri, tuple(codecs)

    async def create_outbound(
        self, req: OutboundRequest, *, watcher: DialWatcher | None = None
    ) -> SipLeg:
        """A new outbound leg, dialling in the background; `watcher` follows its progress
        (a transfer we carry out)."""
        uri, codecs = self.validate_outbound(req)
        self._admit()
        webhook = WebhookTarget(req.webhook_url, req.webhook_secret) if req.webhook_url else None
        leg = self._new_leg(
            LegType.SIP_OUTBOUND, webhook=webhook, app_id=req.app_id, accept_dtmf=req.accept_dtmf
        )
        leg.max_duration = req.max_duration
        leg.pending_room = req.room_id
        leg.dialed_uri = req.uri
        rtp = await self.open_rtp()
        leg.rtp = rtp
        call = self.ua.new_outbound_call(leg, rtp.local_port, codecs)
        leg.call = call
        leg.dial_watcher = watcher
        call.handle_in_dialog("REFER", "NOTIFY")  # transfers both ways (sip_leg.py)
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
        after INBOUND_RING_TIMEOUT with 480 and reason ring_timeout.

        An INVITE whose Replaces names one of our connected calls (the router checked the
        dialog) is answered at once and takes that call's leg's place (attended transfer
        towards us); it inherits the leg's webhook and app_id unless it brings its own."""
        replaced = call.replaces.listener if call.replaces is not None else None
        if call.replaces is not None and not (
            isinstance(replaced, SipLeg) and replaced.state in (LegState.CONNECTED, LegState.HELD)
        ):
            call.reject(481, reason="connect_failed")
            return
        headers = _x_headers(request.headers.items())
        url = _header(headers, "X-Webhook-URL")
        webhook = None
        if url and url.startswith(("http://", "https://")):
            webhook = WebhookTarget(url, _header(headers, "X-Webhook-Secret"))
        app_id = _header(headers, "X-App-ID")
        if isinstance(replaced, SipLeg):
            webhook = webhook or replaced.webhook
            app_id = app_id or replaced.app_id
        leg = self._new_leg(LegType.SIP_INBOUND, webhook=webhook, app_id=app_id)
        leg.sip_headers = headers
        leg.call = call
        call.listener = leg
        call.handle_in_dialog("REFER", "NOTIFY")  # transfers both ways (sip_leg.py)
        self._register(leg)
        if self.settings.inbound_ring_timeout > 0:
            leg.start_ring_timer(self.settings.inbound_ring_timeout)
        leg.publish(
            LegRinging(
                from_=str(request.from_addr.uri),
                to=str(request.to_addr.uri),
                sip_headers=leg.sip_headers or {},
                replaces_leg_id=replaced.id if isinstance(replaced, SipLeg) else None,
            )
        )
        if isinstance(replaced, SipLeg):
            self._spawn(self._replace(replaced, leg))

    async def _replace(self, replaced: SipLeg, leg: SipLeg) -> None:
        """Answer `leg` and put it in `replaced`'s place, which then hangs up."""
        log.info("leg %s replaces leg %s (INVITE with Replaces)", leg.id, replaced.id)
        place = Place.of(replaced)
        try:
            await leg.answer()
        except CallboardError as exc:
            log.warning("leg %s: could not answer the replacing INVITE: %s", leg.id, exc)
            leg.reject(503, "connect_failed")
            return
        try:
            self._hand_over(place.now(replaced), leg)
        except CallboardError as exc:
            log.info("leg %s: the place of leg %s is gone: %s", leg.id, replaced.id, exc)
            leg.hangup("transfer_connect_failed")
            return
        replaced.hangup("transfer_completed")


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
