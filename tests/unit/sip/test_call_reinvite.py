"""re-INVITE inside a confirmed call (RFC 3261 14, RFC 3264 8.4): hold and unhold from either
side, an offer-less re-INVITE, glare (491 and the randomised retry), a lost ACK to a re-INVITE's
2xx, and a refused re-INVITE that leaves the session as it was."""

from __future__ import annotations

import random

import pytest

from callboard.sip.call_events import HoldChanged, MediaChanged
from callboard.sip.call_model import CallState, SipCallError
from callboard.sip.headers import Via
from callboard.sip.message import SipRequest, SipResponse, generate_branch
from tests.unit.sip.call_net import ALICE, CallNet, Stack, connected_call, sdp_direction

G729_ONLY_SDP = (
    b"v=0\r\no=x 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
)


def reinvites(stack: Stack) -> list[SipRequest]:
    """The in-dialog INVITEs a stack sent: those with a To tag."""
    return [r for r in stack.sent_requests("INVITE") if r.to_addr.tag is not None]


def test_hold_from_the_caller_on_the_wire() -> None:
    """Hold is a re-INVITE with a=sendonly (RFC 3264 8.4); the far end answers recvonly, sees
    the peer's hold in MediaChanged and reports HoldChanged; the ACK carries the re-INVITE's
    CSeq (RFC 3261 13.2.2.4)."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: a.hold(True, now=now))
    net.run(1)
    (invite,) = reinvites(net.alice)
    assert invite.cseq == (2, "INVITE")
    assert invite.headers.get("Call-ID") == a.call_id
    assert sdp_direction(invite.body) == "sendonly"
    ok = net.bob.sent_responses("INVITE")[-1]
    assert ok.status == 200 and ok.cseq == (2, "INVITE")
    assert sdp_direction(ok.body) == "recvonly"
    assert [ack.cseq for ack in net.bob.received_requests("ACK")] == [(1, "ACK"), (2, "ACK")]

    alice_events = net.alice.events_of(a)
    assert isinstance(alice_events[-2], MediaChanged) and alice_events[-1] == HoldChanged(True)
    assert alice_events[-2].media.local_direction == "sendonly"
    bob_events = net.bob.events_of(b)
    assert isinstance(bob_events[-2], MediaChanged) and bob_events[-1] == HoldChanged(True)
    assert bob_events[-2].media.on_hold_by_remote
    assert a.held_by_us and not a.held_by_remote
    assert b.held_by_remote and not b.held_by_us

    net.do(lambda now: a.hold(False, now=now))
    net.run(1)
    unhold = reinvites(net.alice)[-1]
    assert unhold.cseq == (3, "INVITE") and sdp_direction(unhold.body) == "sendrecv"
    assert sdp_direction(net.bob.sent_responses("INVITE")[-1].body) == "sendrecv"
    bob_events = net.bob.events_of(b)
    assert isinstance(bob_events[-2], MediaChanged) and bob_events[-1] == HoldChanged(False)
    assert not bob_events[-2].media.on_hold_by_remote
    assert net.alice.events_of(a)[-1] == HoldChanged(False)
    assert not a.held and not b.held


def test_hold_and_unhold_from_the_callee() -> None:
    """The callee's re-INVITE is its first request in the dialog: CSeq 1 (RFC 3261 12.2.1.1),
    From/To swapped, sent to the caller's Contact; the caller sees itself held."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: b.hold(True, now=now))
    net.run(1)
    (invite,) = net.bob.sent_requests("INVITE")
    assert invite.cseq == (1, "INVITE")
    assert invite.from_addr.tag == b.local_tag and invite.to_addr.tag == a.local_tag
    assert str(invite.uri) == f"sip:callboard@{ALICE[0]}:{ALICE[1]}"
    assert sdp_direction(invite.body) == "sendonly"
    assert net.alice.sent_statuses("INVITE")[-1] == 200
    assert sdp_direction(net.alice.sent_responses("INVITE")[-1].body) == "recvonly"
    assert net.alice.received_requests("ACK")[-1].cseq == (1, "ACK")

    alice_events = net.alice.events_of(a)
    assert isinstance(alice_events[-2], MediaChanged) and alice_events[-1] == HoldChanged(True)
    assert alice_events[-2].media.on_hold_by_remote
    assert net.bob.events_of(b)[-1] == HoldChanged(True)
    assert a.held_by_remote and b.held_by_us

    net.do(lambda now: b.hold(False, now=now))
    net.run(1)
    assert net.bob.sent_requests("INVITE")[-1].cseq == (2, "INVITE")
    alice_events = net.alice.events_of(a)
    assert isinstance(alice_events[-2], MediaChanged) and alice_events[-1] == HoldChanged(False)
    assert not alice_events[-2].media.on_hold_by_remote
    assert net.bob.events_of(b)[-1] == HoldChanged(False)
    assert not a.held and not b.held


