"""Abandoning an outbound call before it is answered (RFC 3261 9.1, 9.2): CANCEL in CALLING
(held back until a provisional response arrives), after 180 and in EARLY; the ring timeout;
and a 2xx that crosses the CANCEL, which must be ACKed and BYEd (RFC 3261 15, 13.2.2.4)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from callboard.sip.call_events import EarlyMedia, Ended, Ringing
from callboard.sip.call_model import CallState
from callboard.sip.invite_session import InviteSession
from callboard.sip.message import SipRequest, SipResponse
from tests.unit.sip.call_net import CallNet, Stack, assert_idle

Hangup = Callable[[InviteSession, str, float], None]
CANCEL_OPS: dict[str, Hangup] = {
    "cancel": lambda s, reason, now: s.cancel(reason, now=now),
    "hangup": lambda s, reason, now: s.hangup(reason, now=now),
}


def ringing_call(net: CallNet) -> tuple[InviteSession, InviteSession]:
    """Alice calls Bob, who only rings; both sessions once Alice heard the 180."""
    a = net.call()
    net.run(1)
    assert net.alice.events_of(a) == [Ringing()]
    return a, net.bob.incoming[-1]


@pytest.mark.parametrize("op", sorted(CANCEL_OPS))
def test_cancel_after_180(op: str) -> None:
    """After a provisional response the CANCEL goes out at once; the UAS answers it 200 and
    the INVITE 487 (same To tag as its 180); the UAC ACKs the 487 in the INVITE's transaction
    (same branch, RFC 3261 17.1.1.3). The caller's leg ends with its own reason, once."""
    net = CallNet()
    a, b = ringing_call(net)
    t = net.now
    net.do(lambda now: CANCEL_OPS[op](a, "api_hangup", now))
    assert net.alice.events_of(a)[-1] == Ended("api_hangup") and a.state is CallState.ENDED
    (cancel,) = net.alice.sent_requests("CANCEL")
    assert net.alice.sent_times("CANCEL") == [t]
    (invite,) = net.alice.sent_requests("INVITE")
    assert cancel.top_via.branch == invite.top_via.branch
    assert cancel.cseq == (1, "CANCEL") and str(cancel.uri) == str(invite.uri)
    net.run(1)
    assert net.bob.events_of(b) == [Ended("caller_cancel")]
    assert net.bob.sent_statuses("CANCEL") == [200]
    assert net.bob.sent_statuses("INVITE") == [100, 180, 487]
    ringing, terminated = net.bob.sent_responses("INVITE")[1:]
    assert terminated.to_addr.tag == ringing.to_addr.tag
    (ack,) = net.alice.sent_requests("ACK")
    assert ack.cseq == (1, "ACK") and ack.top_via.branch == invite.top_via.branch
    assert ack.to_addr.tag == terminated.to_addr.tag
    assert net.alice.events_of(a) == [Ringing(), Ended("api_hangup")]
    net.run(64)
    assert_idle(net)


def test_cancel_before_any_response_waits_for_the_first_provisional() -> None:
    """A CANCEL must not be sent before a provisional response (RFC 3261 9.1). The leg ends
    at once; the CANCEL goes out when the first provisional (here 100 Trying to the
    retransmitted INVITE) arrives, and the callee's ringing session ends."""
    lost: list[SipRequest] = []

    def drop(stack: Stack, message: SipRequest | SipResponse) -> bool:
        if isinstance(message, SipRequest) and message.method == "INVITE" and not lost:
            lost.append(message)
            return True
        return False

    net = CallNet(drop=drop)
    a = net.call()
    net.run(0.1)
    net.do(lambda now: a.hangup("api_hangup", now=now))
    assert net.alice.events_of(a) == [Ended("api_hangup")]
    assert net.alice.times_of(a, Ended) == [pytest.approx(0.1)]
    net.run(0.3)
    assert net.alice.sent_requests("CANCEL") == []  # nothing heard from Bob yet
    net.run(1)
    first_provisional = net.alice.received_times("INVITE", 100)[0]
    assert first_provisional == pytest.approx(0.54)  # the INVITE retransmitted at T1
    assert net.alice.sent_times("CANCEL") == [first_provisional]
    (b,) = net.bob.incoming
    assert net.bob.events_of(b) == [Ended("caller_cancel")]
    assert net.bob.sent_statuses("INVITE") == [100, 180, 487]
    assert net.alice.events_of(a) == [Ended("api_hangup")]
    net.run(64)
    assert_idle(net)


def test_cancel_of_an_unreachable_callee_is_never_sent() -> None:
    """Without any response the CANCEL is never sent; the INVITE transaction times out
    quietly (Timer B) and nothing more reaches the ended leg."""
    net = CallNet(drop=lambda stack, message: stack is net.alice)
    a = net.call()
    net.run(0.2)
    net.do(lambda now: a.cancel("api_hangup", now=now))
    net.run(64)
    assert net.alice.sent_requests("CANCEL") == []
    assert net.alice.events_of(a) == [Ended("api_hangup")]
    assert len(net.alice.layer) == 0 and net.alice.router.calls == []


def test_cancel_in_early_media() -> None:
    """A call with early media (183 + SDP) is still cancelled, not BYEd; the callee's EARLY
    session ends caller_cancel and answers the INVITE 487."""
    net = CallNet()
    net.bob.on_incoming = lambda session, request: session.early_media(now=net.now)
    a = net.call()
    net.run(1)
    (b,) = net.bob.incoming
    assert a.state is CallState.EARLY and b.state is CallState.EARLY
    assert [type(e) for e in net.alice.events_of(a)] == [Ringing, EarlyMedia]
    net.do(lambda now: a.hangup("api_hangup", now=now))
    net.run(1)
    assert len(net.alice.sent_requests("CANCEL")) == 1
    assert net.alice.sent_requests("BYE") == []
    assert net.bob.sent_statuses("INVITE") == [100, 180, 183, 487]
    assert net.bob.events_of(b) == [Ended("caller_cancel")]
    assert net.alice.events_of(a)[-1] == Ended("api_hangup")
    net.run(64)
    assert_idle(net)


