"""The sans-IO user agent core: routes transaction events to INVITE sessions, answers what no
session owns, screens new INVITEs, and turns the sessions' effects into transaction-layer
actions with resolved addresses. The asyncio adapter (`ua.py`) feeds it events and the time and
carries out what `pop_actions()` returns; unit tests do the same on a fake clock."""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass

from callboard.sdp.description import SdpError
from callboard.sdp.negotiation import NegotiationError
from callboard.sip.call_events import (
    CallEvent,
    CancelInvite,
    Effect,
    Ended,
    SendRequest,
    SendResponse,
    SendStateless,
)
from callboard.sip.call_model import ALLOW, CallState, LocalIdentity
from callboard.sip.errors import SipParseError
from callboard.sip.invite_screen import Refusal, screen_invite, warning_text
from callboard.sip.invite_session import InviteSession
from callboard.sip.message import (
    SipRequest,
    generate_call_id,
    generate_tag,
    make_response,
)
from callboard.sip.refer import parse_replaces
from callboard.sip.session_base import Outbox
from callboard.sip.timer_queue import TimerQueue
from callboard.sip.transaction import (
    RequestReceived,
    ResponseReceived,
    TransportFailure,
    TxEvent,
    is_client_key,
)

log = logging.getLogger(__name__)

