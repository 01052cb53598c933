"""One INVITE session, inbound or outbound (RFC 3261 13-15, RFC 3264): the initial INVITE
with digest auth and 422 retries, ringing, early media, answer, CANCEL, the ACK for 2xx, and
hang-up in every state. In-dialog requests and session timers come from `InDialogSession`.

Sans-IO: feed it messages and timers with the time, take effects and events from the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from callboard.sdp.description import SdpError
from callboard.sdp.negotiation import NegotiatedMedia, NegotiationError
from callboard.sip.auth import build_authorization, pick_challenge
from callboard.sip.call_events import (
    Answered,
    CancelInvite,
    EarlyMedia,
    Ringing,
    SendRequest,
    SendStateless,
)
from callboard.sip.call_model import CallState, OutboundOptions, SipCallError, failure_reason
from callboard.sip.dialog import Dialog
from callboard.sip.errors import SipParseError
from callboard.sip.headers import NameAddr
from callboard.sip.in_dialog import InDialogSession
from callboard.sip.message import SipRequest, SipResponse
from callboard.sip.transaction import TransactionTimeout, TransportFailure, client_key
from callboard.sip.uri import SipUri

log = logging.getLogger(__name__)


class InviteSession(InDialogSession):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # outbound
        self._options: OutboundOptions | None = None
        self._invite: SipRequest | None = None
        self._invite_tx: str | None = None
        self._dest: tuple[str, int] = ("", 0)
        self._auth_tried = False
        self._se_retried = False
        self._ack: SipRequest | None = None
        self._ringing_reported = False
        self.final_status: int | None = None  # the failure response that ended the INVITE
        # inbound
        self._request: SipRequest | None = None
        self._server_tx: str | None = None
        self._answer_sent: bytes | None = None

    @property
    def invite_from(self) -> str | None:
        """The From URI of our outbound INVITE; None before it is sent or for inbound calls."""
        return str(self._invite.from_addr.uri) if self._invite is not None else None

    # ---- input ------------------------------------------------------------------------------

    def receive_request(self, request: SipRequest, tx_key: str | None, *, now: float) -> None:
        """A request of this call: in-dialog, an ACK, or a CANCEL of our inbound INVITE."""
        self._now = now
        if self.state is CallState.ENDED:
            return
        if request.method == "ACK":
            if self.state is CallState.CONFIRMED:
                self._on_ack_with_answer(request)
        elif request.method == "CANCEL":
            if self.state in (CallState.INCOMING, CallState.EARLY):
                self._finish("caller_cancel")  # the transaction layer already answered 487
        else:
            self._receive_in_dialog(request)

    def receive_response(self, response: SipResponse, tx_key: str, *, now: float) -> None:
        self._now = now
        _, method = response.cseq
        if method == "INVITE" and tx_key == self._invite_tx:
            self._on_invite_response(response)
        elif self.state is not CallState.ENDED and self._receive_in_dialog_response(
            response, tx_key
        ):
            return
        elif method == "INVITE" and 200 <= response.status < 300:
            self._ack_late_reinvite_2xx(response, tx_key)

    def transaction_failed(
        self, event: TransactionTimeout | TransportFailure, *, now: float
    ) -> None:
        """A client transaction of ours got no final response, or its transport failed; or
        our inbound INVITE's 2xx was never ACKed."""
        self._now = now
        key = event.tx_key
        if key == self._invite_tx and self.state in (CallState.CALLING, CallState.EARLY):
            self._finish("invite_failed" if isinstance(event, TransportFailure) else "timeout")
        elif key == self._server_tx:
            no_ack = isinstance(event, TransactionTimeout) and event.kind == "no_ack"
            if no_ack and self.state is CallState.CONFIRMED:
                log.warning("call %s: no ACK for our 200", self.call_id)
                self._send_in_dialog("BYE")
                self._finish("timeout")
        elif self.state is not CallState.ENDED:
            self._in_dialog_request_failed(key)

    def on_timer(self, name: str, *, now: float) -> None:
        self._now = now
        if name == "ring":
            self.cancel("ring_timeout", now=now)
        elif name == "glare":
            self._retry_glare()
        elif name == "refresh":
            self._refresh_session()
        elif name == "expire":
            self._session_expired()

    # ---- outbound ---------------------------------------------------------------------------

    def start_outbound(
        self, options: OutboundOptions, dest: tuple[str, int], *, now: float
    ) -> None:
        """Send the INVITE to `dest`, the resolved address of `options.uri`."""
        self._now = now
        if self.state is CallState.ENDED:
            return
        self._options = options
        self._dest = dest
        self._transport = options.uri.transport if options.uri.transport == "tcp" else "udp"
        timers = self.identity.timers
        from_uri = SipUri(user=options.from_user or "callboard", host=self.identity.advertised_ip)
        to_uri = SipUri(
            scheme=options.uri.scheme,
            user=options.uri.user,
            host=options.uri.host,
            port=options.uri.port,
        )
        request = SipRequest("INVITE", options.uri)
        h = request.headers
        h.add("Via", str(self._via()))
        h.add("Max-Forwards", "70")
        h.add("From", str(NameAddr(uri=from_uri, params={"tag": self.local_tag})))
        h.add("To", str(NameAddr(uri=to_uri)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", str(self._contact()))
        for name, value in self._common_headers():
            h.add(name, value)
        h.add("Supported", "timer")
        h.add("Session-Expires", str(timers.session_expires))
        h.add("Min-SE", str(timers.min_se))
        if options.privacy:
            h.add("Privacy", options.privacy)
        for name, value in options.headers:
            h.add(name, value)
        h.add("Content-Type", "application/sdp")
        request.body = self.sdp.create_offer()
        self._send_invite(request)

    def _send_invite(self, request: SipRequest) -> None:
        self._invite = request
        self._invite_tx = client_key(request.top_via.branch or "", "INVITE")
        host, port = self._dest
        self._emit(SendRequest(request, host, port, self._transport, self._invite_tx))

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

    def set_ring_timeout(self, seconds: float, *, now: float) -> None:
        self._set_timer("ring", now + seconds)

    def cancel(self, reason: str, *, now: float) -> None:
        """Abandon an outbound call that has not been answered."""
        self._now = now
        if self.state not in (CallState.CALLING, CallState.EARLY) or not self.outbound:
            return
        if self._invite_tx is not None:
            # The transaction sends the CANCEL now, or on the first provisional response if
            # none came yet (RFC 3261 9.1), and sees the INVITE through in the background.
            self._emit(CancelInvite(self._invite_tx))
        # The call ends now, whatever the far end does: a peer that never answers the INVITE
        # or the CANCEL must not keep it ringing for Timer B. A 2xx that still comes is ACKed
        # and BYEd (_on_invite_ok).
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
        if self.state is not CallState.CALLING or response.status == 100:
            return
        if response.body and response.content_type == "application/sdp":
            try:
                media = self.sdp.receive_answer(response.body)
            except (SdpError, NegotiationError) as exc:
                log.warning("call %s: unusable SDP in %d: %s", self.call_id, response.status, exc)
                return
            self.state = CallState.EARLY
            self.media = media
            self._emit(EarlyMedia(media))
        elif not self._ringing_reported:
            self._ringing_reported = True
            self._emit(Ringing())

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
        elif self.state is not CallState.EARLY:
            log.warning("call %s: 2xx without SDP answer", self.call_id)
            self._send_in_dialog("BYE")
            self._finish("connect_failed")
            return
        self._cancel_timer("ring")
        self.state = CallState.CONFIRMED
        if media is not None:
            self.media = media
        assert self.media is not None
        self.session_timer.from_uac_response(response)
        self._arm_session_timer()
        self._emit(Answered(self.media))

    def _end_unwanted_dialog(self, response: SipResponse) -> None:
        """ACK a 2xx we do not want and BYE its dialog at once (RFC 3261 13.2.2.4)."""
        assert self._invite is not None
        dialog = Dialog.from_uac_response(self._invite, response)
        cseq, _ = self._invite.cseq
        ack = dialog.create_ack(cseq, via=self._via())
        if self.dialog is None:  # the call's only dialog: a retransmission is re-ACKed above
            self.dialog, self._ack = dialog, ack
        host, port, transport = dialog.next_hop()
        self._emit(SendStateless(ack, host, port, transport))
        bye = dialog.create_request("BYE", via=self._via(), extra_headers=self._common_headers())
        self._send_request(bye, dialog)

    def _send_ack_again(self) -> None:
        if self._ack is None or self.dialog is None:
            return
        host, port, transport = self.dialog.next_hop()
        self._emit(SendStateless(self._ack, host, port, transport))

    def _on_invite_failure(self, response: SipResponse) -> None:
        status = response.status
        if self.state not in (CallState.CALLING, CallState.EARLY):
            return
        opts = self._options
        can_auth = opts is not None and bool(opts.auth_username) and not self._auth_tried
        if status in (401, 407) and can_auth:
            assert opts is not None
            self._retry_with_credentials(response, opts)
            return
        if status == 422 and not self._se_retried:
            min_se = (response.headers.get("Min-SE") or "").split(";")[0].strip()
            if min_se.isdigit():
                self._se_retried = True
                self._resend_invite({"Session-Expires": min_se, "Min-SE": min_se})
                return
        self.final_status = status
        self._finish(failure_reason(status))

    def _retry_with_credentials(self, response: SipResponse, opts: OutboundOptions) -> None:
        status = response.status
        header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        try:
            challenge = pick_challenge(response.headers.get_all(header))
        except SipParseError as exc:
            log.warning("call %s: bad %s challenge: %s", self.call_id, status, exc)
            self._finish(failure_reason(status))
            return
        assert self._invite is not None and opts.auth_username is not None
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

    # ---- inbound ----------------------------------------------------------------------------

    def accept_incoming(self, request: SipRequest, server_tx: str | None, *, now: float) -> None:
        """Take ownership of an inbound INVITE: build the dialog and send 180 Ringing.
        Raises SipParseError/SdpError/NegotiationError/ValueError for an INVITE the dialog
        cannot be built from (nothing is sent then)."""
        self._now = now
        self._request = request
        self._server_tx = server_tx
        self._transport = request.top_via.transport.lower() if request.top_via else "udp"
        if self._transport not in ("udp", "tcp"):
            self._transport = "udp"
        self.dialog = Dialog.from_uas_request(request, self.local_tag)
        if request.body:
            self.media = self.sdp.receive_offer(request.body)
            self._offer_in_invite = True
        self._respond_invite(180)

    def _respond_invite(
        self, status: int, body: bytes = b"", extra: Iterable[tuple[str, str]] = ()
    ) -> None:
        assert self._request is not None
        self._respond(status, body, extra, request=self._request)

    def _local_sdp_for_incoming(self) -> bytes:
        return self.sdp.create_answer() if self._offer_in_invite else self.sdp.create_offer()

    def early_media(self, *, now: float) -> NegotiatedMedia | None:
        """Send 183 with SDP; the negotiated media if the INVITE had an offer."""
        self._now = now
        if self.state is not CallState.INCOMING:
            raise SipCallError("call is not ringing")
        body = self._local_sdp_for_incoming()
        self._answer_sent = body
        self._respond_invite(183, body)
        self.state = CallState.EARLY
        return self.media if self._offer_in_invite else None

    def answer(self, *, now: float) -> NegotiatedMedia | None:
        """Send 200 with SDP; the negotiated media if the INVITE had an offer (else it comes
        with the ACK, as MediaChanged)."""
        self._now = now
        if self.state not in (CallState.INCOMING, CallState.EARLY):
            raise SipCallError("call is not ringing")
        body = self._answer_sent or self._local_sdp_for_incoming()
        assert self._request is not None
        extra = self.session_timer.uas_headers(self._request)
        self._respond_invite(200, body, extra)
        self.state = CallState.CONFIRMED
        self._arm_session_timer()
        return self.media if self._offer_in_invite else None

    def reject(
        self,
        status: int,
        *,
        now: float,
        extra: Iterable[tuple[str, str]] = (),
        reason: str = "api_hangup",
    ) -> None:
        self._now = now
        if self.state not in (CallState.INCOMING, CallState.EARLY):
            return
        self._respond_invite(status, extra=extra)
        self._finish(reason)

    # ---- hang up ----------------------------------------------------------------------------

    def hangup(self, reason: str, *, now: float) -> None:
        """End the call from our side, whatever its state, with the given reason."""
        self._now = now
        if self.state is CallState.ENDED:
            return
        if self.outbound and self.state in (CallState.CALLING, CallState.EARLY):
            self.cancel(reason, now=now)
        elif not self.outbound and self.state in (CallState.INCOMING, CallState.EARLY):
            self._respond_invite(480 if reason == "ring_timeout" else 603)
            self._finish(reason)
        else:
            self._send_in_dialog("BYE")
            self._finish(reason)
