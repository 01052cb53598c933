"""Two SIP user agents (transaction layer + call router, no sockets) joined by a simulated
network with latency and scripted loss, on a fake clock: call-level behaviour is tested the way
the asyncio adapter drives it, but deterministically and without sleeping."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from callboard.sip.call_events import (
    CallEvent,
    CancelInvite,
    SendRequest,
    SendResponse,
    SendStateless,
)
from callboard.sip.call_model import LocalIdentity, OutboundOptions, TimerSettings
from callboard.sip.call_router import Action, CallRouter, IncomingCall, SessionEvent
from callboard.sip.invite_session import InviteSession
from callboard.sip.message import SipRequest, SipResponse, parse_message
from callboard.sip.transaction import TransactionLayer
from callboard.sip.uri import SipUri

ALICE = ("10.0.0.1", 5060)
BOB = ("10.0.0.2", 5060)
LATENCY = 0.02

T = TypeVar("T")
Drop = Callable[["Stack", SipRequest | SipResponse], bool]
# Edits a copy of a message on its way from `stack` (a proxy in the path); the sender keeps its own.
Rewrite = Callable[["Stack", SipRequest | SipResponse], None]


@dataclass
class Stack:
    name: str
    addr: tuple[str, int]
    timers: TimerSettings = field(default_factory=TimerSettings)
    # What to do with a new inbound call (its session is already ringing): nothing by default.
    on_incoming: Callable[[InviteSession, SipRequest], object] | None = None

    def __post_init__(self) -> None:
        self.layer = TransactionLayer()
        identity = LocalIdentity(self.addr[0], self.addr[1], self.name, self.timers)
        self.router = CallRouter(identity, random.Random(self.name))
        self.router.accept_calls = True
        self.events: list[tuple[InviteSession, CallEvent]] = []
        self.timeline: list[tuple[float, InviteSession, CallEvent]] = []  # events with times
        self.incoming: list[InviteSession] = []
        self.replacing: list[InviteSession | None] = []  # each incoming call's Replaces match
        self.sent: list[tuple[float, SipRequest | SipResponse]] = []
        self.received: list[tuple[float, SipRequest | SipResponse]] = []

    def events_of(self, session: InviteSession) -> list[CallEvent]:
        return [e for s, e in self.events if s is session]

    def times_of(self, session: InviteSession, kind: type) -> list[float]:
        """When `session` emitted events of type `kind`."""
        return [t for t, s, e in self.timeline if s is session and isinstance(e, kind)]

    def sent_requests(self, method: str) -> list[SipRequest]:
        return [m for _, m in self.sent if isinstance(m, SipRequest) and m.method == method]

    def received_requests(self, method: str) -> list[SipRequest]:
        return [m for _, m in self.received if isinstance(m, SipRequest) and m.method == method]

    def sent_statuses(self, method: str) -> list[int]:
        return [
            m.status for _, m in self.sent if isinstance(m, SipResponse) and m.cseq[1] == method
        ]

    def received_statuses(self, method: str) -> list[int]:
        return [
            m.status for _, m in self.received if isinstance(m, SipResponse) and m.cseq[1] == method
        ]

    def sent_times(self, method: str, status: int | None = None) -> list[float]:
        """When requests of `method` (or, with `status`, responses to it) were sent."""
        return [t for t, m in self.sent if _is(m, method, status)]

    def received_times(self, method: str, status: int | None = None) -> list[float]:
        return [t for t, m in self.received if _is(m, method, status)]

    def sent_responses(self, method: str) -> list[SipResponse]:
        return [m for _, m in self.sent if isinstance(m, SipResponse) and m.cseq[1] == method]

    def received_responses(self, method: str) -> list[SipResponse]:
        return [m for _, m in self.received if isinstance(m, SipResponse) and m.cseq[1] == method]


def _is(message: SipRequest | SipResponse, method: str, status: int | None) -> bool:
    if status is None:
        return isinstance(message, SipRequest) and message.method == method
    return (
        isinstance(message, SipResponse) and message.cseq[1] == method and message.status == status
    )


class CallNet:
    def __init__(
        self,
        *,
        alice_timers: TimerSettings | None = None,
        bob_timers: TimerSettings | None = None,
        drop: Drop | None = None,
        rewrite: Rewrite | None = None,
    ) -> None:
        self.alice = Stack("alice", ALICE, alice_timers or TimerSettings())
        self.bob = Stack("bob", BOB, bob_timers or TimerSettings())
        self.now = 0.0
        self.drop: Drop = drop or (lambda stack, message: False)
        self.rewrite = rewrite
        self._in_flight: list[tuple[float, Stack, bytes, tuple[str, int]]] = []

    # ---- driving ----

    def call(self, caller: Stack | None = None, user: str = "bob", **options: Any) -> InviteSession:
        """`caller` (alice by default) INVITEs the other stack; `options` are further
        OutboundOptions fields (auth_username, headers, ...)."""
        caller = caller or self.alice
        callee = self.bob if caller is self.alice else self.alice
        session = caller.router.new_outbound(local_port=40000, codecs=("PCMU", "PCMA"))
        uri = SipUri(user=user, host=callee.addr[0], port=callee.addr[1])
        session.start_outbound(OutboundOptions(uri=uri, **options), callee.addr, now=self.now)
        self.flush()
        return session

    def send_raw(self, stack: Stack, message: SipRequest) -> None:
        """Send a hand-built request from `stack` to the other one, past its call router: an
        ACK statelessly, anything else in a client transaction whose responses no session
        owns (they show up in `received`)."""
        dest = BOB if stack is self.alice else ALICE
        if message.method == "ACK":
            stack.layer.send_stateless(message, dest, "udp")
        else:
            stack.layer.send_request(message, dest, "udp", self.now)
        self.flush()

    def flush(self) -> None:
        """Carry out every stack's actions and put what they send on the wire."""
        busy = True
        while busy:
            busy = False
            for stack in (self.alice, self.bob):
                actions = stack.router.pop_actions(self.now)
                for action in actions:
                    self._carry_out(stack, action)
                busy = busy or bool(actions)
                for out in stack.layer.pop_outgoing():
                    busy = True
                    stack.sent.append((self.now, out.message))
                    if self.drop(stack, out.message):
                        continue
                    target = self.bob if out.dest == BOB else self.alice
                    data = out.message.to_bytes()
                    if self.rewrite is not None:
                        copy = parse_message(data)
                        self.rewrite(stack, copy)
                        data = copy.to_bytes()
                    self._in_flight.append((self.now + LATENCY, target, data, stack.addr))

    def _carry_out(self, stack: Stack, action: Action) -> None:
        now = self.now
        if isinstance(action, SendRequest):
            stack.layer.send_request(action.request, (action.host, action.port), "udp", now)
        elif isinstance(action, SendResponse):
            with contextlib.suppress(KeyError):  # the transaction is gone, as in the adapter
                stack.layer.send_response(action.response, now)
        elif isinstance(action, SendStateless):
            stack.layer.send_stateless(action.message, (action.host, action.port), "udp")
        elif isinstance(action, CancelInvite):
            stack.layer.cancel_request(action.tx_key, now)
        elif isinstance(action, SessionEvent):
            stack.events.append((action.session, action.event))
            stack.timeline.append((now, action.session, action.event))
        elif isinstance(action, IncomingCall):
            stack.incoming.append(action.session)
            stack.replacing.append(action.replaces)
            if stack.on_incoming is not None:
                stack.on_incoming(action.session, action.request)

    def run(self, seconds: float) -> None:
        """Advance the fake clock by `seconds`, delivering messages and firing timers."""
        until = self.now + seconds
        self.flush()
        while True:
            deadlines = [t for t, *_ in self._in_flight]
            for stack in (self.alice, self.bob):
                for d in (stack.layer.next_deadline(), stack.router.next_deadline()):
                    if d is not None:
                        deadlines.append(d)
            if not deadlines or min(deadlines) > until:
                break
            self.now = max(self.now, min(deadlines))
            due = [m for m in self._in_flight if m[0] <= self.now]
            self._in_flight = [m for m in self._in_flight if m[0] > self.now]
            for _, target, data, source in due:
                message = parse_message(data)
                target.received.append((self.now, message))
                for event in target.layer.receive(message, source, "udp", self.now):
                    target.router.receive(event, self.now)
                self.flush()
            for stack in (self.alice, self.bob):
                for event in stack.layer.handle_timers(self.now):
                    stack.router.receive(event, self.now)
                stack.router.handle_timers(self.now)
                self.flush()
        self.now = until

    def do(self, operation: Callable[[float], T]) -> T:
        """Run a TU operation at the current time (e.g. `lambda now: s.answer(now=now)`)."""
        result = operation(self.now)
        self.flush()
        return result

    def do_all(self, *operations: Callable[[float], object]) -> None:
        """Run several TU operations at the same instant, before anything is delivered."""
        for operation in operations:
            operation(self.now)
        self.flush()


def connected_call(net: CallNet) -> tuple[InviteSession, InviteSession]:
    """Alice calls Bob, Bob answers; both sessions once the ACK has arrived."""
    net.bob.on_incoming = lambda session, request: session.answer(now=net.now)
    a = net.call()
    net.run(1.0)
    assert net.bob.incoming, "Bob never saw the INVITE"
    return a, net.bob.incoming[-1]


def assert_idle(net: CallNet) -> None:
    """Nothing left on either side: no call, transaction, timer or transaction binding."""
    for stack in (net.alice, net.bob):
        assert stack.router.calls == [], f"{stack.name} still has calls"
        assert len(stack.layer) == 0, f"{stack.name} still has transactions"
        assert stack.layer.next_deadline() is None, f"{stack.name} layer still has timers"
        assert stack.router.next_deadline() is None, f"{stack.name} router still has timers"
        assert not stack.router._by_tx, f"{stack.name} router still routes transactions"


def sdp_direction(body: bytes) -> str:
    """The audio stream's direction attribute in an SDP body (sendrecv when none is given)."""
    for line in body.decode().splitlines():
        if line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            return line[2:]
    return "sendrecv"
