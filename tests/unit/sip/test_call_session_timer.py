"""RFC 4028 session timers: the refresher re-INVITEs at half the interval; the other side
ends a session that was not refreshed a little before the interval runs out (interval -
min(32 s, interval/3), RFC 4028 10) and sends BYE; an unanswered refresh ends the call too.
The negotiation itself is checked on `SessionTimer` values at the end."""

from __future__ import annotations

import math

import pytest

from callboard.sip import in_dialog
from callboard.sip.call_events import Ended, HoldChanged
from callboard.sip.call_model import CallState, TimerSettings
from callboard.sip.header_map import Headers
from callboard.sip.message import SipRequest, SipResponse
from callboard.sip.session_timer import SessionTimer, parse_session_expires
from tests.unit.sip.call_net import CallNet, Stack, connected_call, sdp_direction

TIMERS_90 = TimerSettings(session_expires=90, min_se=90)


def refreshes(stack: Stack) -> list[tuple[float, SipRequest]]:
    """The in-dialog INVITEs a stack sent, with their times."""
    return [
        (t, m)
        for t, m in stack.sent
        if isinstance(m, SipRequest) and m.method == "INVITE" and m.to_addr.tag is not None
    ]


def test_uac_refreshes_at_half_the_interval() -> None:
    """The caller is the refresher (refresher=uac): a re-INVITE every interval/2 after the
    previous 2xx, carrying Session-Expires with refresher=uac and Supported: timer; the
    callee keeps accepting them and never expires the session."""
    net = CallNet(alice_timers=TIMERS_90)
    a, b = connected_call(net)
    ok = net.alice.received_responses("INVITE")[-1]
    assert ok.headers.get("Session-Expires") == "90;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    assert a.session_timer.we_refresh and not b.session_timer.we_refresh
    net.run(300)
    sent = refreshes(net.alice)
    times = [t for t, _ in sent]
    answered = net.alice.received_times("INVITE", 200)
    assert len(times) == 6  # 300 s / (45 s + a round trip)
    # Each refresh goes out 45 s after the 2xx that answered the previous INVITE.
    for sent_at, previous_ok in zip(times, answered, strict=False):
        assert sent_at == pytest.approx(previous_ok + 45.0)
    for _, invite in sent:
        assert invite.headers.get("Session-Expires") == "90;refresher=uac"
        assert "timer" in (invite.headers.get("Supported") or "")
        assert sdp_direction(invite.body) == "sendrecv"
    assert [r.cseq[0] for _, r in sent] == [2, 3, 4, 5, 6, 7]
    assert refreshes(net.bob) == []
    assert net.bob.sent_statuses("INVITE").count(200) == 7
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED
    assert not any(isinstance(e, HoldChanged | Ended) for e in net.bob.events_of(b))
    assert not any(isinstance(e, HoldChanged | Ended) for e in net.alice.events_of(a))


def test_refresh_keeps_a_hold() -> None:
    """A refresh re-offers the current direction: a held call stays held."""
    net = CallNet(alice_timers=TIMERS_90)
    a, b = connected_call(net)
    net.do(lambda now: a.hold(True, now=now))
    net.run(100)
    assert len(refreshes(net.alice)) >= 3
    assert all(sdp_direction(r.body) == "sendonly" for _, r in refreshes(net.alice))
    assert a.held_by_us and b.held_by_remote


def test_callee_expires_a_session_that_is_not_refreshed() -> None:
    """The refresher falls silent: the other side ends the call session_expired at interval -
    min(32, interval/3) = 60 s after the last refresh it received, and sends BYE."""
    net = CallNet(alice_timers=TIMERS_90)
    a, b = connected_call(net)
    net.run(100)
    net.drop = lambda stack, message: stack is net.alice  # Alice goes silent
    net.run(200)
    last_refresh = net.bob.received_times("INVITE")[-1]
    assert last_refresh == pytest.approx(90.1)  # the second refresh, just before the cut
    assert net.bob.events_of(b)[-1:] == [Ended("session_expired")]
    assert net.bob.times_of(b, Ended) == [pytest.approx(last_refresh + 60.0)]
    bye = net.bob.sent_requests("BYE")[0]
    assert net.bob.sent_times("BYE")[0] == pytest.approx(last_refresh + 60.0)
    assert bye.to_addr.tag == a.local_tag
    # Alice's side ends too: its own refresh got no answer, or Bob's BYE reached her.
    assert a.state is CallState.ENDED


def test_unanswered_refresh_ends_the_call() -> None:
    """A refresh re-INVITE that gets no final response (Timer B, 64*T1) ends the refresher's
    call session_expired, with a BYE; the far end ends remote_bye."""

    def drop(stack: Stack, message: SipRequest | SipResponse) -> bool:
        return (
            stack is net.bob
            and isinstance(message, SipResponse)
            and message.cseq[1] == "INVITE"
            and message.cseq[0] > 1
        )

    net = CallNet(alice_timers=TIMERS_90, drop=drop)
    a, b = connected_call(net)
    net.run(100)
    refresh_at = refreshes(net.alice)[0][0]
    assert net.alice.events_of(a)[-1] == Ended("session_expired")
    assert net.alice.times_of(a, Ended) == [pytest.approx(refresh_at + 32.0)]
    assert net.alice.sent_times("BYE") == [pytest.approx(refresh_at + 32.0)]
    assert net.bob.events_of(b)[-1] == Ended("remote_bye")


