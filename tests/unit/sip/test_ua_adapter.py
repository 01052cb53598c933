"""The asyncio adapter (`SipUserAgent`, `SipCall`) over real loopback sockets, in-process:
its loop timer drives the sessions' timers, listeners may call back into a call while it
flushes, a failing incoming-call handler refuses the call, and an unresolvable target ends
the call. (The call behaviour itself is tested on the fake clock: test_call_*.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from callboard.sip.call_events import Answered, CallEvent, Ended, MediaChanged
from callboard.sip.call_model import OutboundOptions, TimerSettings
from callboard.sip.message import SipRequest
from callboard.sip.ua import SipCall, SipUserAgent
from callboard.sip.uri import SipUri


class Recorder:
    """A listener that keeps every event and can react to one."""

    def __init__(self, react: Callable[[SipCall, CallEvent], None] | None = None) -> None:
        self.events: list[CallEvent] = []
        self.changed = asyncio.Event()
        self._react = react

    def call_event(self, call: SipCall, event: CallEvent) -> None:
        self.events.append(event)
        self.changed.set()
        if self._react is not None:
            self._react(call, event)

    async def wait_for(self, kind: type, count: int = 1, timeout: float = 5.0) -> list[CallEvent]:
        async def enough() -> list[CallEvent]:
            while len(found := [e for e in self.events if isinstance(e, kind)]) < count:
                self.changed.clear()
                await self.changed.wait()
            return found

        return await asyncio.wait_for(enough(), timeout)


TIMERS = TimerSettings(session_expires=2, min_se=1)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SipUserAgent, SipUserAgent]]:
    a = SipUserAgent(listen_ip="127.0.0.1", advertised_ip="127.0.0.1", port=0, timers=TIMERS)
    b = SipUserAgent(listen_ip="127.0.0.1", advertised_ip="127.0.0.1", port=0, timers=TIMERS)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


def callee(b: SipUserAgent, *, answer: bool) -> list[Recorder]:
    """Bob's incoming-call handler: a Recorder per call, answering inside the handler."""
    made: list[Recorder] = []

    def on_incoming(call: SipCall, request: SipRequest) -> None:
        recorder = Recorder()
        call.listener = recorder
        made.append(recorder)
        if answer:
            call.sdp.local_port = 40002
            call.answer()  # during the router's flush: the 200 joins the same loop

    b.on_incoming = on_incoming
    return made


def dial(a: SipUserAgent, b: SipUserAgent, listener: Recorder, host: str = "127.0.0.1") -> SipCall:
    call = a.new_outbound_call(listener, 40000, ("PCMU",))
    uri = SipUri(user="bob", host=host, port=b.port)
    asyncio.get_running_loop().create_task(call.start_outbound(OutboundOptions(uri=uri)))
    return call


async def test_the_loop_timer_drives_session_refreshes(
    pair: tuple[SipUserAgent, SipUserAgent],
) -> None:
    a, b = pair
    bobs = callee(b, answer=True)
    alice = Recorder()
    call = dial(a, b, alice)
    await alice.wait_for(Answered)
    # A 2 s session: Alice refreshes every second; Bob sees each refresh as a re-offer.
    await bobs[0].wait_for(MediaChanged, count=2, timeout=4)
    assert not call.ended and not [e for e in bobs[0].events if isinstance(e, Ended)]
    call.hangup("api_hangup")
    assert (await bobs[0].wait_for(Ended))[0] == Ended("remote_bye")
    assert a.calls == [] and alice.events[-1] == Ended("api_hangup")


async def test_a_listener_may_hang_up_from_inside_an_event(
    pair: tuple[SipUserAgent, SipUserAgent],
) -> None:
    a, b = pair
    bobs = callee(b, answer=True)

    def hang_up_when_answered(call: SipCall, event: CallEvent) -> None:
        if isinstance(event, Answered):
            call.hangup("api_hangup")  # re-enters the adapter while it delivers events

    alice = Recorder(hang_up_when_answered)
    dial(a, b, alice)
    assert (await alice.wait_for(Ended))[0] == Ended("api_hangup")
    assert (await bobs[0].wait_for(Ended))[0] == Ended("remote_bye")
    assert a.calls == [] and b.calls == []


async def test_a_failing_incoming_handler_refuses_the_call_500(
    pair: tuple[SipUserAgent, SipUserAgent],
) -> None:
    a, b = pair

    def broken(call: SipCall, request: SipRequest) -> None:
        raise RuntimeError("leg set-up bug")

    b.on_incoming = broken
    alice = Recorder()
    dial(a, b, alice)
    assert (await alice.wait_for(Ended))[0] == Ended("sip_500")
    assert b.calls == []


async def test_an_unresolvable_target_ends_the_call(
    pair: tuple[SipUserAgent, SipUserAgent],
) -> None:
    a, b = pair
    alice = Recorder()
    dial(a, b, alice, host="callboard-test.invalid")
    assert (await alice.wait_for(Ended))[0] == Ended("invite_failed")
    assert a.calls == []


async def test_ring_timeout_fires_on_the_loop(pair: tuple[SipUserAgent, SipUserAgent]) -> None:
    a, b = pair
    bobs = callee(b, answer=False)
    alice = Recorder()
    call = a.new_outbound_call(alice, 40000, ("PCMU",))
    call.set_ring_timeout(0.3)
    uri = SipUri(user="bob", host="127.0.0.1", port=b.port)
    started = asyncio.get_running_loop().time()
    await call.start_outbound(OutboundOptions(uri=uri))
    assert (await alice.wait_for(Ended))[0] == Ended("ring_timeout")
    assert 0.25 <= asyncio.get_running_loop().time() - started < 1.0
    assert (await bobs[0].wait_for(Ended))[0] == Ended("caller_cancel")
