"""INVITE sessions: the dialog usages behind a SIP leg (RFC 3261 §13-15, RFC 4028, RFC 3264).

`SipUserAgent` owns the transport, routes every transaction event to the right `SipCall`, and
answers out-of-dialog requests itself. A `SipCall` drives one INVITE session in either
direction and reports what happens to a `CallListener` (the core's SIP leg). Media stays out of
here: the call only negotiates SDP and hands the result over.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from callboard.sdp.description import SdpError, SessionDescription
from callboard.sdp.negotiation import NegotiatedMedia, NegotiationError, SdpSession
from callboard.sip.auth import build_authorization, pick_challenge
from callboard.sip.dialog import Dialog
from callboard.sip.errors import SipParseError
from callboard.sip.headers import NameAddr, Via
from callboard.sip.message import (
    SipRequest,
    SipResponse,
    generate_branch,
    generate_call_id,
    generate_tag,
    make_response,
)
from callboard.sip.transaction import (
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
    TransportFailure,
    TxEvent,
)
from callboard.sip.transport import SipTransport
from callboard.sip.uri import SipUri

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
STATIC_PT_NAMES = {0: "PCMU", 8: "PCMA", 9: "G722"}

# Final responses to an INVITE we sent, mapped to the leg's disconnect reason (API-NOTES).
FAILURE_REASONS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    407: "unauthorized",
    408: "timeout",
    480: "unavailable",
    486: "busy",
    487: "cancelled",
    488: "not_acceptable",
    503: "service_unavailable",
    600: "busy",
    603: "declined",
}


def failure_reason(status: int) -> str:
    return FAILURE_REASONS.get(status, f"sip_{status}")


class CallState(enum.Enum):
    CALLING = "calling"  # outbound INVITE sent, no final response
    INCOMING = "incoming"  # inbound INVITE received, not answered
    EARLY = "early"  # 183 with SDP sent or received
    CONFIRMED = "confirmed"  # 2xx sent or received
    ENDED = "ended"


class CallListener(Protocol):
    """What the core's SIP leg hears from its call."""

    def call_ringing(self, call: SipCall) -> None: ...

    def call_early_media(self, call: SipCall, media: NegotiatedMedia) -> None: ...

    def call_answered(self, call: SipCall, media: NegotiatedMedia) -> None: ...

    def call_media_changed(self, call: SipCall, media: NegotiatedMedia) -> None: ...

    def call_hold_changed(self, call: SipCall) -> None: ...

    def call_dtmf(self, call: SipCall, digit: str) -> None: ...

    def call_ended(self, call: SipCall, reason: str) -> None: ...


@dataclass(frozen=True)
class OutboundOptions:
    uri: SipUri
    from_user: str | None = None
    privacy: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "G722", "opus")
    auth_username: str | None = None
    auth_password: str | None = None


@dataclass(frozen=True)
class TimerSettings:
    session_expires: int = 1800
    min_se: int = 90


class SipCallError(Exception):
    """A call operation that the call's state does not allow."""


def offered_codec_order(offer: bytes) -> list[str]:
    """The supported codecs of the first audio stream, in the offerer's preference order."""
    desc = SessionDescription.parse(offer)
    names: list[str] = []
    for media in desc.media:
        if media.media != "audio" or media.port == 0:
            continue
        rtpmaps = {}
        for value in media.attribute_values("rtpmap"):
            pt, _, rest = value.partition(" ")
            rtpmaps[pt] = rest.split("/")[0]
        for fmt in media.formats:
            name = rtpmaps.get(fmt) or STATIC_PT_NAMES.get(int(fmt) if fmt.isdigit() else -1)
            if not name:
                continue
            for supported in ("PCMU", "PCMA", "G722", "opus"):
                if name.lower() == supported.lower() and supported not in names:
                    names.append(supported)
        break
    return names


def _parse_session_expires(value: str | None) -> tuple[int, str | None] | None:
    if not value:
        return None
    head, *params = [p.strip() for p in value.split(";")]
    try:
        interval = int(head)
    except ValueError:
        return None
    refresher = None
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = val.strip().lower() or None
    return interval, refresher


def _option_tags(message: SipRequest | SipResponse, header: str) -> set[str]:
    tags: set[str] = set()
    for value in message.headers.get_all(header):
        tags.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tags


_DTMF_RELAY = re.compile(r"^\s*signal\s*=\s*([0-9A-Da-d*#])\s*$", re.IGNORECASE | re.MULTILINE)


