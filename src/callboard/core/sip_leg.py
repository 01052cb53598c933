"""A leg carried by a SIP call and an RTP session."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

from callboard.core.errors import BadRequest, Conflict
from callboard.core.leg import Leg, LegHost, LegState, LegType, rtp_quality
from callboard.core.sip_transfer import OutgoingTransfer
from callboard.events.types import (
    LegConnected,
    LegEarlyMedia,
    LegHold,
    LegRinging,
    LegTransferRequested,
    LegUnhold,
    Quality,
)
from callboard.rtp.session import RtpSession
from callboard.sdp.negotiation import NegotiatedMedia
from callboard.sip.call_events import (
    Answered,
    CallEvent,
    DtmfReceived,
    EarlyMedia,
    Ended,
    HoldChanged,
    InDialogRequest,
    MediaChanged,
    RequestAnswered,
    RequestFailed,
    Ringing,
)
from callboard.sip.call_model import SipCallError
from callboard.sip.errors import SipParseError
from callboard.sip.message import SipRequest
from callboard.sip.refer import notify_headers, read_refer, sipfrag
from callboard.sip.ua import SipCall

if TYPE_CHECKING:
    from callboard.core.sip_referral import IncomingTransfer, SipReferrals
    from callboard.events.webhooks import WebhookTarget
    from callboard.media.engine import MediaEndpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SipTimeouts:
    rtp: float  # a connected, unheld leg with no RTP for this long ends (rtp_timeout)
    hold: float  # a leg held for this long ends (hold_timeout)
    transfer: float = 60.0  # our REFER's target has this long to answer (TRANSFER_TIMEOUT)


class DialWatcher(Protocol):
    """Follows an outbound leg dialled on someone's behalf (an accepted incoming REFER)."""

    def progress(self, status: int, reason: str) -> None: ...

    def answered(self, leg: SipLeg) -> None: ...

    def ended(self, leg: SipLeg, reason: str) -> str:
        """The leg ends with `reason`; returns the reason it ends with instead."""
        ...


