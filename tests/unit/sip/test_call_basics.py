"""INVITE sessions end to end on the simulated network: set-up, hold, hang-up."""

from __future__ import annotations

from callboard.sip.call_events import Answered, Ended, HoldChanged, MediaChanged, Ringing
from callboard.sip.call_model import CallState
from tests.unit.sip.call_net import CallNet, connected_call


def test_call_is_answered_and_acked() -> None:
    net = CallNet()
    a, b = connected_call(net)
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED
    assert [type(e) for e in net.alice.events_of(a)] == [Ringing, Answered]
    assert len(net.bob.received_requests("ACK")) == 1
    net.run(60)  # the ACK stopped Bob's 200 retransmissions and nothing timed out
    assert net.bob.sent_statuses("INVITE").count(200) == 1
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED


def test_hold_and_unhold_from_the_caller() -> None:
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: a.hold(True, now=now))
    net.run(1)
    assert net.alice.events_of(a)[-1] == HoldChanged(True)
    bob_events = net.bob.events_of(b)
    assert isinstance(bob_events[-2], MediaChanged) and bob_events[-1] == HoldChanged(True)
    assert b.held_by_remote and a.held_by_us
    net.do(lambda now: a.hold(False, now=now))
    net.run(1)
    assert net.alice.events_of(a)[-1] == HoldChanged(False)
    assert net.bob.events_of(b)[-1] == HoldChanged(False)
    assert not b.held and not a.held


def test_bye_from_the_callee_ends_both() -> None:
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: b.hangup("api_hangup", now=now))
    net.run(1)
    assert net.bob.events_of(b)[-1] == Ended("api_hangup")
    assert net.alice.events_of(a)[-1] == Ended("remote_bye")
    assert net.bob.received_statuses("BYE") == [200]
