"""INVITE and non-INVITE client transactions on a fake clock (RFC 3261 17.1, RFC 6026)."""

from __future__ import annotations

import itertools

import pytest

from callboard.sip.message import SipRequest
from callboard.sip.transaction import (
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
    TransportFailure,
)
from tests.unit.sip.sip_samples import FakeClock, request, response

DEST = ("192.0.2.10", 5060)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(TransactionLayer())


def start(
    clock: FakeClock, method: str = "INVITE", transport: str = "udp"
) -> tuple[str, SipRequest]:
    req = request(method, routes=("<sip:proxy.example.com;lr>",))
    key = clock.layer.send_request(req, DEST, transport, clock.now)
    clock.collect()
    return key, req


def assert_drained(clock: FakeClock) -> None:
    clock.run_until(clock.now + 200)
    assert len(clock.layer) == 0
    assert clock.layer.next_deadline() is None


def deliver(clock: FakeClock, at: float, req: SipRequest, status: int) -> list[object]:
    clock.run_until(at)
    return list(clock.collect(clock.layer.receive(response(req, status), DEST, "udp", clock.now)))


class TestInviteClient:
    def test_retransmits_with_doubling_then_timer_b(self, clock: FakeClock) -> None:
        key, _ = start(clock)
        assert key.startswith("c:z9hG4bK") and key.endswith(":INVITE")
        fired = clock.run_until(40)
        assert clock.sent_times("INVITE") == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
        assert [(type(e), e.kind) for e in fired] == [(TransactionTimeout, "no_response")]  # type: ignore[union-attr]
        assert clock.events[-1][0] == 32
        assert all(out.dest == DEST and out.transport == "udp" for _, out in clock.sent)
        assert_drained(clock)

    def test_no_retransmission_over_tcp(self, clock: FakeClock) -> None:
        start(clock, transport="tcp")
        fired = clock.run_until(40)
        assert clock.sent_times("INVITE") == [0]
        assert isinstance(fired[0], TransactionTimeout) and clock.events[0][0] == 32
        assert_drained(clock)

    def test_provisional_stops_retransmissions_and_timer_b(self, clock: FakeClock) -> None:
        key, req = start(clock)
        events = deliver(clock, 0.7, req, 180)
        assert events == [ResponseReceived(events[0].response, key)]  # type: ignore[attr-defined]
        assert clock.run_until(100) == []
        assert clock.sent_times("INVITE") == [0, 0.5]
        assert len(clock.layer) == 1  # Proceeding waits for the final response

    def test_non_2xx_final_is_acked_by_the_transaction(self, clock: FakeClock) -> None:
        _key, req = start(clock)
        deliver(clock, 0.2, req, 180)
        events = deliver(clock, 1.0, req, 486)
        assert [e.response.status for e in events] == [486]  # type: ignore[attr-defined]
        (ack_out,) = [out for _, out in clock.sent if out.message.start_line().startswith("ACK")]
        ack = ack_out.message
        assert isinstance(ack, SipRequest) and ack_out.dest == DEST
        assert ack.uri == req.uri
        assert ack.cseq == (req.cseq[0], "ACK")
        assert [str(v) for v in ack.vias] == [str(req.top_via)]
        assert ack.to_addr.tag == "totag"
        assert ack.from_addr == req.from_addr and ack.call_id == req.call_id
        assert ack.headers.get_all("Route") == req.headers.get_all("Route")
        # a retransmitted final response is answered with the same ACK, not delivered again
        assert deliver(clock, 2.0, req, 486) == []
        assert clock.sent_times("ACK") == [1.0, 2.0]
        clock.run_until(1.0 + 31.9)
        assert len(clock.layer) == 1  # Timer D keeps absorbing for 32 s
        assert_drained(clock)

    def test_non_2xx_over_tcp_terminates_at_once(self, clock: FakeClock) -> None:
        _key, req = start(clock, transport="tcp")
        clock.collect(clock.layer.receive(response(req, 603), DEST, "tcp", 0.1))
        assert clock.sent_times("ACK") == [0]
        assert len(clock.layer) == 0

    def test_2xx_enters_accepted_and_retransmissions_are_delivered(self, clock: FakeClock) -> None:
        _key, req = start(clock)
        first = deliver(clock, 0.3, req, 200)
        again = deliver(clock, 0.8, req, 200)
        assert [type(e) for e in first + again] == [ResponseReceived, ResponseReceived]
        assert clock.sent_times("ACK") == []  # the TU acknowledges a 2xx itself
        assert clock.sent_times("INVITE") == [0]
        clock.run_until(0.3 + 31.9)
        assert deliver(clock, 0.3 + 31.95, req, 200) != []
        clock.run_until(0.3 + 32.0)
        assert len(clock.layer) == 0  # Timer M
        assert deliver(clock, 40, req, 200) == []  # stray after Accepted: dropped

    def test_transport_failure(self, clock: FakeClock) -> None:
        key, req = start(clock, transport="tcp")
        other_key = clock.layer.send_request(
            request("OPTIONS", branch="z9hG4bKother"), ("192.0.2.99", 5060), "tcp", 0
        )
        events = clock.layer.report_transport_error(DEST, "tcp", 0.1)
        assert events == [TransportFailure(key, req)]
        assert len(clock.layer) == 1 and other_key
        assert clock.layer.report_transport_error(DEST, "udp", 0.1) == []

    def test_stray_responses_dropped(self, clock: FakeClock) -> None:
        assert clock.layer.receive(response(request(), 200), DEST, "udp", 0) == []
        _key, req = start(clock, method="INVITE")
        wrong_method = response(req, 200)
        wrong_method.headers.set("CSeq", "1 BYE")
        assert clock.layer.receive(wrong_method, DEST, "udp", 0) == []

    def test_invalid_requests_are_refused(self, clock: FakeClock) -> None:
        no_branch = request()
        no_branch.headers.set("Via", "SIP/2.0/UDP h:5060")
        with pytest.raises(ValueError):
            clock.layer.send_request(no_branch, DEST, "udp", 0)
        with pytest.raises(ValueError):
            clock.layer.send_request(request("ACK"), DEST, "udp", 0)
        clock.layer.send_request(request(), DEST, "udp", 0)
        with pytest.raises(ValueError):
            clock.layer.send_request(request(), DEST, "udp", 0)


