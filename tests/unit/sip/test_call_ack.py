"""The ACK for a 2xx to the initial INVITE (RFC 3261 13.2.2.4, 13.3.1.4, RFC 6026): the UAS
retransmits its 2xx (T1, doubling up to T2) until the ACK arrives; the UAC ACKs every copy;
with no ACK for 64*T1 the UAS ends the call with a BYE."""

from __future__ import annotations

import itertools

import pytest

from callboard.sdp.negotiation import SdpSession
from callboard.sip.call_events import Answered, Ended, MediaChanged, Ringing
from callboard.sip.call_model import CallState
from callboard.sip.header_map import Headers
from callboard.sip.headers import Via
from callboard.sip.message import SipRequest, SipResponse, generate_branch
from tests.unit.sip.call_net import ALICE, BOB, CallNet, Stack, assert_idle


def answered_net(lost_acks: int) -> CallNet:
    """Bob answers at once; the first `lost_acks` ACKs from Alice are lost."""
    lost: list[SipRequest] = []

    def drop(stack: Stack, message: SipRequest | SipResponse) -> bool:
        if isinstance(message, SipRequest) and message.method == "ACK" and len(lost) < lost_acks:
            lost.append(message)
            return True
        return False

    net = CallNet(drop=drop)
    net.bob.on_incoming = lambda session, request: session.answer(now=net.now)
    return net


def test_lost_ack_makes_the_200_come_again_and_it_is_reacked() -> None:
    """The first ACK is lost: Bob's 200 is retransmitted after T1, Alice ACKs the copy with
    the same ACK, and the call stays up with one Answered."""
    net = answered_net(1)
    a = net.call()
    net.run(60)
    (b,) = net.bob.incoming
    oks = net.bob.sent_times("INVITE", 200)
    assert oks == [pytest.approx(0.02), pytest.approx(0.52)]
    acks = net.alice.sent_requests("ACK")
    assert len(acks) == 2 and acks[0].to_bytes() == acks[1].to_bytes()
    assert acks[0].cseq == (1, "ACK") and acks[0].to_addr.tag == b.local_tag
    assert len(net.bob.received_requests("ACK")) == 1
    assert [type(e) for e in net.alice.events_of(a)] == [Ringing, Answered]
    assert net.bob.events_of(b) == []
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED


def test_several_lost_acks_back_off_from_t1() -> None:
    """The 2xx is retransmitted at T1, 2*T1, 4*T1 ... (RFC 3261 13.3.1.4); each copy is ACKed
    again until one ACK gets through."""
    net = answered_net(3)
    a = net.call()
    net.run(60)
    (b,) = net.bob.incoming
    oks = net.bob.sent_times("INVITE", 200)
    assert [round(t2 - t1, 6) for t1, t2 in itertools.pairwise(oks)] == [0.5, 1.0, 2.0]
    assert len(net.alice.sent_requests("ACK")) == 4
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED
    assert [type(e) for e in net.alice.events_of(a)] == [Ringing, Answered]


def test_no_ack_at_all_ends_the_call_after_64_t1_with_bye() -> None:
    """With every ACK lost the UAS gives up 64*T1 = 32 s after its first 2xx, ends the call
    "timeout" and sends BYE (RFC 3261 13.3.1.4); the caller ends remote_bye."""
    net = answered_net(10**6)
    a = net.call()
    net.run(31.9)
    (b,) = net.bob.incoming
    assert b.state is CallState.CONFIRMED
    net.run(10)
    first_ok = net.bob.sent_times("INVITE", 200)[0]
    assert net.bob.events_of(b) == [Ended("timeout")]
    assert net.bob.times_of(b, Ended) == [pytest.approx(first_ok + 32.0)]
    assert net.bob.sent_times("BYE")[0] == pytest.approx(first_ok + 32.0)
    oks = net.bob.sent_times("INVITE", 200)
    gaps = [round(t2 - t1, 6) for t1, t2 in itertools.pairwise(oks)]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0] and max(gaps) == 4.0  # capped at T2
    assert len(net.alice.sent_requests("ACK")) == len(oks)  # every copy was ACKed
    assert net.alice.events_of(a)[-1] == Ended("remote_bye")
    net.run(64)
    assert_idle(net)


def test_offerless_invite_gets_its_answer_in_the_ack() -> None:
    """An INVITE without SDP: the UAS offers in its 2xx and the ACK carries the answer
    (RFC 3264 2, RFC 3261 13.2.1); `answer()` has no media to return then, and the callee's
    TU learns the media from MediaChanged when the ACK arrives."""
    net = CallNet()
    answered: list[object] = []
    net.bob.on_incoming = lambda session, request: answered.append(session.answer(now=net.now))
    headers = Headers()
    headers.add("Via", str(Via("UDP", ALICE[0], ALICE[1], {"branch": generate_branch()})))
    headers.add("Max-Forwards", "70")
    headers.add("From", f"<sip:raw@{ALICE[0]}>;tag=rawtag")
    headers.add("To", f"<sip:bob@{BOB[0]}>")
    headers.add("Call-ID", "offerless@10.0.0.1")
    headers.add("CSeq", "1 INVITE")
    headers.add("Contact", f"<sip:raw@{ALICE[0]}:{ALICE[1]}>")
    invite = SipRequest("INVITE", f"sip:bob@{BOB[0]}:{BOB[1]}", headers)
    net.send_raw(net.alice, invite)
    net.run(0.1)
    (b,) = net.bob.incoming
    assert answered == [None] and b.state is CallState.CONFIRMED
    ok = next(r for r in net.alice.received_responses("INVITE") if r.status == 200)
    assert ok.content_type == "application/sdp" and b"m=audio" in ok.body
    assert net.bob.events_of(b) == []

    sdp = SdpSession(local_ip=ALICE[0], local_port=41000, codecs=["PCMA"])
    sdp.receive_offer(ok.body)
    ack_headers = Headers()
    ack_headers.add("Via", str(Via("UDP", ALICE[0], ALICE[1], {"branch": generate_branch()})))
    ack_headers.add("Max-Forwards", "70")
    ack_headers.add("From", f"<sip:raw@{ALICE[0]}>;tag=rawtag")
    ack_headers.add("To", ok.headers.get("To") or "")
    ack_headers.add("Call-ID", "offerless@10.0.0.1")
    ack_headers.add("CSeq", "1 ACK")
    ack_headers.add("Content-Type", "application/sdp")
    ack = SipRequest("ACK", ok.contacts()[0].uri, ack_headers, sdp.create_answer())
    net.send_raw(net.alice, ack)
    net.run(40)
    (changed,) = net.bob.events_of(b)
    assert isinstance(changed, MediaChanged)
    assert changed.media.codec.name == "PCMA" and changed.media.remote_port == 41000
    assert b.media == changed.media and b.state is CallState.CONFIRMED
    assert len(net.bob.sent_times("INVITE", 200)) == 1  # the ACK stopped the 2xx
