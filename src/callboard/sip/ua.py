"""The asyncio adapter of the call layer: the only part of sip/ above the transport that
touches the loop, the clock or DNS.

`SipUserAgent` feeds transaction events and timer expiries to the sans-IO `CallRouter`, carries
out the actions it returns on the `SipTransport`, and hands call events to listeners. `SipCall`
is the core's handle on one `InviteSession`: each operation runs on the session with the loop's
time and is followed by a flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

from callboard.sdp.negotiation import NegotiatedMedia, SdpSession
from callboard.sip.call_events import (
    CallEvent,
    CancelInvite,
    Ended,
    SendRequest,
    SendResponse,
    SendStateless,
)
from callboard.sip.call_model import CallState, LocalIdentity, OutboundOptions, TimerSettings
from callboard.sip.call_router import CallRouter, IncomingCall, SessionEvent
from callboard.sip.deadline_timer import DeadlineTimer
from callboard.sip.invite_session import InviteSession
from callboard.sip.message import SipRequest
from callboard.sip.transaction import TransactionLayer, TxEvent
from callboard.sip.transport import SipTransport

log = logging.getLogger(__name__)


class CallListener(Protocol):
    """What the core's SIP leg hears from its call."""

    def call_event(self, call: SipCall, event: CallEvent) -> None: ...


class IncomingCallHandler(Protocol):
    def __call__(self, call: SipCall, request: SipRequest) -> None: ...


class _NoListener:
    """Until the core attaches a leg (synchronously, in the incoming-call handler)."""

    def call_event(self, call: SipCall, event: CallEvent) -> None:
        pass


