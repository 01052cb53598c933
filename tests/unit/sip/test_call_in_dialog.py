"""Non-INVITE requests inside a confirmed dialog, both ways (RFC 3261 12.2): the TU's general
path (`send_request` -> RequestAnswered/RequestFailed; `tu_methods` -> InDialogRequest answered
with `respond`), the session's own answers (REFER refused 403, INFO DTMF, OPTIONS, 501 for
unknown methods, 500 for an out-of-order CSeq)."""

from __future__ import annotations

import pytest

from callboard.sip.call_events import (
    DtmfReceived,
    HoldChanged,
    InDialogRequest,
    MediaChanged,
    RequestAnswered,
    RequestFailed,
)
from callboard.sip.call_model import CallState, SipCallError
from callboard.sip.headers import Via
from callboard.sip.message import generate_branch
from tests.unit.sip.call_net import ALICE, CallNet, connected_call, sdp_direction

REFER_TO = ("Refer-To", "<sip:carol@10.0.0.3>")


def test_refer_to_a_tu_that_handles_it() -> None:
    """With REFER in `tu_methods` the TU gets the request as InDialogRequest and answers it;
    the sender's TU gets the final response as RequestAnswered with its transaction key."""
    net = CallNet()
    a, b = connected_call(net)
    b.tu_methods = {"REFER"}
    key = net.do(lambda now: a.send_request("REFER", now=now, headers=[REFER_TO]))
    net.run(0.1)
    (refer,) = net.alice.sent_requests("REFER")
    assert refer.cseq == (2, "REFER") and refer.headers.get("Refer-To") == REFER_TO[1]
    assert refer.from_addr.tag == a.local_tag and refer.to_addr.tag == b.local_tag
    event = net.bob.events_of(b)[-1]
    assert isinstance(event, InDialogRequest)
    assert event.request.method == "REFER"
    assert event.request.headers.get("Refer-To") == REFER_TO[1]
    assert net.bob.sent_statuses("REFER") == []  # the TU has not answered yet

    net.do(lambda now: b.respond(event.request, 202, now=now))
    net.run(1)
    assert net.bob.sent_statuses("REFER") == [202]
    answered = net.alice.events_of(a)[-1]
    assert isinstance(answered, RequestAnswered)
    assert answered.tx_key == key and answered.response.status == 202
    assert [e for e in net.alice.events_of(a) if isinstance(e, RequestAnswered)] == [answered]
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED


def test_request_from_the_callee_to_a_tu_that_handles_it() -> None:
    """The path works the other way too: the callee's first request in the dialog has CSeq 1
    and goes to the caller's Contact."""
    net = CallNet()
    a, b = connected_call(net)
    a.tu_methods = {"NOTIFY"}
    key = net.do(
        lambda now: b.send_request(
            "NOTIFY",
            now=now,
            headers=[("Event", "refer"), ("Subscription-State", "active")],
            body=b"SIP/2.0 100 Trying\r\n",
            content_type="message/sipfrag",
        )
    )
    net.run(0.1)
    (notify,) = net.bob.sent_requests("NOTIFY")
    assert notify.cseq == (1, "NOTIFY") and str(notify.uri) == f"sip:callboard@{ALICE[0]}:5060"
    event = net.alice.events_of(a)[-1]
    assert isinstance(event, InDialogRequest) and event.request.body == b"SIP/2.0 100 Trying\r\n"
    assert event.request.content_type == "message/sipfrag"
    net.do(lambda now: a.respond(event.request, 200, now=now))
    net.run(1)
    answered = net.bob.events_of(b)[-1]
    assert isinstance(answered, RequestAnswered) and answered.tx_key == key
    assert answered.response.status == 200


