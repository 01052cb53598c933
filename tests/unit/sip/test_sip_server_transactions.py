"""INVITE and non-INVITE server transactions on a fake clock (RFC 3261 17.2, RFC 6026)."""

from __future__ import annotations

import pytest

from callboard.sip.message import SipRequest, SipResponse, make_response, parse_message
from callboard.sip.transaction import (
    RequestReceived,
    TransactionLayer,
    TransactionTimeout,
    TxEvent,
)
from tests.unit.sip.sip_samples import FakeClock, request, response

SOURCE = ("198.51.100.7", 40000)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(TransactionLayer())


def receive(clock: FakeClock, at: float, req: SipRequest, transport: str = "udp") -> list[TxEvent]:
    clock.run_until(at)
    # a fresh parse each time, as a retransmission would arrive
    wire = parse_message(req.to_bytes())
    return clock.collect(clock.layer.receive(wire, SOURCE, transport, clock.now))


def answer(
    clock: FakeClock, at: float, req: SipRequest, status: int, to_tag: str = "uas"
) -> SipResponse:
    clock.run_until(at)
    resp = make_response(req, status, to_tag=to_tag)
    clock.layer.send_response(resp, clock.now)
    clock.collect()
    return resp


def ack_for(req: SipRequest, resp: SipResponse, branch: str) -> SipRequest:
    ack = request(
        "ACK", branch=branch, call_id=req.call_id, cseq=req.cseq[0], to_tag=resp.to_addr.tag
    )
    return ack


def assert_drained(clock: FakeClock) -> None:
    clock.run_until(clock.now + 200)
    assert len(clock.layer) == 0
    assert clock.layer.next_deadline() is None