class SipCall:
    """One INVITE session, inbound or outbound."""

    def __init__(
        self,
        ua: SipUserAgent,
        *,
        outbound: bool,
        listener: CallListener,
        local_port: int,
        codecs: Iterable[str],
        call_id: str,
        local_tag: str,
    ) -> None:
        self.ua = ua
        self.outbound = outbound
        self.listener = listener
        self.call_id = call_id
        self.local_tag = local_tag
        self.state = CallState.CALLING if outbound else CallState.INCOMING
        self.sdp = SdpSession(local_ip=ua.advertised_ip, local_port=local_port, codecs=list(codecs))
        self.dialog: Dialog | None = None
        self.media: NegotiatedMedia | None = None
        self.tx_keys: set[str] = set()
        self.held_by_us = False
        self.held_by_remote = False
        self.end_reason: str | None = None
        self._loop = asyncio.get_running_loop()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # outbound
        self._options: OutboundOptions | None = None
        self._invite: SipRequest | None = None
        self._invite_tx: str | None = None
        self._dest: tuple[str, int] = ("", 0)
        self._transport = "udp"
        self._auth_tried = False
        self._se_retried = False
        self._ack: SipRequest | None = None
        self._ringing_reported = False
        # inbound
        self._request: SipRequest | None = None
        self._server_tx: str | None = None
        self._offer_in_invite = False
        self._answer_sent: bytes | None = None
        # in-dialog INVITE transactions (hold, refresh)
        self._reinvite_tx: str | None = None
        self._reinvite_direction: str | None = None
        self._reinvite_is_refresh = False
        self._pending_server_reinvite: SipRequest | None = None
        # session timer (RFC 4028)
        self.session_interval: int | None = None
        self.we_refresh = False

    # ---- common helpers -------------------------------------------------------------------

    @property
    def held(self) -> bool:
        return self.held_by_us or self.held_by_remote

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    @property
    def invite_from(self) -> str | None:
        """The From URI of our outbound INVITE; None before it is sent or for inbound calls."""
        return str(self._invite.from_addr.uri) if self._invite is not None else None

    def _via(self) -> Via:
        return Via(
            transport=self._transport.upper(),
            host=self.ua.advertised_ip,
            port=self.ua.port,
            params={"branch": generate_branch(), "rport": None},
        )

    def _contact(self) -> NameAddr:
        params: dict[str, str | None] = {"transport": "tcp"} if self._transport == "tcp" else {}
        uri = SipUri(user="callboard", host=self.ua.advertised_ip, port=self.ua.port, params=params)
        return NameAddr(uri=uri)

    def _common_headers(self) -> list[tuple[str, str]]:
        return [("User-Agent", self.ua.user_agent), ("Allow", ALLOW)]

    def _set_timer(self, name: str, delay: float, fn: Callable[[], None]) -> None:
        self._cancel_timer(name)
        self._timers[name] = self._loop.call_later(delay, fn)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _finish(self, reason: str) -> None:
        """End the call exactly once and tell the listener."""
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        self.end_reason = reason
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self.ua._forget(self)
        try:
            self.listener.call_ended(self, reason)
        except Exception:
            log.exception("call listener failed on call_ended")

    def _send_in_dialog(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> str | None:
        dialog = self.dialog
        if dialog is None:
            return None
        headers = [*self._common_headers(), *extra]
        request = dialog.create_request(
            method,
            via=self._via(),
            contact=self._contact() if method in ("INVITE", "UPDATE") else None,
            body=body,
            content_type=content_type,
            extra_headers=headers,
        )
        host, port, transport = dialog.next_hop()
        try:
            dest = self.ua.resolve_now(host, port)
        except OSError:
            log.warning("call %s: cannot resolve next hop %s", self.call_id, host)
            return None
        key = self.ua.transport.send_request(request, dest, transport)
        self.ua._bind_tx(key, self)
        return key

    # ---- outbound -------------------------------------------------------------------------

    async def start_outbound(self, options: OutboundOptions) -> None:
        self._options = options
        self._transport = options.uri.transport if options.uri.transport == "tcp" else "udp"
        host, port = options.uri.host_port()
        try:
            self._dest = await self.ua.resolve(host, port)
        except OSError as exc:
            log.warning("call %s: cannot resolve %s: %s", self.call_id, host, exc)
            self._finish("invite_failed")
            return
        if self.state is CallState.ENDED:
            return
        from_uri = SipUri(user=options.from_user or "callboard", host=self.ua.advertised_ip)
        to_uri = SipUri(
            scheme=options.uri.scheme,
            user=options.uri.user,
            host=options.uri.host,
            port=options.uri.port,
        )
        from_addr = NameAddr(uri=from_uri, params={"tag": self.local_tag})
        request = SipRequest("INVITE", options.uri)
        h = request.headers
        h.add("Via", str(self._via()))
        h.add("Max-Forwards", "70")
        h.add("From", str(from_addr))
        h.add("To", str(NameAddr(uri=to_uri)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", str(self._contact()))
        for name, value in self._common_headers():
            h.add(name, value)
        h.add("Supported", "timer")
        h.add("Session-Expires", str(self.ua.timers.session_expires))
        h.add("Min-SE", str(self.ua.timers.min_se))
        if options.privacy:
            h.add("Privacy", options.privacy)
        for name, value in options.headers:
            h.add(name, value)
        h.add("Content-Type", "application/sdp")
        request.body = self.sdp.create_offer()
        self._send_invite(request)

    def _send_invite(self, request: SipRequest) -> None:
        self._invite = request
        self._invite_tx = self.ua.transport.send_request(request, self._dest, self._transport)
        self.ua._bind_tx(self._invite_tx, self)

    def _resend_invite(self, extra: dict[str, str]) -> None:
        """A new INVITE transaction for the same call (auth, 422): CSeq+1, new branch."""
        assert self._invite is not None
        request = SipRequest(
            "INVITE", self._invite.uri, self._invite.headers.copy(), self._invite.body
        )
        cseq, _ = request.cseq
        request.headers.set("CSeq", f"{cseq + 1} INVITE")
        request.headers.set("Via", str(self._via()))
        for name, value in extra.items():
            request.headers.set(name, value)
        self._send_invite(request)

    def set_ring_timeout(self, seconds: float) -> None:
        self._set_timer("ring", seconds, lambda: self.cancel("ring_timeout"))

    def cancel(self, reason: str) -> None:
        """Abandon an outbound call that has not been answered."""
        if self.state not in (CallState.CALLING, CallState.EARLY) or not self.outbound:
            return
        if self._invite_tx is not None:
            # The transaction sends the CANCEL now, or on the first provisional response if
            # none came yet (RFC 3261 9.1), and sees the INVITE through in the background.
            self.ua.transport.cancel_request(self._invite_tx)
        # The leg ends now, whatever the far end does: a peer that never answers the INVITE or
        # the CANCEL must not keep it ringing for Timer B. A 2xx that still comes is ACKed and
        # BYEd (_on_invite_ok).
        self._finish(reason)

    def _on_invite_response(self, response: SipResponse) -> None:
        status = response.status
        if status < 200:
            self._on_provisional(response)
        elif status < 300:
            self._on_invite_ok(response)
        else:
            self._on_invite_failure(response)

    def _on_provisional(self, response: SipResponse) -> None:
        if self.state not in (CallState.CALLING, CallState.EARLY) or response.status == 100:
            return
        if (
            response.body
            and response.content_type == "application/sdp"
            and self.state is CallState.CALLING
        ):
            try:
                media = self.sdp.receive_answer(response.body)
            except (SdpError, NegotiationError) as exc:
                log.warning("call %s: unusable SDP in %d: %s", self.call_id, response.status, exc)
                return
            self.state = CallState.EARLY
            self.media = media
            self.listener.call_early_media(self, media)
        elif not self._ringing_reported and self.state is CallState.CALLING:
            self._ringing_reported = True
            self.listener.call_ringing(self)

    def _on_invite_ok(self, response: SipResponse) -> None:
        assert self._invite is not None
        if self.state is CallState.CONFIRMED or self.state is CallState.ENDED:
            if self._ack is not None and self.dialog is not None and self.dialog.matches(response):
                self._send_ack_again()  # a retransmitted 2xx: our ACK was lost
            else:
                # A 2xx of an INVITE we gave up (the CANCEL crossed it, or none could be sent
                # yet), or another fork's: the far end thinks a call is up; confirm and end it.
                self._end_unwanted_dialog(response)
            return
        self.dialog = Dialog.from_uac_response(self._invite, response)
        cseq, _ = self._invite.cseq
        self._ack = self.dialog.create_ack(cseq, via=self._via())
        self._send_ack_again()
        media: NegotiatedMedia | None = None
        if response.body and response.content_type == "application/sdp":
            try:
                media = self.sdp.receive_answer(response.body)
            except (SdpError, NegotiationError) as exc:
                log.warning("call %s: unusable SDP answer: %s", self.call_id, exc)
                self._send_in_dialog("BYE")
                self._finish("connect_failed")
                return
        elif self.state is CallState.EARLY:
            media = None
        else:
            log.warning("call %s: 2xx without SDP answer", self.call_id)
            self._send_in_dialog("BYE")
            self._finish("connect_failed")
            return
        self._cancel_timer("ring")
        self.state = CallState.CONFIRMED
        if media is not None:
            self.media = media
        assert self.media is not None
        self._setup_session_timer_uac(response)
        self.listener.call_answered(self, self.media)

    def _end_unwanted_dialog(self, response: SipResponse) -> None:
        """ACK a 2xx we do not want and BYE its dialog at once (RFC 3261 13.2.2.4)."""
        assert self._invite is not None
        dialog = Dialog.from_uac_response(self._invite, response)
        cseq, _ = self._invite.cseq
        ack = dialog.create_ack(cseq, via=self._via())
        if self.dialog is None:  # the call's only dialog: a retransmission is re-ACKed above
            self.dialog, self._ack = dialog, ack
        host, port, transport = dialog.next_hop()
        try:
            dest = self.ua.resolve_now(host, port)
        except OSError:
            log.warning("call %s: cannot resolve %s to end an unwanted dialog", self.call_id, host)
            return
        self.ua.transport.send_stateless(ack, dest, transport)
        bye = dialog.create_request("BYE", via=self._via(), extra_headers=self._common_headers())
        self.ua._bind_tx(self.ua.transport.send_request(bye, dest, transport), self)

    def _send_ack_again(self) -> None:
        if self._ack is None or self.dialog is None:
            return
        host, port, transport = self.dialog.next_hop()
        try:
            dest = self.ua.resolve_now(host, port)
        except OSError:
            return
        self.ua.transport.send_stateless(self._ack, dest, transport)

    def _on_invite_failure(self, response: SipResponse) -> None:
        status = response.status
        if self.state not in (CallState.CALLING, CallState.EARLY):
            return
        opts = self._options
        if (
            status in (401, 407)
            and opts is not None
            and opts.auth_username
            and not self._auth_tried
        ):
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            try:
                challenge = pick_challenge(response.headers.get_all(header))
            except SipParseError as exc:
                log.warning("call %s: bad %s challenge: %s", self.call_id, status, exc)
                self._finish(failure_reason(status))
                return
            assert self._invite is not None
            credentials = build_authorization(
                challenge,
                method="INVITE",
                uri=str(self._invite.uri),
                username=opts.auth_username,
                password=opts.auth_password or "",
            )
            self._auth_tried = True
            name = "Authorization" if status == 401 else "Proxy-Authorization"
            self._resend_invite({name: credentials})
            return
        if status == 422 and not self._se_retried:
            min_se = response.headers.get("Min-SE")
            if min_se and min_se.split(";")[0].strip().isdigit():
                self._se_retried = True
                value = min_se.split(";")[0].strip()
                self._resend_invite({"Session-Expires": value, "Min-SE": value})
                return
        self._finish(failure_reason(status))

    # ---- inbound --------------------------------------------------------------------------

    def accept_incoming(self, request: SipRequest, server_tx: str | None) -> None:
        """Take ownership of an inbound INVITE: build the dialog and send 180 Ringing."""
        self._request = request
        self._server_tx = server_tx
        self._transport = request.top_via.transport.lower() if request.top_via else "udp"
        if self._transport not in ("udp", "tcp"):
            self._transport = "udp"
        self.dialog = Dialog.from_uas_request(request, self.local_tag)
        if request.body:
            self.media = self.sdp.receive_offer(request.body)
            self._offer_in_invite = True
        self._respond(180)

    def _respond(
        self,
        status: int,
        body: bytes = b"",
        extra: Iterable[tuple[str, str]] = (),
        request: SipRequest | None = None,
    ) -> None:
        req = request or self._request
        assert req is not None
        headers: list[tuple[str, str]] = [*self._common_headers(), *extra]
        if 100 < status < 300 and req.method in ("INVITE", "UPDATE"):
            headers.append(("Contact", str(self._contact())))
        response = make_response(
            req,
            status,
            to_tag=self.local_tag,
            body=body,
            content_type="application/sdp" if body else None,
            extra_headers=headers,
        )
        try:
            self.ua.transport.send_response(response)
        except KeyError:
            log.debug("call %s: transaction for %d already gone", self.call_id, status)

    def _local_sdp_for_incoming(self) -> bytes:
        if self._offer_in_invite:
            return self.sdp.create_answer()
        return self.sdp.create_offer()

    def early_media(self) -> NegotiatedMedia | None:
        if self.state is not CallState.INCOMING:
            raise SipCallError("call is not ringing")
        body = self._local_sdp_for_incoming()
        self._answer_sent = body
        self._respond(183, body)
        self.state = CallState.EARLY
        return self.media if self._offer_in_invite else None

    def answer(self) -> NegotiatedMedia | None:
        if self.state not in (CallState.INCOMING, CallState.EARLY):
            raise SipCallError("call is not ringing")
        body = self._answer_sent or self._local_sdp_for_incoming()
        assert self._request is not None
        extra = self._session_timer_uas_headers(self._request)
        self._respond(200, body, extra)
        self.state = CallState.CONFIRMED
        return self.media if self._offer_in_invite else None

    def reject(
        self, status: int, extra: Iterable[tuple[str, str]] = (), reason: str = "api_hangup"
    ) -> None:
        if self.state not in (CallState.INCOMING, CallState.EARLY):
            return
        self._respond(status, extra=extra)
        self._finish(reason)

    # ---- hang up --------------------------------------------------------------------------

    def hangup(self, reason: str) -> None:
        """End the call from our side with the given disconnect reason."""
        if self.state is CallState.ENDED:
            return
        if self.outbound and self.state in (CallState.CALLING, CallState.EARLY):
            self.cancel(reason)
            return
        if not self.outbound and self.state in (CallState.INCOMING, CallState.EARLY):
            self._respond(480 if reason == "ring_timeout" else 603)
            self._finish(reason)
            return
        self._send_in_dialog("BYE")
        self._finish(reason)

    # ---- hold / re-INVITE -----------------------------------------------------------------

    def hold(self, on: bool) -> None:
        if self.state is not CallState.CONFIRMED:
            raise SipCallError("call is not connected")
        if self._reinvite_tx is not None:
            raise SipCallError("a re-INVITE is already in progress")
        direction = "sendonly" if on else "sendrecv"
        body = self.sdp.create_reoffer(direction=direction)
        self._reinvite_direction = direction
        self._reinvite_is_refresh = False
        self._reinvite_tx = self._send_in_dialog(
            "INVITE", body, "application/sdp", self._session_timer_refresh_headers()
        )

    def _on_reinvite_response(self, response: SipResponse) -> None:
        if response.status < 200:
            return
        self._reinvite_tx = None
        if 200 <= response.status < 300:
            if self.dialog is not None:
                cseq, _ = response.cseq
                ack = self.dialog.create_ack(cseq, via=self._via())
                host, port, transport = self.dialog.next_hop()
                with contextlib.suppress(OSError):
                    self.ua.transport.send_stateless(
                        ack, self.ua.resolve_now(host, port), transport
                    )
                self.dialog.update_remote_target(response)
            if self._reinvite_is_refresh:
                self._arm_session_timer()
                return
            if response.body:
                try:
                    media = self.sdp.receive_answer(response.body)
                except (SdpError, NegotiationError) as exc:
                    log.warning("call %s: bad re-INVITE answer: %s", self.call_id, exc)
                    return
                self.media = media
                self.listener.call_media_changed(self, media)
            self.held_by_us = self._reinvite_direction == "sendonly"
            self.listener.call_hold_changed(self)
            self._arm_session_timer()
        elif response.status == 491 and not self._reinvite_is_refresh:
            # Glare (RFC 3261 14.1): try again after a random pause.
            direction = self._reinvite_direction == "sendonly"
            self._set_timer("glare", random.uniform(2.1, 4.0), lambda: self._retry_hold(direction))
        elif response.status in (408, 481):
            self._send_in_dialog("BYE")
            self._finish("session_expired" if self._reinvite_is_refresh else "timeout")

    def _retry_hold(self, on: bool) -> None:
        with contextlib.suppress(SipCallError):
            self.hold(on)

    def _on_reinvite_request(self, request: SipRequest) -> None:
        if self._reinvite_tx is not None:
            self._respond(491, request=request)
            return
        extra = self._session_timer_uas_headers(request)
        if request.body:
            try:
                media = self.sdp.receive_offer(request.body)
            except (SdpError, NegotiationError) as exc:
                log.warning("call %s: unusable re-INVITE offer: %s", self.call_id, exc)
                self._respond(488, request=request)
                return
            body = self.sdp.create_answer(direction="sendonly" if self.held_by_us else None)
            self._respond(200, body, extra, request=request)
            was_held = self.held_by_remote
            self.media = media
            self.held_by_remote = media.on_hold_by_remote
            self.listener.call_media_changed(self, media)
            if was_held != self.held_by_remote:
                self.listener.call_hold_changed(self)
        else:
            # Offer-less re-INVITE: our offer goes in the 200, the answer arrives in the ACK.
            direction = "sendonly" if self.held_by_us else "sendrecv"
            self._pending_server_reinvite = request
            self._respond(200, self.sdp.create_reoffer(direction=direction), extra, request=request)
        if self.dialog is not None:
            self.dialog.update_remote_target(request)
        self._arm_session_timer()

    def _on_ack(self, request: SipRequest) -> None:
        if request.body and (
            self._pending_server_reinvite is not None or not self._offer_in_invite
        ):
            try:
                media = self.sdp.receive_answer(request.body)
            except (SdpError, NegotiationError) as exc:
                log.warning("call %s: unusable SDP in ACK: %s", self.call_id, exc)
                self._send_in_dialog("BYE")
                self._finish("connect_failed")
                return
            self._pending_server_reinvite = None
            self._offer_in_invite = True
            self.media = media
            self.listener.call_media_changed(self, media)

    # ---- session timers (RFC 4028) --------------------------------------------------------

    def _setup_session_timer_uac(self, response: SipResponse) -> None:
        parsed = _parse_session_expires(response.headers.get("Session-Expires"))
        if parsed is None:
            return
        interval, refresher = parsed
        self.session_interval = interval
        self.we_refresh = refresher in (None, "uac")
        self._arm_session_timer()

    def _session_timer_uas_headers(self, request: SipRequest) -> list[tuple[str, str]]:
        parsed = _parse_session_expires(request.headers.get("Session-Expires"))
        supports = "timer" in _option_tags(request, "Supported")
        if parsed is None and not supports:
            return []
        refresher: str | None
        if parsed is None:
            interval, refresher = self.ua.timers.session_expires, "uac"
        else:
            interval, refresher = parsed
            interval = max(interval, self.ua.timers.min_se)
        if refresher is None:
            refresher = "uac" if supports else "uas"
        self.session_interval = interval
        # The UAC refreshes when it is named refresher; we are the UAS of this request.
        self.we_refresh = refresher == "uas"
        headers = [("Session-Expires", f"{interval};refresher={refresher}")]
        if supports:
            headers.append(("Require", "timer"))
        return headers

    def _session_timer_refresh_headers(self) -> list[tuple[str, str]]:
        if self.session_interval is None:
            return []
        refresher = "uac" if self.we_refresh else "uas"
        return [
            ("Supported", "timer"),
            ("Session-Expires", f"{self.session_interval};refresher={refresher}"),
        ]

    def _arm_session_timer(self) -> None:
        interval = self.session_interval
        if interval is None or self.state is not CallState.CONFIRMED:
            return
        if self.we_refresh:
            self._cancel_timer("expire")
            self._set_timer("refresh", interval / 2, self._refresh_session)
        else:
            self._cancel_timer("refresh")
            self._set_timer("expire", interval - min(32, interval / 3), self._session_expired)

    def _refresh_session(self) -> None:
        if self.state is not CallState.CONFIRMED:
            return
        if self._reinvite_tx is not None:
            self._set_timer("refresh", 1.0, self._refresh_session)
            return
        direction = "sendonly" if self.held_by_us else "sendrecv"
        log.debug("call %s: session refresh sent", self.call_id)
        self._reinvite_is_refresh = True
        self._reinvite_direction = direction
        self._reinvite_tx = self._send_in_dialog(
            "INVITE",
            self.sdp.create_reoffer(direction=direction),
            "application/sdp",
            self._session_timer_refresh_headers(),
        )
        # If the refresh itself gets no answer the transaction times out (-> session_expired).

    def _session_expired(self) -> None:
        log.info("call %s: session timer expired", self.call_id)
        self._send_in_dialog("BYE")
        self._finish("session_expired")

    # ---- in-dialog requests ---------------------------------------------------------------

    def on_request(self, event: RequestReceived) -> None:
        request = event.request
        method = request.method
        if method == "ACK":
            self._on_ack(request)
            return
        if method == "CANCEL":
            if self.state in (CallState.INCOMING, CallState.EARLY):
                self._finish("caller_cancel")
            return
        if self.dialog is not None and not self.dialog.check_remote_cseq(request):
            self._respond(500, request=request, extra=[("Retry-After", "1")])
            return
        if method == "BYE":
            self._respond(200, request=request)
            self._finish("remote_bye")
        elif method == "INVITE":
            if self.state is not CallState.CONFIRMED:
                self._respond(491, request=request)
            else:
                self._on_reinvite_request(request)
        elif method == "UPDATE":
            extra = self._session_timer_uas_headers(request)
            if request.body:
                try:
                    self.sdp.receive_offer(request.body)
                except (SdpError, NegotiationError):
                    self._respond(488, request=request)
                    return
                self._respond(200, self.sdp.create_answer(), extra, request=request)
            else:
                self._respond(200, extra=extra, request=request)
            self._arm_session_timer()
        elif method == "INFO":
            self._respond(200, request=request)
            ctype = request.content_type or ""
            if ctype in ("application/dtmf-relay", "application/dtmf"):
                text = request.body.decode("utf-8", "replace")
                match = _DTMF_RELAY.search(text) if ctype.endswith("relay") else None
                digit = match.group(1) if match else text.strip()[:1]
                if digit and digit.upper() in "0123456789*#ABCD":
                    self.listener.call_dtmf(self, digit.upper())
        elif method == "OPTIONS":
            self._respond(200, request=request)
        elif method == "REFER":
            # Transfers by REFER stay off until explicitly enabled (toll-fraud risk).
            self._respond(403, request=request)
        else:
            self._respond(501, request=request)

    def on_response(self, event: ResponseReceived) -> None:
        response = event.response
        _, method = response.cseq
        if method == "INVITE" and event.tx_key == self._invite_tx:
            self._on_invite_response(response)
        elif method == "INVITE" and event.tx_key == self._reinvite_tx:
            self._on_reinvite_response(response)
        elif method == "INVITE" and 200 <= response.status < 300 and self._ack is not None:
            # 2xx retransmission for an earlier INVITE transaction: re-ACK it.
            self._send_ack_again()

    def on_timeout(self, event: TransactionTimeout | TransportFailure) -> None:
        key = event.tx_key
        if key == self._invite_tx and self.state in (CallState.CALLING, CallState.EARLY):
            failed = isinstance(event, TransportFailure)
            self._finish("invite_failed" if failed else "timeout")
        elif key == self._server_tx and isinstance(event, TransactionTimeout):
            if event.kind == "no_ack" and self.state is CallState.CONFIRMED:
                log.warning("call %s: no ACK for our 200", self.call_id)
                self._send_in_dialog("BYE")
                self._finish("timeout")
        elif key == self._reinvite_tx:
            self._reinvite_tx = None
            self._send_in_dialog("BYE")
            self._finish("session_expired" if self._reinvite_is_refresh else "timeout")


class IncomingCallHandler(Protocol):
    def __call__(self, call: SipCall, request: SipRequest) -> None: ...


class SipUserAgent:
    """Owns the SIP transport; routes transaction events to calls; answers what no call owns."""

    def __init__(
        self,
        *,
        listen_ip: str,
        advertised_ip: str,
        port: int,
        user_agent: str = "callboard",
        timers: TimerSettings | None = None,
    ) -> None:
        self.advertised_ip = advertised_ip
        self.user_agent = user_agent
        self.timers = timers or TimerSettings()
        self.layer = TransactionLayer()
        self.transport = SipTransport(self.layer, self._on_events, listen_ip=listen_ip, port=port)
        self.on_incoming: IncomingCallHandler | None = None
        self._calls: dict[tuple[str, str], SipCall] = {}
        self._by_tx: dict[str, SipCall] = {}
        self._resolved: dict[tuple[str, int], tuple[str, int]] = {}

    @property
    def port(self) -> int:
        return self.transport.port

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    @property
    def calls(self) -> list[SipCall]:
        return list(self._calls.values())

    # ---- name resolution (cached; the media path never waits on it) ----

    async def resolve(self, host: str, port: int) -> tuple[str, int]:
        key = (host, port)
        if key in self._resolved:
            return self._resolved[key]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=2)  # SOCK_DGRAM
        if not infos:
            raise OSError(f"cannot resolve {host}")
        addr = infos[0][4]
        result = (str(addr[0]), int(addr[1]))
        self._resolved[key] = result
        return result

    def resolve_now(self, host: str, port: int) -> tuple[str, int]:
        """Resolve without waiting: literal IPs, or names resolved before for this call."""
        cached = self._resolved.get((host, port))
        if cached is not None:
            return cached
        import ipaddress

        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise OSError(f"{host} was not resolved in advance") from None
        return (host, port)

    # ---- call registry ----

    def new_outbound_call(
        self, listener: CallListener, local_port: int, codecs: Iterable[str]
    ) -> SipCall:
        call = SipCall(
            self,
            outbound=True,
            listener=listener,
            local_port=local_port,
            codecs=codecs,
            call_id=generate_call_id(self.advertised_ip),
            local_tag=generate_tag(),
        )
        self._calls[(call.call_id, call.local_tag)] = call
        return call

    def _bind_tx(self, key: str, call: SipCall) -> None:
        self._by_tx[key] = call
        call.tx_keys.add(key)

    def _forget(self, call: SipCall) -> None:
        self._calls.pop((call.call_id, call.local_tag), None)
        # Late responses (the 200 to our BYE, a crossed 2xx) still route for a while.
        asyncio.get_running_loop().call_later(40.0, self._unbind_all, call)

    def _unbind_all(self, call: SipCall) -> None:
        for key in call.tx_keys:
            if self._by_tx.get(key) is call:
                del self._by_tx[key]
        call.tx_keys.clear()

    # ---- event dispatch ----

    def _on_events(self, events: list[TxEvent]) -> None:
        for event in events:
            try:
                self._dispatch(event)
            except Exception:
                log.exception("SIP event handling failed for %s", type(event).__name__)

    def _dispatch(self, event: TxEvent) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, ResponseReceived):
            call = self._by_tx.get(event.tx_key)
            if call is not None:
                call.on_response(event)
                # An ended call keeps its INVITE transaction until _unbind_all: a 2xx may still
                # be retransmitted, or come from another fork.
                _, method = event.response.cseq
                if event.response.status >= 200 and call.ended and method != "INVITE":
                    self._by_tx.pop(event.tx_key, None)
            elif 200 <= event.response.status < 300 and event.response.cseq[1] == "INVITE":
                self._log_stray_2xx(event.response)
        else:
            call = self._by_tx.pop(event.tx_key, None)
            if call is not None:
                call.on_timeout(event)

    def _log_stray_2xx(self, response: SipResponse) -> None:
        """A 2xx for an INVITE whose call is gone. A call keeps routing its own late 2xx (it
        ACKs and BYEs a 2xx that crossed its CANCEL) for 40 s after ending; past that the
        INVITE is unknown and the far end's Timer H ends its side."""
        log.debug("stray 2xx for %s", response.call_id)

    def _on_request(self, event: RequestReceived) -> None:
        request = event.request
        to_tag = request.to_addr.tag
        if request.method == "CANCEL":
            call = self._by_tx.get(event.tx_key or "")
            if call is not None:
                call.on_request(event)
            return
        if to_tag:
            call = self._calls.get((request.call_id, to_tag))
            if call is None:
                if request.method != "ACK":
                    self._reply(request, 481)
                return
            call.on_request(event)
            return
        if request.method == "INVITE":
            self._on_new_invite(event)
        elif request.method == "OPTIONS":
            self._reply(request, 200, [("Accept", "application/sdp")])
        elif request.method == "ACK":
            return
        elif request.method in ("BYE", "INFO", "UPDATE", "PRACK", "NOTIFY", "REFER"):
            self._reply(request, 481)
        else:
            self._reply(request, 405)

    def _reply(
        self, request: SipRequest, status: int, extra: Iterable[tuple[str, str]] = ()
    ) -> None:
        headers = [("User-Agent", self.user_agent), ("Allow", ALLOW), *extra]
        response = make_response(request, status, to_tag=generate_tag(), extra_headers=headers)
        try:
            self.transport.send_response(response)
        except KeyError:
            log.debug("no transaction for %s %d", request.method, status)

    def _on_new_invite(self, event: RequestReceived) -> None:
        request = event.request
        if request.body:
            if request.content_type != "application/sdp":
                self._reply(request, 415, [("Accept", "application/sdp")])
                return
            try:
                codecs = offered_codec_order(request.body)
                if not codecs:
                    raise NegotiationError("no supported audio codec offered")
                # Validate fully now so that a bad offer never creates a leg.
                SdpSession(local_ip=self.advertised_ip, local_port=9, codecs=codecs).receive_offer(
                    request.body
                )
            except SdpError as exc:
                log.info("INVITE %s with malformed SDP: %s", request.call_id, exc)
                self._reply(
                    request, 400, [("Warning", f'399 callboard "Bad SDP: {str(exc)[:80]}"')]
                )
                return
            except NegotiationError as exc:
                log.info("INVITE %s: %s", request.call_id, exc)
                self._reply(request, 488, [("Warning", '304 callboard "Media type not available"')])
                return
        else:
            codecs = ["PCMU", "PCMA", "G722", "opus"]
        se = _parse_session_expires(request.headers.get("Session-Expires"))
        if se is not None and se[0] < self.timers.min_se:
            self._reply(request, 422, [("Min-SE", str(self.timers.min_se))])
            return
        handler = self.on_incoming
        if handler is None:
            self._reply(request, 503)
            return
        call = SipCall(
            self,
            outbound=False,
            listener=_NullListener(),
            local_port=9,
            codecs=codecs,
            call_id=request.call_id,
            local_tag=generate_tag(),
        )
        if event.tx_key is not None:
            self._bind_tx(event.tx_key, call)
        try:
            call.accept_incoming(request, event.tx_key)
        except (SipParseError, SdpError, NegotiationError, ValueError) as exc:
            # A header the dialog needs (Contact, Record-Route, CSeq) does not parse: refuse
            # the INVITE before anything is allocated for it.
            log.info("INVITE %s refused: %s", request.call_id, exc)
            self._unbind_all(call)
            self._reply(request, 400, [("Warning", f'399 callboard "{_warning_text(exc)}"')])
            return
        self._calls[(call.call_id, call.local_tag)] = call
        try:
            handler(call, request)
        except Exception:
            log.exception("INVITE %s: call set-up failed", request.call_id)
            call.reject(500, reason="connect_failed")


class _NullListener:
    """Placeholder listener until the core attaches the leg (a few microseconds later)."""

    def call_ringing(self, call: SipCall) -> None:
        pass

    def call_early_media(self, call: SipCall, media: NegotiatedMedia) -> None:
        pass

    def call_answered(self, call: SipCall, media: NegotiatedMedia) -> None:
        pass

    def call_media_changed(self, call: SipCall, media: NegotiatedMedia) -> None:
        pass

    def call_hold_changed(self, call: SipCall) -> None:
        pass

    def call_dtmf(self, call: SipCall, digit: str) -> None:
        pass

    def call_ended(self, call: SipCall, reason: str) -> None:
        pass


def _warning_text(exc: Exception) -> str:
    """An error fit for a Warning header's quoted text: one line, no quotes, short."""
    return str(exc).replace('"', "'").replace("\r", " ").replace("\n", " ")[:80]
