"""Requests inside an established dialog, both ways: re-INVITE (hold, unhold, glare, offer-less),
BYE, UPDATE, INFO (DTMF), RFC 4028 refreshes, and a general path for any other non-INVITE
request that the TU sends or asks to receive (REFER and NOTIFY will use it)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from callboard.sdp.description import SdpError
from callboard.sdp.negotiation import NegotiationError
from callboard.sip.call_events import (
    DtmfReceived,
    HoldChanged,
    InDialogRequest,
    MediaChanged,
    RequestAnswered,
    RequestFailed,
    SendStateless,
)
from callboard.sip.call_model import CallState, SipCallError
from callboard.sip.message import SipRequest, SipResponse
from callboard.sip.session_base import SessionBase
from callboard.sip.session_timer import SessionTimer

log = logging.getLogger(__name__)

_DTMF_RELAY = re.compile(r"^\s*signal\s*=\s*([0-9A-Da-d*#])\s*$", re.IGNORECASE | re.MULTILINE)
# RFC 3261 14.1: after a 491 the owner of the Call-ID (the side that sent the initial INVITE)
# waits 2.1-4 s, the other side 0-2 s, so that the two retries cannot cross again.
GLARE_RETRY_OWNER = (2.1, 4.0)
GLARE_RETRY_OTHER = (0.0, 2.0)


class InDialogSession(SessionBase):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_by_us = False
        self.held_by_remote = False
        self.session_timer = SessionTimer(self.identity.timers)
        # Methods whose in-dialog requests go to the TU as InDialogRequest events.
        self.tu_methods: set[str] = set()
        self._tu_requests: set[str] = set()  # client tx keys of requests the TU sent
        self._reinvite_tx: str | None = None
        self._reinvite_direction: str | None = None
        self._reinvite_is_refresh = False
        self._pending_server_reinvite: SipRequest | None = None
        # The ACK of the last re-INVITE 2xx, by its client tx key, with where it went: sent
        # again for each retransmission of that 2xx (RFC 3261 13.2.2.4).
        self._reinvite_ack: tuple[str, SipRequest, tuple[str, int, str]] | None = None
        self._offer_in_invite = False  # the initial INVITE (in either direction) had an offer

    @property
    def held(self) -> bool:
        return self.held_by_us or self.held_by_remote

    # ---- the TU's in-dialog operations ------------------------------------------------------

    def hold(self, on: bool, *, now: float) -> None:
        """Put the far end on hold (a=sendonly) or take it off (a=sendrecv) by re-INVITE."""
        self._now = now
        if self.state is not CallState.CONFIRMED:
            raise SipCallError("call is not connected")
        if self._reinvite_tx is not None:
            raise SipCallError("a re-INVITE is already in progress")
        self._cancel_timer("glare")
        self._send_reinvite("sendonly" if on else "sendrecv", refresh=False)

    def send_request(
        self,
        method: str,
        *,
        now: float,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> str:
        """Send a non-INVITE request in the dialog; its outcome comes back as RequestAnswered
        or RequestFailed with the returned transaction key."""
        self._now = now
        if method in ("INVITE", "ACK", "CANCEL") or self.state is not CallState.CONFIRMED:
            raise SipCallError(f"cannot send {method} in a {self.state.value} call")
        key = self._send_in_dialog(method, body, content_type, headers)
        assert key is not None  # a confirmed call has a dialog
        self._tu_requests.add(key)
        return key

    def respond(
        self,
        request: SipRequest,
        status: int,
        *,
        now: float,
        body: bytes = b"",
        content_type: str = "application/sdp",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Answer an InDialogRequest the TU received."""
        self._now = now
        self._respond(status, body, headers, request=request, content_type=content_type)

    # ---- requests from the far end --------------------------------------------------------

    def _receive_in_dialog(self, request: SipRequest) -> None:
        method = request.method
        if self.dialog is not None and not self.dialog.check_remote_cseq(request):
            self._respond(500, request=request, extra=[("Retry-After", "1")])
            return
        if method in self.tu_methods:
            self._emit(InDialogRequest(request))
        elif method == "BYE":
            self._respond(200, request=request)
            self._finish("remote_bye")
        elif method == "INVITE":
            if self.state is not CallState.CONFIRMED:
                self._respond(491, request=request)
            else:
                self._on_reinvite_request(request)
        elif method == "UPDATE":
            self._on_update(request)
        elif method == "INFO":
            self._respond(200, request=request)
            self._on_info(request)
        elif method == "OPTIONS":
            self._respond(200, request=request)
        elif method == "REFER":
            # Transfers by REFER stay off until explicitly enabled (toll-fraud risk).
            self._respond(403, request=request)
        else:
            self._respond(501, request=request)

    def _on_update(self, request: SipRequest) -> None:
        extra = self.session_timer.uas_headers(request)
        if request.body:
            body = self._take_offer(request)
            if body is None:
                return
            self._respond(200, body, extra, request=request)
            self._media_changed()
        else:
            self._respond(200, extra=extra, request=request)
        self._arm_session_timer()

    def _take_offer(self, request: SipRequest) -> bytes | None:
        """Apply the peer's offer in a re-INVITE or UPDATE and return our answer, which keeps
        our own hold; None once an unusable offer has been answered 488."""
        try:
            self.sdp.receive_offer(request.body)
        except (SdpError, NegotiationError) as exc:
            log.warning("call %s: unusable %s offer: %s", self.call_id, request.method, exc)
            self._respond(488, request=request)
            return None
        return self.sdp.create_answer(direction="sendonly" if self.held_by_us else None)

    def _media_changed(self) -> None:
        """Tell the TU the media our last answer settled, and the hold change it brings."""
        media = self.sdp.negotiated
        assert media is not None
        was_held = self.held
        self.media = media
        self.held_by_remote = media.on_hold_by_remote
        self._emit(MediaChanged(media))
        if was_held != self.held:
            self._emit(HoldChanged(self.held))

    def _on_info(self, request: SipRequest) -> None:
        ctype = request.content_type or ""
        if ctype not in ("application/dtmf-relay", "application/dtmf"):
            return
        text = request.body.decode("utf-8", "replace")
        match = _DTMF_RELAY.search(text) if ctype.endswith("relay") else None
        digit = match.group(1) if match else text.strip()[:1]
        if digit and digit.upper() in "0123456789*#ABCD":
            self._emit(DtmfReceived(digit.upper()))

    def _on_reinvite_request(self, request: SipRequest) -> None:
        if self._reinvite_tx is not None:
            self._respond(491, request=request)  # glare: ours is pending
            return
        extra = self.session_timer.uas_headers(request)
        if request.body:
            body = self._take_offer(request)
            if body is None:
                return
            self._respond(200, body, extra, request=request)
            self._media_changed()
        else:
            # Offer-less re-INVITE: our offer goes in the 200, the answer arrives in the ACK.
            direction = "sendonly" if self.held_by_us else "sendrecv"
            self._pending_server_reinvite = request
            self._respond(200, self.sdp.create_reoffer(direction=direction), extra, request=request)
        if self.dialog is not None:
            self.dialog.update_remote_target(request)
        self._arm_session_timer()

    def _on_ack_with_answer(self, request: SipRequest) -> None:
        """An ACK carrying SDP answers the offer we put in a 2xx (initial or re-INVITE)."""
        if not request.body or (self._pending_server_reinvite is None and self._offer_in_invite):
            return
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
        self._emit(MediaChanged(media))

    # ---- responses to our in-dialog requests ----------------------------------------------

    def _receive_in_dialog_response(self, response: SipResponse, tx_key: str) -> bool:
        """Handle the response if it belongs to an in-dialog request of ours."""
        if tx_key == self._reinvite_tx:
            self._on_reinvite_response(response, tx_key)
            return True
        if tx_key in self._tu_requests:
            if response.status >= 200:
                self._tu_requests.discard(tx_key)
                self._emit(RequestAnswered(tx_key, response))
            return True
        return False

    def _in_dialog_request_failed(self, tx_key: str) -> bool:
        if tx_key == self._reinvite_tx:
            self._reinvite_tx = None
            self._send_in_dialog("BYE")
            self._finish("session_expired" if self._reinvite_is_refresh else "timeout")
            return True
        if tx_key in self._tu_requests:
            self._tu_requests.discard(tx_key)
            self._emit(RequestFailed(tx_key))
            return True
        return False

    def _send_reinvite(self, direction: str, *, refresh: bool) -> None:
        self._reinvite_direction = direction
        self._reinvite_is_refresh = refresh
        self._reinvite_tx = self._send_in_dialog(
            "INVITE",
            self.sdp.create_reoffer(direction=direction),
            "application/sdp",
            self.session_timer.refresh_headers(),
        )

    def _on_reinvite_response(self, response: SipResponse, tx_key: str) -> None:
        if response.status < 200:
            return
        self._reinvite_tx = None
        if 200 <= response.status < 300:
            self._ack_reinvite(response, tx_key)
            # The 2xx fixes the interval and who refreshes from now on (RFC 4028 7.2, 10).
            self.session_timer.from_uac_response(response)
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
                self._emit(MediaChanged(media))
            self.held_by_us = self._reinvite_direction == "sendonly"
            self._emit(HoldChanged(self.held))
            self._arm_session_timer()
        elif response.status == 491:
            # Glare: try again after a random pause, unless the TU moves first. A refresh is
            # retried too: the far end need not retry its own request, which would have
            # refreshed the session.
            window = GLARE_RETRY_OWNER if self.outbound else GLARE_RETRY_OTHER
            when = self._now + self._rng.uniform(*window)
            self._set_timer("refresh" if self._reinvite_is_refresh else "glare", when)
        elif response.status in (408, 481):
            self._send_in_dialog("BYE")
            self._finish("session_expired" if self._reinvite_is_refresh else "timeout")

    def _ack_reinvite(self, response: SipResponse, tx_key: str) -> None:
        if self.dialog is None:
            return
        cseq, _ = response.cseq
        ack = self.dialog.create_ack(cseq, via=self._via())
        hop = self.dialog.next_hop()
        self._reinvite_ack = (tx_key, ack, hop)
        self._emit(SendStateless(ack, *hop))
        self.dialog.update_remote_target(response)

    def _ack_late_reinvite_2xx(self, response: SipResponse, tx_key: str) -> None:
        """A re-INVITE 2xx that changes nothing any more is still ACKed (RFC 3261 13.2.2.4):
        the first one after the call ended, or a copy because our ACK was lost."""
        if tx_key == self._reinvite_tx:
            self._reinvite_tx = None
            self._ack_reinvite(response, tx_key)
        elif self._reinvite_ack is not None and self._reinvite_ack[0] == tx_key:
            _, ack, hop = self._reinvite_ack
            self._emit(SendStateless(ack, *hop))

    def _retry_glare(self) -> None:
        if self.state is CallState.CONFIRMED and self._reinvite_tx is None:
            self._send_reinvite(self._reinvite_direction or "sendrecv", refresh=False)

    # ---- session timers (RFC 4028) --------------------------------------------------------

    def _arm_session_timer(self) -> None:
        if self.state is not CallState.CONFIRMED:
            return
        timer = self.session_timer.next_timer(self._now)
        if timer is None:
            return
        name, when = timer
        self._cancel_timer("expire" if name == "refresh" else "refresh")
        self._set_timer(name, when)

    def _refresh_session(self) -> None:
        if self.state is not CallState.CONFIRMED:
            return
        if self._reinvite_tx is not None:
            self._set_timer("refresh", self._now + 1.0)  # after the re-INVITE in progress
            return
        log.debug("call %s: session refresh sent", self.call_id)
        # An unanswered refresh times out its transaction: session_expired.
        self._send_reinvite("sendonly" if self.held_by_us else "sendrecv", refresh=True)

    def _session_expired(self) -> None:
        log.info("call %s: session timer expired", self.call_id)
        self._send_in_dialog("BYE")
        self._finish("session_expired")