# How long an ended call that sent an INVITE still routes late responses (a 2xx that crossed
# its CANCEL, a retransmitted 2xx of a re-INVITE) to itself: past Timer B (32 s).
LINGER = 40.0
_UNBIND = "unbind"  # the router's own timer on an ended session


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new INVITE, screened and answered 180; the TU attaches a leg to `session`. With
    `replaces`, it asks to take the place of that confirmed call of ours (RFC 3891)."""

    session: InviteSession
    request: SipRequest
    replaces: InviteSession | None = None


@dataclass(frozen=True, slots=True)
class SessionEvent:
    session: InviteSession
    event: CallEvent


WireAction = SendRequest | SendResponse | SendStateless | CancelInvite
Action = WireAction | SessionEvent | IncomingCall


class CallRouter:
    def __init__(self, identity: LocalIdentity, rng: random.Random | None = None) -> None:
        self.identity = identity
        self.rng = rng or random.Random()
        self.accept_calls = False  # answer new INVITEs 503 until the TU is ready
        self.timer_queue = TimerQueue()
        self.outbox: Outbox = []
        self._actions: list[Action] = []
        self._calls: dict[tuple[str, str], InviteSession] = {}
        self._by_tx: dict[str, InviteSession] = {}
        self._tx_keys: dict[InviteSession, set[str]] = {}
        self._resolved: dict[tuple[str, int], tuple[str, int]] = {}

    @property
    def calls(self) -> list[InviteSession]:
        return list(self._calls.values())

    # ---- sessions ---------------------------------------------------------------------------

    def has_call(self, call_id: str, local_tag: str) -> bool:
        """One of our calls has this Call-ID and our tag (an in-dialog request's to-tag)."""
        return (call_id, local_tag) in self._calls

    def new_outbound(self, local_port: int, codecs: Iterable[str]) -> InviteSession:
        session = self._new_session(
            outbound=True,
            local_port=local_port,
            codecs=codecs,
            call_id=generate_call_id(self.identity.advertised_ip),
        )
        self._calls[(session.call_id, session.local_tag)] = session
        return session

    def _new_session(
        self, *, outbound: bool, local_port: int, codecs: Iterable[str], call_id: str
    ) -> InviteSession:
        return InviteSession(
            self.identity,
            outbound=outbound,
            local_port=local_port,
            codecs=codecs,
            call_id=call_id,
            local_tag=generate_tag(),
            timer_queue=self.timer_queue,
            outbox=self.outbox,
            rng=self.rng,
        )

    def _bind(self, key: str, session: InviteSession) -> None:
        self._by_tx[key] = session
        self._tx_keys.setdefault(session, set()).add(key)

    def _may_see_late_2xx(self, session: InviteSession) -> bool:
        """Whether an ended call must keep routing responses: only a 2xx to an INVITE of ours
        (the first, or a re-INVITE) needs it, to be ACKed (and BYEd) again. Other late
        responses change nothing for an ended call, and retransmitted requests are absorbed
        by their server transactions; so an inbound call that never re-INVITEd lets go at
        once instead of keeping its messages and SDP for LINGER (at 200 calls a second,
        8,000 calls' worth)."""
        if session.outbound:
            return True
        return any(is_client_key(key, "INVITE") for key in self._tx_keys.get(session, ()))

    def _unbind_all(self, session: InviteSession) -> None:
        for key in self._tx_keys.pop(session, ()):
            if self._by_tx.get(key) is session:
                del self._by_tx[key]

    # ---- addresses (resolved by the adapter in advance; never waited for here) -------------

    def remember_address(self, host: str, port: int, address: tuple[str, int]) -> None:
        self._resolved[(host, port)] = address

    def resolve_now(self, host: str, port: int) -> tuple[str, int] | None:
        """A literal IP, or a name resolved before; None otherwise."""
        cached = self._resolved.get((host, port))
        if cached is not None:
            return cached
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
        return (host, port)

    # ---- input ------------------------------------------------------------------------------

    def receive(self, event: TxEvent, now: float) -> None:
        """One event from the transaction layer."""
        if isinstance(event, RequestReceived):
            self._on_request(event, now)
        elif isinstance(event, ResponseReceived):
            session = self._by_tx.get(event.tx_key)
            if session is not None:
                session.receive_response(event.response, event.tx_key, now=now)
                # A non-INVITE transaction is over at its final response (the layer absorbs
                # retransmissions). INVITE ones stay bound until the call is unbound: a 2xx
                # may still be retransmitted, or come from another fork, and is re-ACKed.
                _, method = event.response.cseq
                if event.response.status >= 200 and method != "INVITE":
                    self._by_tx.pop(event.tx_key, None)
                    keys = self._tx_keys.get(session)
                    if keys is not None:
                        keys.discard(event.tx_key)
            elif 200 <= event.response.status < 300 and event.response.cseq[1] == "INVITE":
                # The call is long gone: the far end's Timer H ends its side.
                log.debug("stray 2xx for %s", event.response.call_id)
        else:
            session = self._by_tx.pop(event.tx_key, None)
            if session is not None:
                session.transaction_failed(event, now=now)

    def handle_timers(self, now: float) -> None:
        while (due := self.timer_queue.pop_due(now)) is not None:
            owner, name = due
            assert isinstance(owner, InviteSession)
            if name == _UNBIND:
                self._unbind_all(owner)
            else:
                owner.on_timer(name, now=now)

    def next_deadline(self) -> float | None:
        return self.timer_queue.next_deadline()

    # ---- output -----------------------------------------------------------------------------

    def pop_actions(self, now: float) -> list[Action]:
        """Everything to carry out, in order: wire actions and events for the TU."""
        self._drain_outbox(now)
        actions, self._actions = self._actions, []
        return actions

    def _drain_outbox(self, now: float) -> None:
        outbox = self.outbox
        while outbox:
            batch = outbox[:]
            outbox.clear()  # handling an item may queue more (a send that cannot resolve)
            for session, item in batch:
                assert isinstance(session, InviteSession)
                try:
                    self._drain_item(session, item, now)
                except Exception:  # one call's failure must not cost the others their events
                    log.exception("call %s: handling %s failed", session.call_id, item)

    def _drain_item(self, session: InviteSession, item: Effect | CallEvent, now: float) -> None:
        if isinstance(item, SendRequest):
            self._route_request(session, item, now)
        elif isinstance(item, SendStateless):
            dest = self.resolve_now(item.host, item.port)
            if dest is None:
                log.warning("call %s: cannot resolve %s", session.call_id, item.host)
            else:
                self._actions.append(SendStateless(item.message, *dest, item.transport))
        elif isinstance(item, SendResponse | CancelInvite):
            self._actions.append(item)
        else:
            if isinstance(item, Ended):
                self._calls.pop((session.call_id, session.local_tag), None)
                if self._may_see_late_2xx(session):
                    self.timer_queue.schedule(session, _UNBIND, now + LINGER)
                else:
                    self._unbind_all(session)
            self._actions.append(SessionEvent(session, item))

    def _route_request(self, session: InviteSession, item: SendRequest, now: float) -> None:
        dest = self.resolve_now(item.host, item.port)
        if dest is None:
            # In-dialog next hops are IPs or names resolved for the INVITE; anything else is
            # a transport failure of that request.
            log.warning("call %s: cannot resolve next hop %s", session.call_id, item.host)
            session.transaction_failed(TransportFailure(item.tx_key, item.request), now=now)
            return
        self._bind(item.tx_key, session)
        self._actions.append(SendRequest(item.request, *dest, item.transport, item.tx_key))

    def _reply(
        self, request: SipRequest, status: int, extra: Iterable[tuple[str, str]] = ()
    ) -> None:
        headers = [("User-Agent", self.identity.user_agent), ("Allow", ALLOW), *extra]
        response = make_response(request, status, to_tag=generate_tag(), extra_headers=headers)
        self._actions.append(SendResponse(response))

    # ---- requests ---------------------------------------------------------------------------

    def _on_request(self, event: RequestReceived, now: float) -> None:
        request = event.request
        if request.method == "CANCEL":
            session = self._by_tx.get(event.tx_key or "")
            if session is not None:
                session.receive_request(request, event.tx_key, now=now)
            return
        to_tag = request.to_addr.tag
        if to_tag:
            session = self._calls.get((request.call_id, to_tag))
            if session is not None:
                session.receive_request(request, event.tx_key, now=now)
            elif request.method != "ACK":
                self._reply(request, 481)
            return
        method = request.method
        if method == "INVITE":
            self._on_new_invite(event, now)
        elif method == "OPTIONS":
            self._reply(request, 200, [("Accept", "application/sdp")])
        elif method in ("BYE", "INFO", "UPDATE", "PRACK", "NOTIFY", "REFER"):
            self._reply(request, 481)
        elif method != "ACK":
            self._reply(request, 405)

    def _on_new_invite(self, event: RequestReceived, now: float) -> None:
        request = event.request
        screened = screen_invite(request, self.identity.timers, self.identity.advertised_ip)
        if isinstance(screened, Refusal):
            self._reply(request, screened.status, screened.headers)
            return
        if not self.accept_calls:
            self._reply(request, 503)
            return
        replaces = self._replaced_call(request)
        if isinstance(replaces, int):
            self._reply(request, replaces)
            return
        # No RTP port yet: the TU binds one when it answers or sends early media.
        session = self._new_session(
            outbound=False, local_port=9, codecs=screened, call_id=request.call_id
        )
        try:
            session.accept_incoming(request, event.tx_key, now=now)
        except (SipParseError, SdpError, NegotiationError, ValueError) as exc:
            # A header the dialog needs (Contact, Record-Route, CSeq) does not parse: refuse
            # the INVITE before anything is allocated for it.
            log.info("INVITE %s refused: %s", request.call_id, exc)
            self._reply(request, 400, [("Warning", f'399 callboard "{warning_text(exc)}"')])
            return
        if event.tx_key is not None:
            self._bind(event.tx_key, session)
        self._calls[(session.call_id, session.local_tag)] = session
        self._drain_outbox(now)  # the 180 goes out before the TU hears of the call
        self._actions.append(IncomingCall(session, request, replaces))

    def _replaced_call(self, request: SipRequest) -> InviteSession | int | None:
        """The confirmed call an INVITE's Replaces names (None without one), or the status
        that refuses it: 400 for a bad header, 481 when it names no confirmed call of ours,
        486 for `early-only` against a confirmed one (RFC 3891 section 3)."""
        values = request.headers.get_all("Replaces")
        if not values:
            return None
        try:
            if len(values) != 1:
                raise SipParseError("more than one Replaces")
            wanted = parse_replaces(values[0])
        except SipParseError as exc:
            log.info("INVITE %s: bad Replaces: %s", request.call_id, exc)
            return 400
        session = self._calls.get((wanted.call_id, wanted.to_tag))
        dialog = session.dialog if session is not None else None
        if session is None or dialog is None or dialog.remote_tag != wanted.from_tag:
            return 481
        if session.state is not CallState.CONFIRMED:
            return 481
        if wanted.early_only:
            return 486
        return session
