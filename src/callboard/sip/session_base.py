"""The plumbing every INVITE session shares: identity, dialog, SDP, the ordered outbox of
effects and events, named timers on the router's timer queue, and request/response building.

Sans-IO: nothing here reads a clock or touches a socket. Every public entry point takes `now`
(seconds on the caller's monotonic clock) and only queues effects.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable

from callboard.sdp.negotiation import NegotiatedMedia, SdpSession
from callboard.sip.call_events import (
    CallEvent,
    Effect,
    Ended,
    SendRequest,
    SendResponse,
)
from callboard.sip.call_model import ALLOW, CallState, LocalIdentity
from callboard.sip.dialog import Dialog
from callboard.sip.headers import NameAddr, Via
from callboard.sip.message import SipRequest, generate_branch, make_response
from callboard.sip.timer_queue import TimerQueue
from callboard.sip.transaction import client_key
from callboard.sip.uri import SipUri

log = logging.getLogger(__name__)

Outbox = list[tuple["SessionBase", Effect | CallEvent]]


class SessionBase:
    def __init__(
        self,
        identity: LocalIdentity,
        *,
        outbound: bool,
        local_port: int,
        codecs: Iterable[str],
        call_id: str,
        local_tag: str,
        timer_queue: TimerQueue,
        outbox: Outbox,
        rng: random.Random,
    ) -> None:
        self.identity = identity
        self.outbound = outbound
        self.call_id = call_id
        self.local_tag = local_tag
        self.state = CallState.CALLING if outbound else CallState.INCOMING
        self.sdp = SdpSession(
            local_ip=identity.advertised_ip, local_port=local_port, codecs=list(codecs)
        )
        self.dialog: Dialog | None = None
        self.media: NegotiatedMedia | None = None
        self.end_reason: str | None = None
        self.timers: dict[str, int] = {}  # TimerOwner: name -> live heap entry
        self._timer_queue = timer_queue
        self._outbox = outbox
        self._rng = rng  # for the glare back-off; injected so tests can fix it
        self._now = 0.0  # the time of the entry point being handled
        self._transport = "udp"

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    # ---- output ------------------------------------------------------------------------

    def _emit(self, item: Effect | CallEvent) -> None:
        self._outbox.append((self, item))

    def _set_timer(self, name: str, when: float) -> None:
        self._timer_queue.schedule(self, name, when)

    def _cancel_timer(self, name: str) -> None:
        self._timer_queue.cancel(self, name)

    def _finish(self, reason: str) -> None:
        """End the call exactly once and tell the TU."""
        if self.state is CallState.ENDED:
            return
        self.state = CallState.ENDED
        self.end_reason = reason
        self._timer_queue.cancel_all(self)
        self._emit(Ended(reason))

    # ---- message building --------------------------------------------------------------

    def _via(self) -> Via:
        return Via(
            transport=self._transport.upper(),
            host=self.identity.advertised_ip,
            port=self.identity.port,
            params={"branch": generate_branch(), "rport": None},
        )

    def _contact(self) -> NameAddr:
        params: dict[str, str | None] = {"transport": "tcp"} if self._transport == "tcp" else {}
        uri = SipUri(
            user="callboard",
            host=self.identity.advertised_ip,
            port=self.identity.port,
            params=params,
        )
        return NameAddr(uri=uri)

    def _common_headers(self) -> list[tuple[str, str]]:
        return [("User-Agent", self.identity.user_agent), ("Allow", ALLOW)]

    def _send_in_dialog(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: Iterable[tuple[str, str]] = (),
    ) -> str | None:
        """Send a request inside the dialog; its client transaction key, or None without one."""
        dialog = self.dialog
        if dialog is None:
            return None
        request = dialog.create_request(
            method,
            via=self._via(),
            contact=self._contact() if method in ("INVITE", "UPDATE") else None,
            body=body,
            content_type=content_type,
            extra_headers=[*self._common_headers(), *extra],
        )
        return self._send_request(request, dialog)

    def _send_request(self, request: SipRequest, dialog: Dialog) -> str:
        host, port, transport = dialog.next_hop()
        key = client_key(request.top_via.branch or "", request.method)
        self._emit(SendRequest(request, host, port, transport, key))
        return key

    def _respond(
        self,
        status: int,
        body: bytes = b"",
        extra: Iterable[tuple[str, str]] = (),
        *,
        request: SipRequest,
        content_type: str = "application/sdp",
    ) -> None:
        headers: list[tuple[str, str]] = [*self._common_headers(), *extra]
        if 100 < status < 300 and request.method in ("INVITE", "UPDATE"):
            headers.append(("Contact", str(self._contact())))
        response = make_response(
            request,
            status,
            to_tag=self.local_tag,
            body=body,
            content_type=content_type if body else None,
            extra_headers=headers,
        )
        self._emit(SendResponse(response))
