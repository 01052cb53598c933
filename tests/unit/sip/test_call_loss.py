"""A whole call on a lossy network: retransmissions (RFC 3261 17) and the 2xx/ACK handshake
(13.2.2.4, 13.3.1.4) must carry set-up, hold, unhold and BYE through 20 % random loss, with
every event delivered exactly once and nothing left behind."""

from __future__ import annotations

import random

import pytest

from callboard.sip.call_events import Answered, Ended, HoldChanged, MediaChanged, Ringing
from callboard.sip.call_model import CallState
from callboard.sip.message import SipRequest, SipResponse
from tests.unit.sip.call_net import CallNet, assert_idle

LOSS = 0.2
STEP = 40.0  # long enough for any retransmission series (64*T1 = 32 s) to finish


@pytest.mark.parametrize("seed", range(20))
def test_call_survives_random_loss(seed: int) -> None:
    """Set-up, hold, unhold and BYE with 20 % of all messages lost (seeded): each step
    completes, each event arrives once, every 2xx copy is ACKed and the ACK ends the 2xx
    retransmissions."""
    rng = random.Random(seed)
    net = CallNet(drop=lambda stack, message: rng.random() < LOSS)
    net.bob.on_incoming = lambda session, request: session.answer(now=net.now)
    a = net.call()
    net.run(STEP)
    (b,) = net.bob.incoming
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED

    net.do(lambda now: a.hold(True, now=now))
    net.run(STEP)
    assert a.held_by_us and b.held_by_remote
    net.do(lambda now: a.hold(False, now=now))
    net.run(STEP)
    assert not a.held and not b.held
    net.do(lambda now: a.hangup("api_hangup", now=now))
    net.run(STEP)
    assert b.state is CallState.ENDED

    alice = net.alice.events_of(a)
    # A provisional response is not retransmitted, so a lost 180 may mean no Ringing.
    assert alice[:1] == [Ringing()] or isinstance(alice[0], Answered)
    alice = [e for e in alice if not isinstance(e, Ringing)]
    assert [type(e) for e in alice] == [
        Answered,
        MediaChanged,
        HoldChanged,
        MediaChanged,
        HoldChanged,
        Ended,
    ]
    assert [e for e in alice if isinstance(e, HoldChanged | Ended)] == [
        HoldChanged(True),
        HoldChanged(False),
        Ended("api_hangup"),
    ]
    bob = net.bob.events_of(b)
    assert [type(e) for e in bob] == [MediaChanged, HoldChanged, MediaChanged, HoldChanged, Ended]
    assert [e for e in bob if not isinstance(e, MediaChanged)] == [
        HoldChanged(True),
        HoldChanged(False),
        Ended("remote_bye"),
    ]
    for cseq in (1, 2, 3):
        # Alice ACKs every 2xx copy she gets (RFC 3261 13.2.2.4) ...
        oks_in = [t for t, m in net.alice.received if is_ok(m, cseq)]
        acks_out = [t for t, m in net.alice.sent if is_ack(m, cseq)]
        assert acks_out == oks_in and oks_in
        # ... and Bob stops retransmitting once one ACK got through (13.3.1.4).
        first_ack = min(t for t, m in net.bob.received if is_ack(m, cseq))
        assert all(t <= first_ack for t, m in net.bob.sent if is_ok(m, cseq))
    net.run(64)
    assert_idle(net)


def is_ok(message: SipRequest | SipResponse, cseq: int) -> bool:
    """A 200 to the INVITE (initial or re-INVITE) with that CSeq number."""
    if not isinstance(message, SipResponse):
        return False
    return message.status == 200 and message.cseq == (cseq, "INVITE")


def is_ack(message: SipRequest | SipResponse, cseq: int) -> bool:
    return isinstance(message, SipRequest) and message.cseq == (cseq, "ACK")