class SipLeg(Leg):
    """Adapts a `SipCall` (signalling) and an `RtpSession` (media) to the leg model."""

    def __init__(
        self,
        host: LegHost,
        leg_type: LegType,
        *,
        open_rtp: Callable[[], Awaitable[RtpSession]],
        timeouts: SipTimeouts,
        webhook: WebhookTarget | None = None,
        app_id: str | None = None,
        accept_dtmf: bool = True,
        referrals: SipReferrals | None = None,
    ) -> None:
        super().__init__(host, leg_type, webhook=webhook, app_id=app_id, accept_dtmf=accept_dtmf)
        self._open_rtp = open_rtp
        self._timeouts = timeouts
        self._referrals = referrals  # None: incoming REFERs are declined
        self.call: SipCall | None = None
        self.rtp: RtpSession | None = None
        self.max_duration = 0
        self.dialed_uri: str | None = None  # outbound: the URI as the API caller gave it
        self.codec: str | None = None
        self._media_configured = False
        self._timers: list[asyncio.TimerHandle] = []
        self._hangup_requested: str | None = None
        self.held_since: float | None = None
        self._media_lock = asyncio.Lock()  # one RTP bind for concurrent answer requests
        self.transfer: OutgoingTransfer | None = None  # the last outgoing transfer
        self.incoming_transfer: IncomingTransfer | None = None  # the last accepted REFER
        self.dial_watcher: DialWatcher | None = None

    def endpoint(self) -> MediaEndpoint | None:
        return self.rtp if self._media_configured else None

    # ---- media ----

    def _apply_media(self, media: NegotiatedMedia) -> None:
        rtp = self.rtp
        if rtp is None:
            return
        rtp.configure(
            remote=(media.remote_ip, media.remote_port),
            remote_rtcp=media.remote_rtcp,
            codec=media.codec.name,
            payload_type=media.codec.payload_type,
            dtmf_payload_type=media.dtmf_payload_type,
        )
        direction = media.local_direction
        rtp.set_direction(
            send=direction in ("sendrecv", "sendonly"),
            receive=direction in ("sendrecv", "recvonly"),
        )
        self.codec = media.codec.name
        if not self._media_configured:
            self._media_configured = True
            rtp.on_dtmf = self.dtmf_received
            self.host.attach_media(self)

    # ---- CallListener ----

    def call_event(self, call: SipCall, event: CallEvent) -> None:
        match event:
            case Ringing():
                if self.type is LegType.SIP_OUTBOUND:
                    # Each only when known (an empty value is not sent either).
                    uri, caller = self.dialed_uri or None, call.invite_from or None
                    self.publish(LegRinging(uri=uri, from_=caller))
                if self.dial_watcher is not None:
                    self.dial_watcher.progress(180, "Ringing")
            case EarlyMedia(media):
                self._apply_media(media)
                self.set_state(LegState.EARLY_MEDIA)
                self.publish(LegEarlyMedia(leg_type=self.type.value))
                self.host.media_ready(self)
                if self.dial_watcher is not None:
                    self.dial_watcher.progress(183, "Session Progress")
            case Answered(media):
                self._apply_media(media)
                self._connected()
                if self.dial_watcher is not None:
                    self.dial_watcher.answered(self)
            case MediaChanged(media):
                self._apply_media(media)
            case HoldChanged(held):
                self._hold_changed(held)
            case DtmfReceived(digit):
                self.dtmf_received(digit)
            case Ended(reason):
                if self.transfer is not None:
                    self.transfer.cancel()
                self.release(self._hangup_requested or reason)
            case InDialogRequest(request) if request.method == "REFER":
                self._refer_received(call, request)
            case InDialogRequest(request) if request.method == "NOTIFY":
                if self.transfer is None:
                    call.respond(request, 481)  # no subscription of ours (RFC 6665)
                else:
                    self.transfer.notify(request, partial(call.respond, request))
            case InDialogRequest(request):
                # Only methods a feature asked for arrive here (SipCall.handle_in_dialog);
                # one that nothing answers is refused rather than left to time out.
                log.warning("leg %s: unhandled in-dialog %s", self.id, request.method)
                call.respond(request, 501)
            case RequestAnswered(key, response) if self._transfer_owns(key):
                assert self.transfer is not None
                self.transfer.refer_answered(response)
            case RequestFailed(key) if self._transfer_owns(key):
                assert self.transfer is not None
                self.transfer.refer_failed()
            case RequestAnswered() | RequestFailed():
                log.debug("leg %s: in-dialog request outcome %s", self.id, event)

    def start_transfer(self, target: str, replaced: SipLeg | None) -> None:
        """Send a REFER for `target` (attended: replacing `replaced`'s dialog); the outcome
        comes as events (core/sip_transfer.py). The caller checked the states."""
        if self.transfer is not None and not self.transfer.finished:
            raise Conflict("a transfer of this leg is already in progress")
        call = self.call
        assert call is not None and call.session.dialog is not None
        self.transfer = OutgoingTransfer(self, target, replaced, self._timeouts.transfer)
        self.transfer.start(referred_by=f"<{call.session.dialog.local_uri.uri}>")

    def _transfer_owns(self, key: str) -> bool:
        return self.transfer is not None and self.transfer.owns(key)

    def _refer_received(self, call: SipCall, request: SipRequest) -> None:
        """The far end asks us to call someone (RFC 3515). Refused unless SIP_REFER_AUTO_DIAL
        (core/sip_referral.py): dialing on a peer's word is a toll-fraud risk; the application
        hears of it and may act itself."""
        try:
            refer = read_refer(request)
        except SipParseError as exc:
            log.info("leg %s: bad REFER: %s", self.id, exc)
            call.respond(request, 400)
            return
        if self._referrals is not None:
            self._referrals.accept(self, call, request, refer)
            return
        log.info("leg %s: %s transfer to %s declined", self.id, refer.kind, refer.target_uri)
        call.respond(request, 603)
        self.publish(
            LegTransferRequested(
                kind=refer.kind,
                target=refer.target_uri,
                replaces_call_id=refer.replaces.call_id if refer.replaces else None,
                declined=True,
            )
        )

    def notify_referrer(self, status: int, reason: str, *, final: bool) -> None:
        """Tell the far end, which referred us, how our call to its target goes (a NOTIFY
        in the REFER's implicit subscription); nothing once our call is over."""
        call = self.call
        if self.ended or call is None or call.ended:
            return
        try:
            call.send_request(
                "NOTIFY",
                body=sipfrag(status, reason),
                content_type="message/sipfrag;version=2.0",
                headers=notify_headers(final),
            )
        except SipCallError as exc:
            log.info("leg %s: NOTIFY %d not sent: %s", self.id, status, exc)

    def _connected(self) -> None:
        loop = asyncio.get_running_loop()
        self.answered_at = self.host.now()
        self.set_state(LegState.CONNECTED)
        self.publish(LegConnected(leg_type=self.type.value))
        if self.max_duration > 0:
            self._timers.append(loop.call_later(self.max_duration, self.hangup, "max_duration"))
        self.host.media_ready(self)

    def _hold_changed(self, held: bool) -> None:
        if held == self.held:
            return
        self.held = held
        self.held_since = self.host.now() if held else None
        if self.state in (LegState.CONNECTED, LegState.HELD):
            self.set_state(LegState.HELD if held else LegState.CONNECTED)
        self.host.hold_changed(self)
        self.publish((LegHold if held else LegUnhold)(leg_type=self.type.value))

    # ---- operations ----

    def start_ring_timer(self, seconds: float) -> None:
        """Inbound: give up on the call (480, ring_timeout) if nobody answers in time."""
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_later(seconds, self._ring_timer_fired))

    def _ring_timer_fired(self) -> None:
        if self.state in (LegState.RINGING, LegState.EARLY_MEDIA):
            log.info("leg %s: unanswered after the inbound ring timeout", self.id)
            self.hangup("ring_timeout")

    async def _open_media(self) -> None:
        """Inbound: bind the RTP ports now, just before the first SDP we send needs them."""
        async with self._media_lock:
            if self.rtp is not None:
                return
            rtp = await self._open_rtp()
            if self.ended or self.call is None:
                rtp.close()
                raise Conflict("leg hung up while its media was being set up")
            self.rtp = rtp
            self.call.sdp.local_port = rtp.local_port

    async def answer(self) -> None:
        if self.type is not LegType.SIP_INBOUND:
            raise BadRequest("only sip_inbound legs can be answered")
        if self.state not in (LegState.RINGING, LegState.EARLY_MEDIA) or self.call is None:
            raise Conflict(f"leg is {self.state.value}, not ringing or early_media")
        await self._open_media()
        if self.state not in (LegState.RINGING, LegState.EARLY_MEDIA):
            raise Conflict(f"leg is {self.state.value}, not ringing or early_media")
        try:
            media = self.call.answer()
        except SipCallError as exc:
            raise Conflict(str(exc)) from None
        if media is not None:
            self._apply_media(media)
        self._connected()

    async def early_media(self) -> None:
        if self.type is not LegType.SIP_INBOUND:
            raise BadRequest("only sip_inbound legs can send early media")
        if self.state is not LegState.RINGING or self.call is None:
            raise Conflict(f"leg is {self.state.value}, not ringing")
        await self._open_media()
        if self.state is not LegState.RINGING:
            raise Conflict(f"leg is {self.state.value}, not ringing")
        try:
            media = self.call.early_media()
        except SipCallError as exc:
            raise Conflict(str(exc)) from None
        if media is not None:
            self._apply_media(media)
        self.set_state(LegState.EARLY_MEDIA)
        self.publish(LegEarlyMedia(leg_type=self.type.value))
        self.host.media_ready(self)

    def hold(self, on: bool) -> None:
        if self.call is None:
            raise Conflict("leg has no call")
        if on and self.call.held_by_us:
            raise Conflict("leg is already on hold")
        if on and self.held:
            raise Conflict("leg is on hold by the far end; only a connected leg can be held")
        if on and self.state is not LegState.CONNECTED:
            raise Conflict(f"leg is {self.state.value}; only a connected leg can be held")
        if not on and not self.call.held_by_us:
            raise Conflict("leg is not held")
        try:
            self.call.hold(on)
        except SipCallError as exc:
            raise Conflict(str(exc)) from None

    def send_dtmf(self, digits: str) -> None:
        digits = self.check_digits(digits)
        if self.rtp is None or not self._media_configured:
            raise Conflict(f"leg is {self.state.value} and has no media to send DTMF on")
        self.rtp.send_dtmf(digits)

    def hangup(self, reason: str = "api_hangup") -> None:
        if self.ended:
            return
        self._hangup_requested = self._hangup_requested or reason
        if self.call is not None and not self.call.ended:
            self.call.hangup(reason)
        self.release(reason)

    def reject(self, status: int, reason: str) -> None:
        """Refuse an unanswered inbound call with the final response `status`; `reason`
        becomes the disconnect reason."""
        call = self.call
        if self.ended or call is None:
            return
        self._hangup_requested = self._hangup_requested or reason
        call.reject(status, reason=reason)
        if not call.ended:
            call.hangup(reason)  # answered meanwhile: it ends with a BYE instead
        self.release(reason)

    def release(self, reason: str) -> None:
        if self.ended:
            return
        if self.dial_watcher is not None:
            reason = self.dial_watcher.ended(self, reason)
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self.host.leg_finished(self, reason)
        if self.rtp is not None:
            self.rtp.close()

    def quality(self) -> Quality | None:
        return rtp_quality(self.rtp.stats) if self.rtp is not None else None

    def last_media_activity(self) -> float | None:
        """loop.time() of the last RTP packet, else of the answer."""
        if self.rtp is not None and self.rtp.last_rtp_time is not None:
            return max(self.rtp.last_rtp_time, self.answered_at or 0.0)
        return self.answered_at

    def timed_out(self, now: float) -> str | None:
        if self.state is LegState.CONNECTED and not self.held:
            last = self.last_media_activity()
            if last is not None and now - last > self._timeouts.rtp:
                log.info("leg %s: no RTP for %.0fs", self.id, now - last)
                return "rtp_timeout"
        elif self.held_since is not None and now - self.held_since > self._timeouts.hold:
            return "hold_timeout"
        return None