class TestCancel:
    def test_cancel_after_provisional_is_sent_at_once(self, clock: FakeClock) -> None:
        key, req = start(clock)
        deliver(clock, 0.2, req, 180)
        cancel_key = clock.layer.cancel_request(key, clock.now)
        clock.collect()
        assert cancel_key == f"c:{req.top_via.branch}:CANCEL"
        (cancel_out,) = [o for _, o in clock.sent if o.message.start_line().startswith("CANCEL")]
        cancel = cancel_out.message
        assert isinstance(cancel, SipRequest) and cancel_out.dest == DEST
        assert cancel.uri == req.uri and cancel.call_id == req.call_id
        assert cancel.cseq == (req.cseq[0], "CANCEL")
        assert cancel.headers.get("To") == req.headers.get("To")
        assert cancel.headers.get("From") == req.headers.get("From")
        assert [str(v) for v in cancel.vias] == [str(req.top_via)]
        assert cancel.headers.get_all("Route") == req.headers.get_all("Route")
        # asking again gives the same CANCEL transaction
        assert clock.layer.cancel_request(key, clock.now) == cancel_key
        clock.collect()
        assert clock.sent_times("CANCEL") == [0.2]
        # 200 for the CANCEL, then 487 for the INVITE (auto-ACKed)
        events = clock.collect(clock.layer.receive(response(cancel, 200), DEST, "udp", 0.3))
        assert events == [ResponseReceived(events[0].response, cancel_key)]  # type: ignore[union-attr]
        events = deliver(clock, 0.4, req, 487)
        assert [e.tx_key for e in events] == [key]  # type: ignore[attr-defined]
        assert clock.sent_times("ACK") == [0.4]
        assert_drained(clock)

    def test_cancel_before_provisional_waits_for_one(self, clock: FakeClock) -> None:
        key, req = start(clock)
        cancel_key = clock.layer.cancel_request(key, 0.1)
        clock.collect()
        assert cancel_key is not None
        assert clock.sent_times("CANCEL") == []
        deliver(clock, 1.0, req, 100)
        assert clock.sent_times("CANCEL") == [1.0]
        # the CANCEL transaction retransmits on its own (Timer E) until answered
        clock.run_until(1.6)
        assert clock.sent_times("CANCEL") == [1.0, 1.5]
        assert_drained(clock)

    def test_cancel_dropped_when_final_arrives_first(self, clock: FakeClock) -> None:
        key, req = start(clock)
        assert clock.layer.cancel_request(key, 0.1) is not None
        deliver(clock, 0.2, req, 200)
        assert clock.sent_times("CANCEL") == []
        assert clock.layer.cancel_request(key, 0.3) is None
        assert_drained(clock)

    def test_cancel_unknown_or_non_invite(self, clock: FakeClock) -> None:
        assert clock.layer.cancel_request("c:nope:INVITE", 0) is None
        key, _ = start(clock, method="OPTIONS")
        assert clock.layer.cancel_request(key, 0) is None

    def test_invite_given_up_64_t1_after_cancel(self, clock: FakeClock) -> None:
        key, req = start(clock)
        deliver(clock, 0.2, req, 180)
        clock.layer.cancel_request(key, 0.5)
        clock.collect()
        fired = clock.run_until(0.5 + 32)
        timeouts = [e for e in fired if isinstance(e, TransactionTimeout)]
        assert {(e.tx_key.endswith(":INVITE"), e.kind) for e in timeouts} == {
            (True, "no_response"),
            (False, "no_response"),
        }
        assert_drained(clock)


