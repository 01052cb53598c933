"""Hanging up in every state (RFC 3261 15): a confirmed call ends with BYE from either side,
an unanswered inbound call with a final response (603, or 480 on ring timeout), and a BYE that
matches no dialog is answered 481 (RFC 3261 12.2.2). Outbound CANCEL is in test_call_cancel."""

from __future__ import annotations

import pytest

from callboard.sip.call_events import Ended
from callboard.sip.call_model import CallState
from callboard.sip.call_router import LINGER
from callboard.sip.header_map import Headers
from callboard.sip.headers import NameAddr, Via
from callboard.sip.invite_session import InviteSession
from callboard.sip.message import SipRequest, SipResponse, generate_branch
from callboard.sip.uri import SipUri
from tests.unit.sip.call_net import ALICE, BOB, CallNet, Stack, assert_idle, connected_call


def ringing_inbound(net: CallNet) -> tuple[InviteSession, InviteSession]:
    a = net.call()
    net.run(1)
    return a, net.bob.incoming[-1]


def test_caller_bye_in_confirmed() -> None:
    """The caller's BYE is built from the dialog: next CSeq, From/To tags, the callee's
    Contact as Request-URI; the callee answers 200 and ends remote_bye."""
    net = CallNet()
    a, b = connected_call(net)
    t = net.now
    net.do(lambda now: a.hangup("api_hangup", now=now))
    assert net.alice.events_of(a)[-1] == Ended("api_hangup") and a.state is CallState.ENDED
    net.run(1)
    (bye,) = net.alice.sent_requests("BYE")
    assert bye.cseq == (2, "BYE")
    assert bye.from_addr.tag == a.local_tag and bye.to_addr.tag == b.local_tag
    assert bye.call_id == a.call_id
    assert str(bye.uri) == f"sip:callboard@{BOB[0]}:{BOB[1]}"
    assert net.bob.events_of(b) == [Ended("remote_bye")]
    assert net.bob.times_of(b, Ended) == [pytest.approx(t + 0.02)]
    assert net.bob.sent_statuses("BYE") == [200]
    assert net.alice.received_statuses("BYE") == [200]
    net.run(64)
    assert_idle(net)


def test_callee_bye_in_confirmed() -> None:
    """The callee's BYE is its first request in the dialog (CSeq 1) and goes to the caller's
    Contact; the caller ends remote_bye."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: b.hangup("api_hangup", now=now))
    net.run(1)
    (bye,) = net.bob.sent_requests("BYE")
    assert bye.cseq == (1, "BYE")
    assert bye.from_addr.tag == b.local_tag and bye.to_addr.tag == a.local_tag
    assert str(bye.uri) == f"sip:callboard@{ALICE[0]}:{ALICE[1]}"
    assert net.alice.events_of(a)[-1] == Ended("remote_bye")
    assert net.bob.events_of(b) == [Ended("api_hangup")]
    net.run(64)
    assert_idle(net)


@pytest.mark.parametrize(
    ("reason", "status", "caller_reason"),
    [("api_hangup", 603, "declined"), ("ring_timeout", 480, "unavailable")],
)
def test_inbound_hangup_while_ringing(reason: str, status: int, caller_reason: str) -> None:
    """Hanging up an unanswered inbound call answers the INVITE: 603 Decline, or 480
    Temporarily Unavailable when it rang out; the caller ACKs it and ends."""
    net = CallNet()
    a, b = ringing_inbound(net)
    assert b.state is CallState.INCOMING
    net.do(lambda now: b.hangup(reason, now=now))
    assert net.bob.events_of(b) == [Ended(reason)]
    net.run(1)
    assert net.bob.sent_statuses("INVITE") == [100, 180, status]
    final = net.bob.sent_responses("INVITE")[-1]
    assert final.to_addr.tag == b.local_tag
    (ack,) = net.bob.received_requests("ACK")
    assert ack.cseq == (1, "ACK")
    assert net.alice.events_of(a)[-1] == Ended(caller_reason)
    assert net.bob.sent_requests("BYE") == [] and net.alice.sent_requests("BYE") == []
    net.run(64)
    assert_idle(net)


def test_inbound_hangup_in_early_media() -> None:
    """After 183 with SDP the inbound call is still unanswered: hang-up is a 603, not a BYE."""
    net = CallNet()
    net.bob.on_incoming = lambda session, request: session.early_media(now=net.now)
    a, b = ringing_inbound(net)
    assert b.state is CallState.EARLY
    net.do(lambda now: b.hangup("api_hangup", now=now))
    net.run(1)
    assert net.bob.sent_statuses("INVITE") == [100, 180, 183, 603]
    assert net.bob.sent_requests("BYE") == []
    assert net.alice.events_of(a)[-1] == Ended("declined")
    assert net.bob.events_of(b) == [Ended("api_hangup")]


def test_reject_with_a_chosen_status_and_reason() -> None:
    """`reject` answers the INVITE with the TU's status and ends the leg with its reason."""
    net = CallNet()
    a, b = ringing_inbound(net)
    net.do(lambda now: b.reject(486, now=now, reason="busy_here"))
    net.run(1)
    assert net.bob.sent_statuses("INVITE")[-1] == 486
    assert net.bob.events_of(b) == [Ended("busy_here")]
    assert net.alice.events_of(a)[-1] == Ended("busy")