def test_refresh_that_glares_with_a_hold_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """The refresh and the far end's hold cross: both get 491 (RFC 3261 14.2). The far end
    here gives up its hold (it need not retry, RFC 3261 14.1), so the refresher must retry its
    refresh after the glare pause, or the session expires at the far end."""
    # Bob's own retry (0-2 s) must not come before the test withdraws it: a hold that got
    # through would refresh the session itself.
    monkeypatch.setattr(in_dialog, "GLARE_RETRY_OTHER", (1.0, 2.0))
    net = CallNet(alice_timers=TIMERS_90)
    a, b = connected_call(net)
    ok_at = net.alice.received_times("INVITE", 200)[0]
    net.run(ok_at + 45.0 - net.now)
    assert len(refreshes(net.alice)) == 1  # the refresh just went out
    net.do(lambda now: b.hold(True, now=now))
    net.run(0.1)
    assert net.alice.received_statuses("INVITE")[-1] == 491
    net.bob.router.timer_queue.cancel(b, "glare")  # Bob no longer wants his hold
    net.run(10)
    first, retry = refreshes(net.alice)[:2]
    assert 2.1 <= retry[0] - net.alice.received_times("INVITE", 491)[0] <= 4.0
    assert retry[1].cseq[0] == first[1].cseq[0] + 1
    assert net.alice.received_statuses("INVITE")[-1] == 200
    net.run(200)
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED
    assert not a.held and not b.held


def test_uas_refreshes_when_the_invite_names_it() -> None:
    """An INVITE with Session-Expires: 90;refresher=uas (here set by a proxy in the path)
    makes the callee the refresher: its 2xx says so, it re-INVITEs every 45 s with
    refresher=uac (it is the UAC of its refreshes), and the caller only watches the expiry."""

    def rewrite(stack: Stack, message: SipRequest | SipResponse) -> None:
        initial_invite = isinstance(message, SipRequest) and message.cseq == (1, "INVITE")
        if stack is net.alice and initial_invite:
            message.headers.set("Session-Expires", "90;refresher=uas")

    net = CallNet(alice_timers=TIMERS_90, rewrite=rewrite)
    a, b = connected_call(net)
    ok = net.alice.received_responses("INVITE")[-1]
    assert ok.headers.get("Session-Expires") == "90;refresher=uas"
    assert b.session_timer.we_refresh and not a.session_timer.we_refresh
    net.run(200)
    assert refreshes(net.alice) == []
    sent = refreshes(net.bob)
    assert len(sent) == 4
    assert sent[0][0] == pytest.approx(net.bob.sent_times("INVITE", 200)[0] + 45.0)
    assert all(r.headers.get("Session-Expires") == "90;refresher=uac" for _, r in sent)
    assert [r.cseq for _, r in sent] == [(n, "INVITE") for n in (1, 2, 3, 4)]
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED

    net.drop = lambda stack, message: stack is net.bob  # the refresher falls silent
    net.run(200)
    last = net.alice.received_times("INVITE")[-1]
    assert net.alice.events_of(a)[-1] == Ended("session_expired")
    assert net.alice.times_of(a, Ended) == [pytest.approx(last + 60.0)]
    assert net.alice.sent_times("BYE")[0] == pytest.approx(last + 60.0)


def test_reinvite_uac_takes_its_refresher_role_from_the_2xx() -> None:
    """The 2xx to a re-INVITE says who refreshes from now on (RFC 4028 7.2, 10). Bob, not the
    refresher, sends a hold re-INVITE asking Alice to go on refreshing (refresher=uas); a
    proxy drops that parameter, Alice's stack then picks the UAC (Bob) and says so in its 2xx.
    Bob must take the role over, or nobody refreshes and the call dies."""

    def rewrite(stack: Stack, message: SipRequest | SipResponse) -> None:
        if stack is net.bob and isinstance(message, SipRequest) and message.method == "INVITE":
            message.headers.set("Session-Expires", "90")

    net = CallNet(alice_timers=TIMERS_90, rewrite=rewrite)
    a, b = connected_call(net)
    assert a.session_timer.we_refresh and not b.session_timer.we_refresh
    net.run(10)
    net.do(lambda now: b.hold(True, now=now))
    net.run(1)
    ok = net.bob.received_responses("INVITE")[-1]
    assert ok.status == 200 and ok.headers.get("Session-Expires") == "90;refresher=uac"
    assert b.session_timer.we_refresh and not a.session_timer.we_refresh
    net.run(300)
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED
    assert len(refreshes(net.bob)) >= 6  # the hold, then a refresh every 45 s
    assert all(sdp_direction(r.body) == "sendonly" for _, r in refreshes(net.bob))