class TestNonInviteClient:
    def test_timer_e_capped_at_t2_then_timer_f(self, clock: FakeClock) -> None:
        start(clock, method="OPTIONS")
        fired = clock.run_until(40)
        times = clock.sent_times("OPTIONS")
        assert times[:7] == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
        gaps = {round(b - a, 6) for a, b in itertools.pairwise(times[4:])}
        assert gaps == {4.0}
        assert times[-1] == 31.5
        assert [e.kind for e in fired] == ["no_response"]  # type: ignore[union-attr]
        assert clock.events[-1][0] == 32
        assert_drained(clock)

    def test_provisional_resets_timer_e_to_t2(self, clock: FakeClock) -> None:
        _key, req = start(clock, method="BYE")
        deliver(clock, 0.2, req, 100)
        clock.run_until(10)
        assert clock.sent_times("BYE") == [0, 0.5, 4.5, 8.5]

    def test_final_then_timer_k(self, clock: FakeClock) -> None:
        key, req = start(clock, method="BYE")
        events = deliver(clock, 0.6, req, 200)
        assert [e.tx_key for e in events] == [key]  # type: ignore[attr-defined]
        assert deliver(clock, 1.0, req, 200) == []  # absorbed
        clock.run_until(0.6 + 4.9)
        assert len(clock.layer) == 1
        clock.run_until(0.6 + 5.0)
        assert len(clock.layer) == 0
        assert clock.sent_times("BYE") == [0, 0.5]

    def test_final_over_tcp_terminates_at_once(self, clock: FakeClock) -> None:
        _key, req = start(clock, method="BYE", transport="tcp")
        clock.layer.receive(response(req, 481), DEST, "tcp", 0.1)
        assert len(clock.layer) == 0
        assert clock.sent_times("BYE") == [0]

    def test_timers_can_be_overridden(self) -> None:
        clock = FakeClock(TransactionLayer(t1=0.1, t2=0.4))
        start(clock, method="OPTIONS")
        clock.run_until(10)
        assert clock.sent_times("OPTIONS")[:6] == [0, 0.1, 0.3, 0.7, 1.1, 1.5]
        assert clock.events[-1][0] == pytest.approx(6.4)