class SipCall:
    """The core's handle on one INVITE session."""

    def __init__(self, ua: SipUserAgent, session: InviteSession) -> None:
        self._ua = ua
        self.session = session
        self.listener: CallListener = _NoListener()
        self.replaces: SipCall | None = None  # inbound: the call its Replaces names

    # ---- state, read through to the session ----

    @property
    def call_id(self) -> str:
        return self.session.call_id

    @property
    def state(self) -> CallState:
        return self.session.state

    @property
    def ended(self) -> bool:
        return self.session.ended

    @property
    def sdp(self) -> SdpSession:
        return self.session.sdp

    @property
    def held(self) -> bool:
        return self.session.held

    @property
    def held_by_us(self) -> bool:
        return self.session.held_by_us

    @property
    def invite_from(self) -> str | None:
        return self.session.invite_from

    @property
    def final_status(self) -> int | None:
        """Outbound: the status of the failure response that ended the INVITE."""
        return self.session.final_status

    # ---- operations ----

    async def start_outbound(self, options: OutboundOptions) -> None:
        host, port = options.uri.host_port()
        try:
            dest = await self._ua.resolve(host, port)
        except OSError as exc:
            log.warning("call %s: cannot resolve %s: %s", self.call_id, host, exc)
            self.session.hangup("invite_failed", now=self._ua.now())
        else:
            self.session.start_outbound(options, dest, now=self._ua.now())
        self._ua.flush()

    def set_ring_timeout(self, seconds: float) -> None:
        self.session.set_ring_timeout(seconds, now=self._ua.now())
        self._ua.flush()

    def early_media(self) -> NegotiatedMedia | None:
        try:
            return self.session.early_media(now=self._ua.now())
        finally:
            self._ua.flush()

    def answer(self) -> NegotiatedMedia | None:
        try:
            return self.session.answer(now=self._ua.now())
        finally:
            self._ua.flush()

    def reject(
        self, status: int, extra: Iterable[tuple[str, str]] = (), reason: str = "api_hangup"
    ) -> None:
        self.session.reject(status, now=self._ua.now(), extra=extra, reason=reason)
        self._ua.flush()

    def hangup(self, reason: str) -> None:
        self.session.hangup(reason, now=self._ua.now())
        self._ua.flush()

    def hold(self, on: bool) -> None:
        try:
            self.session.hold(on, now=self._ua.now())
        finally:
            self._ua.flush()

    def handle_in_dialog(self, *methods: str) -> None:
        """Hand in-dialog requests of these methods (REFER, NOTIFY) to the listener as
        InDialogRequest events; it must answer each with `respond`."""
        self.session.tu_methods.update(m.upper() for m in methods)

    def send_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> str:
        """An in-dialog non-INVITE request; its outcome comes as RequestAnswered/Failed."""
        try:
            return self.session.send_request(
                method, now=self._ua.now(), body=body, content_type=content_type, headers=headers
            )
        finally:
            self._ua.flush()

    def respond(
        self,
        request: SipRequest,
        status: int,
        *,
        body: bytes = b"",
        content_type: str = "application/sdp",
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.session.respond(
            request,
            status,
            now=self._ua.now(),
            body=body,
            content_type=content_type,
            headers=headers,
        )
        self._ua.flush()


class SipUserAgent:
    """Owns the SIP transport and the router; the loop timer for every session's timers."""

    def __init__(
        self,
        *,
        listen_ip: str,
        advertised_ip: str,
        port: int,
        user_agent: str = "callboard",
        timers: TimerSettings | None = None,
    ) -> None:
        self._listen_ip = listen_ip
        self._identity = LocalIdentity(advertised_ip, port, user_agent, timers or TimerSettings())
        self.layer = TransactionLayer()
        self.transport = SipTransport(self.layer, self._on_events, listen_ip=listen_ip, port=port)
        self.router = CallRouter(self._identity)
        self._on_incoming: IncomingCallHandler | None = None
        self._handles: dict[InviteSession, SipCall] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: DeadlineTimer | None = None
        self._flushing = False

    @property
    def advertised_ip(self) -> str:
        return self._identity.advertised_ip

    @property
    def port(self) -> int:
        return self.transport.port

    @property
    def on_incoming(self) -> IncomingCallHandler | None:
        return self._on_incoming

    @on_incoming.setter
    def on_incoming(self, handler: IncomingCallHandler | None) -> None:
        self._on_incoming = handler
        self.router.accept_calls = handler is not None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._timer = DeadlineTimer(self._loop, self._on_timer)
        await self.transport.start()
        # The port is known now (it may have been 0): sessions name it in Via and Contact.
        identity = self._identity
        self._identity = LocalIdentity(
            identity.advertised_ip, self.transport.port, identity.user_agent, identity.timers
        )
        self.router.identity = self._identity

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.transport.close()

    @property
    def calls(self) -> list[SipCall]:
        return [self._handles[s] for s in self.router.calls if s in self._handles]

    def now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()

    # ---- name resolution (cached; the media path never waits on it) ----

    async def resolve(self, host: str, port: int) -> tuple[str, int]:
        known = self.router.resolve_now(host, port)
        if known is not None:
            return known
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=2)  # SOCK_DGRAM
        if not infos:
            raise OSError(f"cannot resolve {host}")
        addr = infos[0][4]
        result = (str(addr[0]), int(addr[1]))
        self.router.remember_address(host, port, result)
        return result

    # ---- calls ----

    def new_outbound_call(
        self, listener: CallListener, local_port: int, codecs: Iterable[str]
    ) -> SipCall:
        call = SipCall(self, self.router.new_outbound(local_port, codecs))
        call.listener = listener
        self._handles[call.session] = call
        return call

    # ---- the router's input and output ----

    def _on_events(self, events: list[TxEvent]) -> None:
        now = self.now()
        for event in events:
            try:
                self.router.receive(event, now)
            except Exception:
                log.exception("SIP event handling failed for %s", type(event).__name__)
        self.flush()

    def _on_timer(self, now: float) -> None:
        try:
            self.router.handle_timers(now)
        except Exception:
            log.exception("call timers failed")
        self.flush()

    def flush(self) -> None:
        """Carry out the router's actions until none are left, then re-arm the timer. A
        listener that calls back into a call adds actions to this same loop."""
        if self._flushing:
            return
        self._flushing = True
        try:
            while True:
                try:
                    actions = self.router.pop_actions(self.now())
                except Exception:
                    log.exception("SIP call routing failed")
                    break
                if not actions:
                    break
                for action in actions:
                    try:
                        self._carry_out(action)
                    except Exception:
                        log.exception("SIP action %s failed", type(action).__name__)
        finally:
            self._flushing = False
            self._rearm_timer()

    def _carry_out(self, action: object) -> None:
        transport = self.transport
        if isinstance(action, SendRequest):
            transport.send_request(action.request, (action.host, action.port), action.transport)
        elif isinstance(action, SendResponse):
            try:
                transport.send_response(action.response)
            except KeyError:
                log.debug("transaction for %d already gone", action.response.status)
        elif isinstance(action, SendStateless):
            transport.send_stateless(action.message, (action.host, action.port), action.transport)
        elif isinstance(action, CancelInvite):
            transport.cancel_request(action.tx_key)
        elif isinstance(action, SessionEvent):
            self._deliver(action.session, action.event)
        elif isinstance(action, IncomingCall):
            self._incoming(action)

    def _deliver(self, session: InviteSession, event: CallEvent) -> None:
        call = self._handles.get(session)
        if call is None:
            return
        if isinstance(event, Ended):
            del self._handles[session]
        try:
            call.listener.call_event(call, event)
        except Exception:
            log.exception("call listener failed on %s", type(event).__name__)

    def _incoming(self, action: IncomingCall) -> None:
        call = SipCall(self, action.session)
        self._handles[action.session] = call
        if action.replaces is not None:
            call.replaces = self._handles.get(action.replaces)
        handler = self._on_incoming
        try:
            if handler is None:
                raise RuntimeError("no handler for incoming calls")
            handler(call, action.request)
        except Exception:
            log.exception("INVITE %s: call set-up failed", action.request.call_id)
            call.reject(500, reason="connect_failed")

    def _rearm_timer(self) -> None:
        if self._timer is not None:
            self._timer.follow(self.router.next_deadline())