def test_no_session_timer_without_session_expires() -> None:
    """Default settings (1800 s) do not refresh within a few minutes; nothing expires."""
    net = CallNet()
    a, b = connected_call(net)
    assert a.session_timer.interval == 1800 and b.session_timer.interval == 1800
    net.run(600)
    assert refreshes(net.alice) == [] and refreshes(net.bob) == []
    assert a.state is CallState.CONFIRMED and b.state is CallState.CONFIRMED


# ---- SessionTimer values (RFC 4028 7-10) --------------------------------------------------


def request(*headers: tuple[str, str]) -> SipRequest:
    return SipRequest("INVITE", "sip:bob@10.0.0.2", Headers(list(headers)))


def response(*headers: tuple[str, str]) -> SipResponse:
    return SipResponse(200, None, Headers(list(headers)))


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("1800", (1800, None)),
        ("90;refresher=uac", (90, "uac")),
        ("90 ; Refresher = UAS", (90, "uas")),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_session_expires(value: str | None, parsed: tuple[int, str | None] | None) -> None:
    assert parse_session_expires(value) == parsed


def test_uas_named_refresher_uas_refreshes() -> None:
    timer = SessionTimer(TimerSettings())
    headers = timer.uas_headers(
        request(("Supported", "timer"), ("Session-Expires", "600;refresher=uas"))
    )
    assert headers == [("Session-Expires", "600;refresher=uas"), ("Require", "timer")]
    assert timer.interval == 600 and timer.we_refresh
    assert timer.next_timer(100.0) == ("refresh", 400.0)
    assert timer.refresh_headers() == [
        ("Supported", "timer"),
        ("Session-Expires", "600;refresher=uac"),
    ]


def test_uas_without_refresher_lets_a_supporting_uac_refresh() -> None:
    """RFC 4028 9: no refresher named and the UAC supports timers: the UAC refreshes."""
    timer = SessionTimer(TimerSettings())
    headers = timer.uas_headers(request(("Supported", "timer"), ("Session-Expires", "900")))
    assert headers == [("Session-Expires", "900;refresher=uac"), ("Require", "timer")]
    assert not timer.we_refresh
    assert timer.next_timer(0.0) == ("expire", 900 - 32)


def test_uas_refreshes_for_a_uac_without_timer_support() -> None:
    """RFC 4028 9: a UAC that does not support timers cannot refresh: the UAS does, and
    must not Require: timer."""
    timer = SessionTimer(TimerSettings())
    headers = timer.uas_headers(request(("Session-Expires", "900")))
    assert headers == [("Session-Expires", "900;refresher=uas")]
    assert timer.we_refresh


def test_uas_with_only_supported_timer_picks_its_own_interval() -> None:
    timer = SessionTimer(TimerSettings(session_expires=1200))
    headers = timer.uas_headers(request(("Supported", "timer")))
    assert headers == [("Session-Expires", "1200;refresher=uac"), ("Require", "timer")]


def test_uas_without_any_timer_headers_has_no_timer() -> None:
    timer = SessionTimer(TimerSettings())
    assert timer.uas_headers(request()) == []
    assert timer.interval is None and timer.next_timer(0.0) is None
    assert timer.refresh_headers() == []


def test_uas_raises_a_small_interval_to_its_min_se() -> None:
    timer = SessionTimer(TimerSettings(min_se=120))
    timer.uas_headers(request(("Supported", "timer"), ("Session-Expires", "90")))
    assert timer.interval == 120


@pytest.mark.parametrize(
    ("value", "we_refresh"),
    [("90;refresher=uac", True), ("90;refresher=uas", False), ("90", True)],
)
def test_uac_learns_its_role_from_the_2xx(value: str, we_refresh: bool) -> None:
    timer = SessionTimer(TimerSettings())
    timer.from_uac_response(response(("Session-Expires", value)))
    assert timer.interval == 90 and timer.we_refresh is we_refresh


def test_uac_without_session_expires_in_the_2xx_has_no_timer() -> None:
    timer = SessionTimer(TimerSettings())
    timer.from_uac_response(response())
    assert timer.interval is None and timer.next_timer(5.0) is None


@pytest.mark.parametrize("interval", [90, 96, 120, 1800])
def test_expiry_comes_min_32_or_a_third_before_the_end(interval: int) -> None:
    """RFC 4028 10: BYE at interval - min(32, interval/3) without a refresh."""
    timer = SessionTimer(TimerSettings(), interval=interval, we_refresh=False)
    name, when = timer.next_timer(1000.0) or ("", math.nan)
    assert name == "expire"
    assert when == pytest.approx(1000.0 + interval - min(32, interval / 3))
    timer.we_refresh = True
    assert timer.next_timer(1000.0) == ("refresh", 1000.0 + interval / 2)