class TestInviteServer:
    def test_new_invite_delivered_and_trying_sent(self, clock: FakeClock) -> None:
        invite = request()
        events = receive(clock, 0, invite)
        assert len(events) == 1 and isinstance(events[0], RequestReceived)
        event = events[0]
        assert event.tx_key == "s:z9hG4bKtest1:10.0.0.1:5060:INVITE"
        assert (event.source, event.transport) == (SOURCE, "udp")
        (trying,) = clock.take_sent()
        assert isinstance(trying.message, SipResponse) and trying.message.status == 100
        assert trying.message.to_addr.tag is None
        assert (trying.dest, trying.transport) == (SOURCE, "udp")

    def test_retransmission_resends_last_response_without_redelivery(
        self, clock: FakeClock
    ) -> None:
        invite = request()
        receive(clock, 0, invite)
        assert receive(clock, 0.5, invite) == []
        answer(clock, 0.6, invite, 180)
        assert receive(clock, 1.5, invite) == []
        assert clock.sent_times(100) == [0, 0.5]
        assert clock.sent_times(180) == [0.6, 1.5]

    def test_2xx_retransmitted_until_ack(self, clock: FakeClock) -> None:
        invite = request()
        receive(clock, 0, invite)
        ok = answer(clock, 1, invite, 200)
        clock.run_until(1 + 12)
        assert clock.sent_times(200) == [1, 1.5, 2.5, 4.5, 8.5, 12.5]
        events = receive(clock, 13, ack_for(invite, ok, "z9hG4bKack1"))
        assert len(events) == 1 and isinstance(events[0], RequestReceived)
        assert events[0].tx_key is None and events[0].request.method == "ACK"
        clock.run_until(30)
        assert clock.sent_times(200)[-1] == 12.5
        # duplicate ACKs and late INVITE retransmissions are absorbed while Accepted
        assert receive(clock, 31, ack_for(invite, ok, "z9hG4bKack2")) == []
        assert receive(clock, 32, invite) == []
        assert clock.run_until(33) == []  # Timer L after an ACK: no event
        assert len(clock.layer) == 0
        # an ACK once the transaction is gone still reaches the TU
        events = receive(clock, 40, ack_for(invite, ok, "z9hG4bKack3"))
        assert [getattr(e, "tx_key", "x") for e in events] == [None]

    def test_ack_with_invite_branch_also_confirms_2xx(self, clock: FakeClock) -> None:
        invite = request()
        receive(clock, 0, invite)
        ok = answer(clock, 0, invite, 200)
        events = receive(clock, 0.1, ack_for(invite, ok, "z9hG4bKtest1"))
        assert [type(e) for e in events] == [RequestReceived]
        clock.run_until(5)
        assert clock.sent_times(200) == [0]

    def test_2xx_without_ack_times_out(self, clock: FakeClock) -> None:
        invite = request()
        key = receive(clock, 0, invite)[0].tx_key  # type: ignore[union-attr]
        answer(clock, 0, invite, 200)
        fired = clock.run_until(40)
        assert fired == [TransactionTimeout(key, fired[0].request, "no_ack")]  # type: ignore[union-attr]
        assert clock.events[-1][0] == 32
        times = clock.sent_times(200)
        assert times[:5] == [0, 0.5, 1.5, 3.5, 7.5] and times[-1] == 31.5
        assert_drained(clock)

    def test_2xx_over_tcp_is_not_retransmitted(self, clock: FakeClock) -> None:
        invite = request(transport="TCP")
        receive(clock, 0, invite, "tcp")
        ok = answer(clock, 0, invite, 200)
        clock.run_until(10)
        assert clock.sent_times(200) == [0]
        receive(clock, 10, ack_for(invite, ok, "z9hG4bKack"), "tcp")
        assert_drained(clock)

    def test_error_response_retransmitted_until_ack_which_is_absorbed(
        self, clock: FakeClock
    ) -> None:
        invite = request()
        receive(clock, 0, invite)
        busy = answer(clock, 0, invite, 486)
        clock.run_until(9)
        assert clock.sent_times(486) == [0, 0.5, 1.5, 3.5, 7.5]
        assert receive(clock, 9.2, invite) == []  # retransmitted INVITE: 486 again
        assert clock.sent_times(486)[-1] == 9.2
        ack = ack_for(invite, busy, "z9hG4bKtest1")
        assert receive(clock, 9.5, ack) == []
        assert receive(clock, 9.6, ack) == []
        clock.run_until(20)
        assert clock.sent_times(486)[-1] == 9.2
        assert clock.run_until(9.5 + 5) == []
        assert len(clock.layer) == 0

    def test_error_response_without_ack_timer_h(self, clock: FakeClock) -> None:
        invite = request()
        receive(clock, 0, invite)
        answer(clock, 0, invite, 404)
        fired = clock.run_until(40)
        assert [(type(e), e.kind) for e in fired] == [(TransactionTimeout, "no_ack")]  # type: ignore[union-attr]
        assert clock.events[-1][0] == 32
        assert_drained(clock)

    def test_error_response_over_tcp_ends_at_ack(self, clock: FakeClock) -> None:
        invite = request(transport="TCP")
        receive(clock, 0, invite, "tcp")
        busy = answer(clock, 0, invite, 486)
        receive(clock, 0.1, ack_for(invite, busy, "z9hG4bKtest1"), "tcp")
        assert len(clock.layer) == 0
        assert clock.sent_times(486) == [0]

    def test_responses_not_allowed_by_state_are_ignored(self, clock: FakeClock) -> None:
        invite = request()
        receive(clock, 0, invite)
        answer(clock, 0, invite, 486)
        answer(clock, 0.1, invite, 200)
        answer(clock, 0.1, invite, 180)
        assert clock.sent_times(200) == [] and clock.sent_times(180) == []

    def test_unknown_transaction_raises_key_error(self, clock: FakeClock) -> None:
        with pytest.raises(KeyError):
            clock.layer.send_response(response(request(), 200), 0)

    def test_rfc2543_peer_without_magic_cookie(self, clock: FakeClock) -> None:
        invite = request(branch="oldstyle1")
        events = receive(clock, 0, invite)
        assert events[0].tx_key.startswith("s2543:")  # type: ignore[union-attr]
        assert receive(clock, 0.5, invite) == []
        busy = answer(clock, 1, invite, 480)
        assert receive(clock, 1.1, ack_for(invite, busy, "oldstyle1")) == []
        clock.run_until(10)
        assert clock.sent_times(480) == [1]  # the ACK matched: Timer G stopped
        assert_drained(clock)