def test_answer_to_a_hold_while_holding_is_inactive() -> None:
    """A side that holds and is then held answers the new offer with a=inactive (RFC 3264
    8.4): it still does not send, and now does not receive either."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: a.hold(True, now=now))
    net.run(1)
    net.do(lambda now: b.hold(True, now=now))
    net.run(1)
    assert sdp_direction(net.alice.sent_responses("INVITE")[-1].body) == "inactive"
    changed = [e for e in net.alice.events_of(a) if isinstance(e, MediaChanged)][-1]
    assert changed.media.local_direction == "inactive"  # what the TU's RTP must do
    assert a.held_by_us and a.held_by_remote and b.held_by_us and b.held_by_remote
    # Alice was already held (by herself): being held too is no change for her.
    assert net.alice.events_of(a).count(HoldChanged(True)) == 1
    net.do(lambda now: a.hold(False, now=now))
    net.run(1)
    assert a.held and b.held  # Bob still holds
    assert sdp_direction(net.bob.sent_responses("INVITE")[-1].body) == "sendonly"


def test_offerless_reinvite_gets_the_offer_in_the_200_and_the_answer_in_the_ack() -> None:
    """A re-INVITE without SDP asks the UAS to offer in its 2xx; the answer comes in the ACK
    (RFC 3261 14.2, RFC 3264): the UAS offers its current direction and reports the answer as
    MediaChanged, without a hold change."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: b.hold(True, now=now))
    net.run(1)
    assert a.dialog is not None
    before = len(net.bob.events_of(b))

    via = Via("UDP", ALICE[0], ALICE[1], {"branch": generate_branch()})
    invite = a.dialog.create_request("INVITE", via=via, contact=a._contact())
    net.send_raw(net.alice, invite)
    net.run(1)
    oks = [
        r
        for r in net.alice.received_responses("INVITE")
        if r.cseq == invite.cseq and r.status == 200
    ]
    ok = oks[0]  # retransmitted until the ACK comes
    assert ok.content_type == "application/sdp"
    assert sdp_direction(ok.body) == "sendonly"  # Bob still holds Alice
    assert net.bob.events_of(b)[before:] == []  # nothing until the answer

    a.sdp.receive_offer(ok.body)
    answer = a.sdp.create_answer()
    assert sdp_direction(answer) == "recvonly"
    via = Via("UDP", ALICE[0], ALICE[1], {"branch": generate_branch()})
    ack = a.dialog.create_ack(invite.cseq[0], via=via, body=answer, content_type="application/sdp")
    net.send_raw(net.alice, ack)
    net.run(40)  # past Timer L: the ACK stopped the 2xx retransmissions
    new = net.bob.events_of(b)[before:]
    assert len(new) == 1 and isinstance(new[0], MediaChanged)
    assert new[0].media.remote_direction == "recvonly"
    assert b.held_by_us and b.state is CallState.CONFIRMED
    assert len(net.bob.sent_times("INVITE", 200)) == 1 + len(oks)  # none after the ACK


@pytest.mark.parametrize("seed", range(5))
def test_glare_both_get_491_and_retry_in_their_windows(seed: int) -> None:
    """Both sides re-INVITE at once: each answers the other 491 (RFC 3261 14.2). The Call-ID's
    owner (the caller) retries 2.1-4 s later, the other side 0-2 s later (RFC 3261 14.1), so
    the retries cannot cross again; both holds land."""
    net = CallNet()
    net.alice.router.rng = net.bob.router.rng = random.Random(seed)
    a, b = connected_call(net)
    start = net.now
    net.do_all(lambda now: a.hold(True, now=now), lambda now: b.hold(True, now=now))
    net.run(10)
    assert net.alice.received_statuses("INVITE").count(491) == 1
    assert net.bob.received_statuses("INVITE").count(491) == 1
    assert net.alice.sent_statuses("INVITE").count(491) == 1
    assert net.bob.sent_statuses("INVITE").count(491) == 1

    alice_invites = net.alice.sent_times("INVITE")[1:]  # the first is the initial INVITE
    bob_invites = net.bob.sent_times("INVITE")
    assert len(alice_invites) == 2 and len(bob_invites) == 2
    assert alice_invites[0] == bob_invites[0] == start
    (alice_491,) = net.alice.received_times("INVITE", 491)
    (bob_491,) = net.bob.received_times("INVITE", 491)
    assert 2.1 <= alice_invites[1] - alice_491 <= 4.0
    assert 0.0 <= bob_invites[1] - bob_491 <= 2.0

    assert a.held_by_us and b.held_by_us and a.held_by_remote and b.held_by_remote
    for events in (net.alice.events_of(a), net.bob.events_of(b)):
        assert HoldChanged(True) in events and HoldChanged(False) not in events
    assert net.alice.received_statuses("INVITE")[-1] == 200
    assert net.bob.received_statuses("INVITE")[-1] == 200