def test_unanswered_request_fails_after_timer_f() -> None:
    """No response at all (the far end's messages are lost): after 64*T1 = 32 s the non-INVITE
    transaction times out (RFC 3261 17.1.2.2) and the TU gets RequestFailed; the call stays."""
    net = CallNet()
    a, b = connected_call(net)
    b.tu_methods = {"REFER"}
    net.drop = lambda stack, message: stack is net.bob
    sent_at = net.now
    key = net.do(lambda now: a.send_request("REFER", now=now, headers=[REFER_TO]))
    net.run(40)
    assert len(net.alice.sent_requests("REFER")) > 1  # retransmitted (Timer E)
    # Bob's TU saw the REFER once, however often it was retransmitted.
    assert sum(isinstance(e, InDialogRequest) for e in net.bob.events_of(b)) == 1
    failed = net.alice.events_of(a)[-1]
    assert failed == RequestFailed(key)
    assert net.alice.times_of(a, RequestFailed) == [pytest.approx(sent_at + 32.0)]
    assert not any(isinstance(e, RequestAnswered) for e in net.alice.events_of(a))
    assert a.state is CallState.CONFIRMED


def test_tu_that_never_answers_makes_the_sender_fail() -> None:
    """A request handed to a TU that never answers is dropped by the server transaction;
    the sender sees RequestFailed rather than a hang."""
    net = CallNet()
    a, b = connected_call(net)
    b.tu_methods = {"REFER"}
    key = net.do(lambda now: a.send_request("REFER", now=now, headers=[REFER_TO]))
    net.run(40)
    assert net.alice.events_of(a)[-1] == RequestFailed(key)
    assert len(net.bob.layer) == 0


def test_refer_without_tu_methods_is_refused_403() -> None:
    """Transfers stay off unless the TU asks for REFER: 403, reported to the sender's TU."""
    net = CallNet()
    a, b = connected_call(net)
    key = net.do(lambda now: a.send_request("REFER", now=now, headers=[REFER_TO]))
    net.run(1)
    assert net.bob.sent_statuses("REFER") == [403]
    answered = net.alice.events_of(a)[-1]
    assert isinstance(answered, RequestAnswered) and answered.tx_key == key
    assert answered.response.status == 403
    assert not any(isinstance(e, InDialogRequest) for e in net.bob.events_of(b))


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5"),
        ("application/dtmf-relay", b"signal = #\r\n", "#"),
        ("application/dtmf-relay", b"Signal=a\r\nDuration=100\r\n", "A"),
        ("application/dtmf", b"*", "*"),
    ],
)
def test_info_dtmf(content_type: str, body: bytes, digit: str) -> None:
    """SIP INFO DTMF (application/dtmf-relay "Signal=", or application/dtmf) is answered 200
    and reported as DtmfReceived."""
    net = CallNet()
    a, b = connected_call(net)
    key = net.do(lambda now: a.send_request("INFO", now=now, body=body, content_type=content_type))
    net.run(1)
    assert net.bob.events_of(b)[-1] == DtmfReceived(digit)
    assert net.bob.sent_statuses("INFO") == [200]
    answered = net.alice.events_of(a)[-1]
    assert isinstance(answered, RequestAnswered) and answered.tx_key == key
    assert answered.response.status == 200


def test_info_that_is_not_dtmf_is_answered_but_not_reported() -> None:
    net = CallNet()
    a, b = connected_call(net)
    net.do(
        lambda now: a.send_request(
            "INFO", now=now, body=b"<xml/>", content_type="application/media_control+xml"
        )
    )
    net.run(1)
    assert net.bob.sent_statuses("INFO") == [200]
    assert net.bob.events_of(b) == []


def test_several_requests_in_flight_are_told_apart() -> None:
    """Two requests at once get their own transactions, CSeqs and outcomes."""
    net = CallNet()
    a, b = connected_call(net)
    keys = net.do(
        lambda now: [
            a.send_request(
                "INFO", now=now, body=b"Signal=1", content_type="application/dtmf-relay"
            ),
            a.send_request(
                "INFO", now=now, body=b"Signal=2", content_type="application/dtmf-relay"
            ),
        ]
    )
    net.run(1)
    assert [r.cseq[0] for r in net.alice.sent_requests("INFO")] == [2, 3]
    assert net.bob.events_of(b) == [DtmfReceived("1"), DtmfReceived("2")]
    answered = [e for e in net.alice.events_of(a) if isinstance(e, RequestAnswered)]
    assert sorted(e.tx_key for e in answered) == sorted(keys)


def test_options_in_dialog_is_answered_200() -> None:
    net = CallNet()
    a, _ = connected_call(net)
    net.do(lambda now: a.send_request("OPTIONS", now=now))
    net.run(1)
    assert net.alice.received_statuses("OPTIONS") == [200]