class TestCancelHandling:
    def test_cancel_answers_200_and_487_then_delivers(self, clock: FakeClock) -> None:
        invite = request()
        key = receive(clock, 0, invite)[0].tx_key  # type: ignore[union-attr]
        ringing = answer(clock, 0.1, invite, 180, to_tag="ring")
        clock.take_sent()
        cancel = request("CANCEL")
        events = receive(clock, 1, cancel)
        assert len(events) == 1 and isinstance(events[0], RequestReceived)
        assert events[0].request.method == "CANCEL" and events[0].tx_key == key
        sent = clock.take_sent()
        assert [(o.message.status, o.message.cseq[1]) for o in sent] == [
            (200, "CANCEL"),
            (487, "INVITE"),
        ]  # type: ignore[union-attr]
        assert all(o.dest == SOURCE for o in sent)
        assert {o.message.to_addr.tag for o in sent} == {ringing.to_addr.tag}
        # the TU's late answer is ignored; the 487 waits for its ACK
        answer(clock, 1.1, invite, 200)
        assert clock.sent_times(200) == []
        assert receive(clock, 1.2, cancel) == []  # CANCEL retransmission: 200 again
        assert clock.sent_times(200) == [1.2]
        receive(clock, 1.3, ack_for(invite, sent[1].message, "z9hG4bKtest1"))  # type: ignore[arg-type]
        assert_drained(clock)

    def test_cancel_before_any_provisional_gets_a_shared_tag(self, clock: FakeClock) -> None:
        invite = request()
        receive(clock, 0, invite)
        clock.take_sent()
        receive(clock, 0.2, request("CANCEL"))
        sent = clock.take_sent()
        tags = {o.message.to_addr.tag for o in sent}
        assert len(tags) == 1 and None not in tags

    def test_cancel_without_transaction_gets_481(self, clock: FakeClock) -> None:
        assert receive(clock, 0, request("CANCEL")) == []
        (out,) = clock.take_sent()
        assert isinstance(out.message, SipResponse) and out.message.status == 481
        assert_drained(clock)

    def test_cancel_after_final_response_is_not_delivered(self, clock: FakeClock) -> None:
        invite = request()
        receive(clock, 0, invite)
        ok = answer(clock, 0.1, invite, 200)
        clock.take_sent()
        assert receive(clock, 0.2, request("CANCEL")) == []
        (out,) = clock.take_sent()
        assert (out.message.status, out.message.cseq[1]) == (200, "CANCEL")  # type: ignore[union-attr]
        receive(clock, 0.3, ack_for(invite, ok, "z9hG4bKa"))
        assert_drained(clock)

    def test_cancel_for_other_branch_is_481(self, clock: FakeClock) -> None:
        receive(clock, 0, request())
        clock.take_sent()
        receive(clock, 0.1, request("CANCEL", branch="z9hG4bKother"))
        (out,) = clock.take_sent()
        assert out.message.status == 481  # type: ignore[union-attr]


class TestNonInviteServer:
    def test_retransmissions_absorbed_then_answered(self, clock: FakeClock) -> None:
        bye = request("BYE", to_tag="uas")
        events = receive(clock, 0, bye)
        assert [type(e) for e in events] == [RequestReceived]
        assert clock.take_sent() == []  # no automatic 100 for non-INVITE
        assert receive(clock, 0.5, bye) == []
        assert clock.take_sent() == []
        answer(clock, 0.6, bye, 200)
        assert receive(clock, 1.5, bye) == []
        assert clock.sent_times(200) == [0.6, 1.5]
        clock.run_until(0.6 + 31.9)
        assert len(clock.layer) == 1  # Timer J
        clock.run_until(0.6 + 32)
        assert len(clock.layer) == 0

    def test_provisional_then_final(self, clock: FakeClock) -> None:
        req = request("REFER", to_tag="uas")
        receive(clock, 0, req)
        answer(clock, 0, req, 100)
        receive(clock, 0.5, req)
        answer(clock, 1, req, 202)
        answer(clock, 1, req, 500)  # a second final is ignored
        assert clock.sent_times(100) == [0, 0.5]
        assert clock.sent_times(202) == [1] and clock.sent_times(500) == []
        assert_drained(clock)

    def test_tcp_terminates_on_final(self, clock: FakeClock) -> None:
        req = request("OPTIONS", transport="TCP")
        receive(clock, 0, req, "tcp")
        answer(clock, 0, req, 200)
        assert len(clock.layer) == 0
        out = clock.take_sent()[0]
        assert (out.dest, out.transport) == (SOURCE, "tcp")

    def test_tu_that_never_answers_does_not_leak(self, clock: FakeClock) -> None:
        receive(clock, 0, request("OPTIONS"))
        assert clock.run_until(40) == []
        assert len(clock.layer) == 0