def test_ring_timeout_cancels_at_that_time() -> None:
    """`set_ring_timeout` ends an unanswered outbound call at exactly that time with
    ring_timeout and sends the CANCEL then; the callee sees caller_cancel."""
    net = CallNet()
    a = net.call()
    net.do(lambda now: a.set_ring_timeout(5.0, now=now))
    net.run(4.99)
    assert a.state is CallState.CALLING and net.alice.sent_requests("CANCEL") == []
    net.run(1)
    assert net.alice.events_of(a) == [Ringing(), Ended("ring_timeout")]
    assert net.alice.times_of(a, Ended) == [5.0]
    assert net.alice.sent_times("CANCEL") == [5.0]
    (b,) = net.bob.incoming
    assert net.bob.events_of(b) == [Ended("caller_cancel")]
    assert net.bob.times_of(b, Ended) == [pytest.approx(5.02)]
    assert net.bob.sent_statuses("INVITE")[-1] == 487
    net.run(64)
    assert_idle(net)


def test_ring_timeout_is_disarmed_by_the_answer() -> None:
    net = CallNet()
    a = net.call()
    net.do(lambda now: a.set_ring_timeout(5.0, now=now))
    net.run(2)
    (b,) = net.bob.incoming
    net.do(lambda now: b.answer(now=now))
    net.run(10)
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED
    assert net.alice.sent_requests("CANCEL") == []


@pytest.mark.parametrize("op", sorted(CANCEL_OPS))
def test_200_crossing_the_cancel_is_acked_and_byed(op: str) -> None:
    """The caller cancels at the instant the callee answers. The CANCEL finds the INVITE
    already answered (200 to the CANCEL, no 487: RFC 3261 9.2); the caller's leg has ended
    with its reason, so it ACKs the 2xx and BYEs the dialog (RFC 3261 15); the callee ends
    remote_bye. Nothing is left behind afterwards."""
    net = CallNet()
    a, b = ringing_call(net)
    net.do_all(lambda now: CANCEL_OPS[op](a, "api_hangup", now), lambda now: b.answer(now=now))
    net.run(1)
    assert net.alice.events_of(a) == [Ringing(), Ended("api_hangup")]
    assert net.bob.events_of(b) == [Ended("remote_bye")]
    assert net.bob.sent_statuses("CANCEL") == [200]
    assert 487 not in net.bob.sent_statuses("INVITE")
    ok = net.bob.sent_responses("INVITE")[-1]
    assert ok.status == 200
    (ack,) = net.alice.sent_requests("ACK")
    assert ack.cseq == (1, "ACK") and ack.to_addr.tag == ok.to_addr.tag == b.local_tag
    (bye,) = net.alice.sent_requests("BYE")
    assert bye.cseq == (2, "BYE") and bye.to_addr.tag == b.local_tag
    assert net.alice.received_statuses("BYE") == [200]
    net.run(64)
    assert len(net.bob.sent_responses("INVITE")) == 3  # the ACK stopped the 2xx
    assert len(net.alice.sent_requests("BYE")) == 1
    assert_idle(net)


def test_200_crossing_the_cancel_with_lost_ack_is_reacked_not_byed_again() -> None:
    """The crossing 2xx is retransmitted when the ACK is lost: the ended leg re-ACKs it with
    the same ACK and sends no second BYE."""
    lost: list[SipRequest] = []

    def drop(stack: Stack, message: SipRequest | SipResponse) -> bool:
        if isinstance(message, SipRequest) and message.method in ("ACK", "BYE") and not lost:
            lost.append(message)
            return message.method == "ACK"
        return False

    net = CallNet(drop=drop)
    a, b = ringing_call(net)
    net.do_all(lambda now: a.cancel("api_hangup", now=now), lambda now: b.answer(now=now))
    net.run(64)
    acks = net.alice.sent_requests("ACK")
    assert len(acks) == 2 and acks[0].to_bytes() == acks[1].to_bytes()
    assert len(net.alice.sent_requests("BYE")) == 1
    assert net.bob.events_of(b) == [Ended("remote_bye")]
    assert net.alice.events_of(a) == [Ringing(), Ended("api_hangup")]
    assert_idle(net)


def test_first_response_a_200_after_cancel_without_provisional() -> None:
    """No provisional ever arrives, so the CANCEL is never sent; when the 2xx comes the
    ended leg ACKs and BYEs it."""

    def drop(stack: Stack, message: SipRequest | SipResponse) -> bool:
        return isinstance(message, SipResponse) and message.status < 200

    net = CallNet(drop=drop)
    a = net.call()
    net.run(0.01)
    net.do(lambda now: a.cancel("api_hangup", now=now))
    net.run(1)
    (b,) = net.bob.incoming
    net.do(lambda now: b.answer(now=now))
    net.run(1)
    assert net.alice.sent_requests("CANCEL") == []
    assert len(net.alice.sent_requests("ACK")) == 1 and len(net.alice.sent_requests("BYE")) == 1
    assert net.bob.events_of(b) == [Ended("remote_bye")]
    assert net.alice.events_of(a) == [Ended("api_hangup")]
    net.run(64)
    assert_idle(net)