def test_unknown_method_is_answered_501() -> None:
    """A method the UAS does not implement gets 501 Not Implemented (RFC 3261 8.2.1)."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: a.send_request("MESSAGE", now=now, body=b"hi", content_type="text/plain"))
    net.run(1)
    assert net.alice.received_statuses("MESSAGE") == [501]
    assert b.state is CallState.CONFIRMED


def test_out_of_order_cseq_is_answered_500() -> None:
    """A request whose CSeq is lower than the last one from that side is out of order and
    gets 500 with Retry-After (RFC 3261 12.2.2); the dialog goes on."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: a.send_request("OPTIONS", now=now))  # CSeq 2
    net.run(1)
    assert a.dialog is not None
    via = Via("UDP", ALICE[0], ALICE[1], {"branch": generate_branch()})
    stale = a.dialog.create_request(
        "INFO", via=via, body=b"Signal=9", content_type="application/dtmf-relay"
    )
    stale.headers.set("CSeq", "1 INFO")
    net.send_raw(net.alice, stale)
    net.run(1)
    (refusal,) = net.alice.received_responses("INFO")
    assert refusal.status == 500 and refusal.headers.get("Retry-After") is not None
    assert DtmfReceived("9") not in net.bob.events_of(b)
    assert b.state is CallState.CONFIRMED


@pytest.mark.parametrize("method", ["INVITE", "ACK", "CANCEL"])
def test_send_request_refuses_invite_ack_cancel(method: str) -> None:
    net = CallNet()
    a, _ = connected_call(net)
    with pytest.raises(SipCallError):
        a.send_request(method, now=net.now)


def test_send_request_needs_a_confirmed_call() -> None:
    net = CallNet()
    a = net.call()
    net.run(1)
    with pytest.raises(SipCallError):
        a.send_request("INFO", now=net.now)
    net.do(lambda now: a.hangup("api_hangup", now=now))
    with pytest.raises(SipCallError):
        a.send_request("INFO", now=net.now)


def test_update_with_an_offer_changes_the_media() -> None:
    """UPDATE carries an offer like a re-INVITE does (RFC 3311 5.2): the answer comes in its
    200, and the new media (here the peer's hold) reaches the TU as MediaChanged/HoldChanged."""
    net = CallNet()
    a, b = connected_call(net)
    offer = a.sdp.create_reoffer(direction="sendonly")
    net.do(
        lambda now: a.send_request("UPDATE", now=now, body=offer, content_type="application/sdp")
    )
    net.run(1)
    (ok,) = net.alice.received_responses("UPDATE")
    assert ok.status == 200 and sdp_direction(ok.body) == "recvonly"
    events = net.bob.events_of(b)
    assert isinstance(events[-2], MediaChanged) and events[-1] == HoldChanged(True)
    assert events[-2].media.on_hold_by_remote and b.held_by_remote


def test_update_offer_does_not_undo_our_hold() -> None:
    """While we hold the peer, our answer to its UPDATE offer stays sendonly-or-less, as for
    a re-INVITE (RFC 3264 8.4)."""
    net = CallNet()
    a, b = connected_call(net)
    net.do(lambda now: b.hold(True, now=now))
    net.run(1)
    offer = a.sdp.create_reoffer(direction="sendrecv")
    net.do(
        lambda now: a.send_request("UPDATE", now=now, body=offer, content_type="application/sdp")
    )
    net.run(1)
    (ok,) = net.alice.received_responses("UPDATE")
    assert sdp_direction(ok.body) == "sendonly"
    assert b.held_by_us and not b.held_by_remote


def test_finished_requests_do_not_stay_routed() -> None:
    """A long call with many in-dialog requests (DTMF by INFO, say) keeps no routing entry
    per finished request: only the INVITE transactions, whose 2xx may still come again."""
    net = CallNet()
    a, _ = connected_call(net)
    for _ in range(30):
        net.do(lambda now: a.send_request("INFO", now=now))
        net.run(0.1)
    net.run(1)
    assert len(net.alice.router._by_tx) == 1  # the initial INVITE's