def test_hangup_twice_sends_one_bye_and_one_ended() -> None:
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: a.hangup("api_hangup", now=now))
    net.do(lambda now: a.hangup("again", now=now))
    net.run(64)
    assert len(net.alice.sent_requests("BYE")) == 1
    assert net.alice.events_of(a).count(Ended("api_hangup")) == 1
    assert [e for e in net.alice.events_of(a) if isinstance(e, Ended)] == [Ended("api_hangup")]
    assert net.bob.events_of(b) == [Ended("remote_bye")]


def test_bye_retransmitted_when_its_200_is_lost() -> None:
    """A lost 200 to BYE makes the BYE be retransmitted; the callee's server transaction
    answers the copy and the callee's leg ends once."""
    lost: list[SipResponse] = []

    def drop(stack: Stack, message: SipRequest | SipResponse) -> bool:
        if isinstance(message, SipResponse) and message.cseq[1] == "BYE" and not lost:
            lost.append(message)
            return True
        return False

    net = CallNet(drop=drop)
    a, b = connected_call(net)
    net.do(lambda now: a.hangup("api_hangup", now=now))
    net.run(64)
    assert len(net.alice.sent_requests("BYE")) == 2
    assert net.bob.sent_statuses("BYE") == [200, 200]
    assert net.bob.events_of(b) == [Ended("remote_bye")]
    assert_idle(net)


def test_unanswered_bye_still_ends_the_leg_once() -> None:
    """A BYE that is never answered times out (Timer F) without a second event: the leg
    ended when the BYE was sent."""
    net = CallNet()
    a, _ = connected_call(net)
    net.drop = lambda stack, message: stack is net.alice
    net.do(lambda now: a.hangup("api_hangup", now=now))
    net.run(64)
    assert len(net.alice.sent_requests("BYE")) > 1  # retransmitted until Timer F
    assert [e for e in net.alice.events_of(a) if isinstance(e, Ended)] == [Ended("api_hangup")]
    assert len(net.alice.layer) == 0 and net.alice.router.calls == []


def test_bye_for_an_unknown_dialog_gets_481() -> None:
    """A BYE whose dialog does not exist (RFC 3261 15.1.2, 12.2.2) is answered 481 Call/
    Transaction Does Not Exist, and disturbs no call."""
    net = CallNet()
    a, b = connected_call(net)
    headers = Headers()
    headers.add("Via", str(Via("UDP", ALICE[0], ALICE[1], {"branch": generate_branch()})))
    headers.add("Max-Forwards", "70")
    headers.add(
        "From", str(NameAddr(SipUri(user="alice", host=ALICE[0]), params={"tag": "nosuchtag"}))
    )
    headers.add("To", str(NameAddr(SipUri(user="bob", host=BOB[0]), params={"tag": "othertag"})))
    headers.add("Call-ID", "no-such-call@10.0.0.1")
    headers.add("CSeq", "7 BYE")
    bye = SipRequest("BYE", SipUri(user="callboard", host=BOB[0], port=BOB[1]), headers)
    net.send_raw(net.alice, bye)
    net.run(1)
    (response,) = [r for r in net.alice.received_responses("BYE") if r.call_id == bye.call_id]
    assert response.status == 481
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED


def test_bye_with_a_wrong_to_tag_gets_481() -> None:
    """Right Call-ID, wrong tag: still no such dialog."""
    net = CallNet()
    a, b = connected_call(net)
    assert a.dialog is not None
    via = Via("UDP", ALICE[0], ALICE[1], {"branch": generate_branch()})
    bye = a.dialog.create_request("BYE", via=via)
    bye.headers.set("To", str(NameAddr(SipUri(user="bob", host=BOB[0]), params={"tag": "wrong"})))
    net.send_raw(net.alice, bye)
    net.run(1)
    assert net.alice.received_statuses("BYE") == [481]
    assert b.state is CallState.CONFIRMED


def test_hangup_while_a_reinvite_is_pending_still_acks_its_2xx() -> None:
    """The TU hangs up right after asking for a hold: the BYE goes out at once, and the
    re-INVITE's 2xx that arrives afterwards is still ACKed with the re-INVITE's CSeq (the UAC
    ACKs every 2xx to its INVITEs, RFC 3261 13.2.2.4), so the far end stops retransmitting."""
    net = CallNet()
    a, b = connected_call(net)
    net.do_all(lambda now: a.hold(True, now=now), lambda now: a.hangup("api_hangup", now=now))
    net.run(64)
    assert [r.cseq for r in net.alice.sent_requests("BYE")] == [(3, "BYE")]
    assert net.bob.sent_times("INVITE", 200)[1:] == [
        pytest.approx(net.bob.received_times("INVITE")[-1])
    ]
    assert (2, "ACK") in [ack.cseq for ack in net.alice.sent_requests("ACK")]
    assert net.bob.events_of(b)[-1] == Ended("remote_bye")
    assert [e for e in net.alice.events_of(a) if isinstance(e, Ended)] == [Ended("api_hangup")]
    assert_idle(net)


def routed_to(stack: Stack, session: InviteSession) -> bool:
    return any(s is session for s in stack.router._by_tx.values())


@pytest.mark.parametrize("who", ["caller", "callee"])
def test_an_ended_inbound_call_that_never_reinvited_lets_go_at_once(who: str) -> None:
    """Nothing can come for it that needs the call (its server transactions absorb
    retransmitted requests), so the callee's side keeps no routing and no timer once it has
    ended, whichever side hung up; the caller's side keeps routing its INVITE for a late
    2xx until LINGER."""
    net = CallNet()
    a, b = connected_call(net)
    hanging_up = a if who == "caller" else b
    net.do(lambda now: hanging_up.hangup("api_hangup", now=now))
    net.run(1)
    assert b.state is CallState.ENDED and a.state is CallState.ENDED
    assert not routed_to(net.bob, b) and net.bob.router.next_deadline() is None
    assert routed_to(net.alice, a)
    assert net.alice.router.next_deadline() == pytest.approx(net.now - 1 + LINGER, abs=0.1)
    net.run(64)
    assert_idle(net)


def test_an_ended_inbound_call_with_a_reinvite_still_reacks_its_late_2xx() -> None:
    """A callee that re-INVITEd (a hold) keeps routing that INVITE after the call ends: a
    retransmitted 2xx of it must still be ACKed, or the far end keeps sending it."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: b.hold(True, now=now))
    net.run(1)
    net.do(lambda now: a.hangup("api_hangup", now=now))
    net.run(1)
    assert b.state is CallState.ENDED and routed_to(net.bob, b)
    net.run(64)
    assert_idle(net)