def test_hold_while_a_reinvite_is_pending_raises() -> None:
    """Only one re-INVITE at a time (RFC 3261 14.1): the TU is told at once."""
    net = CallNet()
    a, _ = connected_call(net)
    net.do(lambda now: a.hold(True, now=now))
    with pytest.raises(SipCallError):
        a.hold(False, now=net.now)
    net.run(1)
    net.do(lambda now: a.hold(False, now=now))  # allowed once the first is answered
    net.run(1)
    assert not a.held


def test_hold_on_a_call_that_is_not_connected_raises() -> None:
    net = CallNet()
    a = net.call()
    net.run(1)
    assert a.state is CallState.CALLING
    with pytest.raises(SipCallError):
        a.hold(True, now=net.now)


def test_tu_reinvite_during_glare_backoff_replaces_the_retry() -> None:
    """After a 491 the TU may move first: its re-INVITE goes out at once and the scheduled
    retry is dropped, so the far end sees exactly one more re-INVITE."""
    net = CallNet()
    a, b = connected_call(net)
    net.do_all(lambda now: a.hold(True, now=now), lambda now: b.hold(True, now=now))
    net.run(0.1)  # both got 491
    net.bob.router.timer_queue.cancel(b, "glare")  # keep Bob out of it
    net.do(lambda now: a.hold(False, now=now))
    net.run(10)
    alice_reinvites = reinvites(net.alice)
    assert [sdp_direction(r.body) for r in alice_reinvites] == ["sendonly", "sendrecv"]
    assert not a.held_by_us and not b.held_by_remote


def test_lost_ack_to_a_reinvite_200_is_resent_with_the_reinvite_cseq() -> None:
    """The UAC re-ACKs every retransmission of a re-INVITE's 2xx with that re-INVITE's CSeq
    (RFC 3261 13.2.2.4), which stops the UAS's retransmissions (13.3.1.4)."""
    dropped: list[SipRequest] = []

    def drop(stack: Stack, message: SipRequest | SipResponse) -> bool:
        if isinstance(message, SipRequest) and message.cseq == (2, "ACK") and not dropped:
            dropped.append(message)
            return True
        return False

    net = CallNet(drop=drop)
    a, b = connected_call(net)
    net.do(lambda now: a.hold(True, now=now))
    net.run(40)
    assert dropped
    acks = [ack.cseq for ack in net.alice.sent_requests("ACK")]
    assert acks == [(1, "ACK"), (2, "ACK"), (2, "ACK")]
    oks = [r for r in net.bob.sent_responses("INVITE") if r.cseq == (2, "INVITE")]
    assert [r.status for r in oks] == [100, 200, 200]  # one retransmission, then the ACK
    assert net.bob.events_of(b).count(HoldChanged(True)) == 1
    assert net.alice.events_of(a).count(HoldChanged(True)) == 1
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED


def test_refused_reinvite_leaves_the_session_unchanged() -> None:
    """A non-2xx final response to a re-INVITE leaves the session as it was (RFC 3261 14.1):
    no hold is reported, and the next re-INVITE still works."""

    def rewrite(stack: Stack, message: SipRequest | SipResponse) -> None:
        if isinstance(message, SipRequest) and message.cseq == (2, "INVITE"):
            message.body = G729_ONLY_SDP

    net = CallNet(rewrite=rewrite)
    a, b = connected_call(net)
    before_a, before_b = len(net.alice.events_of(a)), len(net.bob.events_of(b))
    net.do(lambda now: a.hold(True, now=now))
    net.run(1)
    assert net.alice.received_statuses("INVITE")[-1] == 488
    assert net.alice.events_of(a)[before_a:] == []
    assert net.bob.events_of(b)[before_b:] == []
    assert not a.held and not b.held
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED

    net.do(lambda now: a.hold(True, now=now))
    net.run(1)
    assert reinvites(net.alice)[-1].cseq == (3, "INVITE")
    assert a.held_by_us and b.held_by_remote
