"""Retries of the initial INVITE: 422 Session Interval Too Small (RFC 4028 6/7.4) and digest
authentication challenges, 401 and 407 (RFC 3261 22.2-22.3, RFC 2617/7616). A retry is a new
INVITE transaction of the same call: same Call-ID and From tag, CSeq + 1, a new branch."""

from __future__ import annotations

import hashlib
import re

import pytest

from callboard.sip.call_events import Answered, Ended, Ringing
from callboard.sip.call_model import CallState, TimerSettings
from callboard.sip.invite_session import InviteSession
from callboard.sip.message import SipRequest
from tests.unit.sip.call_net import CallNet

REALM = "callboard.test"
NONCE = "a1b2c3d4e5f6"
OPAQUE = "5ccc069c403ebaf9f0171e9517f40e41"


def assert_retry_of(first: SipRequest, retry: SipRequest) -> None:
    """`retry` is the same call's next INVITE transaction (RFC 3261 8.1.3.5, 22.2)."""
    assert retry.call_id == first.call_id
    assert retry.from_addr.tag == first.from_addr.tag
    assert retry.to_addr.tag is None
    assert retry.cseq == (first.cseq[0] + 1, "INVITE")
    assert retry.top_via.branch != first.top_via.branch
    assert retry.body == first.body
    assert str(retry.uri) == str(first.uri)


# ---- 422 Session Interval Too Small -------------------------------------------------------


def test_422_retry_with_the_min_se_of_the_response() -> None:
    """A UAS whose Min-SE is above the requested Session-Expires answers 422 with its Min-SE;
    the UAC retries with Session-Expires and Min-SE raised to it and the call is answered."""
    net = CallNet(
        alice_timers=TimerSettings(session_expires=90), bob_timers=TimerSettings(min_se=120)
    )
    net.bob.on_incoming = lambda session, request: session.answer(now=net.now)
    a = net.call()
    net.run(1)
    first, retry = net.alice.sent_requests("INVITE")
    assert first.headers.get("Session-Expires") == "90"
    assert net.alice.received_statuses("INVITE")[:2] == [100, 422]
    (refusal,) = [r for r in net.alice.received_responses("INVITE") if r.status == 422]
    assert refusal.headers.get("Min-SE") == "120"
    assert [ack.cseq for ack in net.alice.sent_requests("ACK")] == [(1, "ACK"), (2, "ACK")]
    assert_retry_of(first, retry)
    assert retry.headers.get("Session-Expires") == "120"
    assert retry.headers.get("Min-SE") == "120"
    assert len(net.bob.incoming) == 1  # the refused INVITE never became a call
    ok = net.alice.received_responses("INVITE")[-1]
    assert ok.status == 200 and ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert a.state is CallState.CONFIRMED
    assert a.session_timer.interval == 120 and a.session_timer.we_refresh
    assert [type(e) for e in net.alice.events_of(a)] == [Ringing, Answered]


def test_second_422_ends_the_call() -> None:
    """The UAC retries a 422 once; a second 422 ends the call with reason sip_422."""
    net = CallNet(
        alice_timers=TimerSettings(session_expires=90), bob_timers=TimerSettings(min_se=120)
    )
    net.bob.on_incoming = lambda session, request: session.reject(
        422, now=net.now, extra=[("Min-SE", "600")]
    )
    a = net.call()
    net.run(1)
    assert len(net.alice.sent_requests("INVITE")) == 2
    assert net.alice.received_statuses("INVITE").count(422) == 2
    assert net.alice.events_of(a) == [Ringing(), Ended("sip_422")]
    net.run(60)
    assert len(net.alice.sent_requests("INVITE")) == 2


def test_422_without_min_se_ends_the_call() -> None:
    """A 422 must carry Min-SE (RFC 4028 6); without one there is nothing to retry with."""
    net = CallNet()
    net.bob.on_incoming = lambda session, request: session.reject(422, now=net.now)
    a = net.call()
    net.run(1)
    assert len(net.alice.sent_requests("INVITE")) == 1
    assert net.alice.events_of(a)[-1] == Ended("sip_422")


# ---- digest authentication ----------------------------------------------------------------


def _params(text: str) -> dict[str, str]:
    """The name=value and name="value" pairs of a Digest credentials value."""
    params: dict[str, str] = {}
    for name, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', text):
        params[name] = quoted or bare
    return params


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def auth_net(status: int, challenge: str, *, times: int = 1) -> tuple[CallNet, list[SipRequest]]:
    """Bob challenges the first `times` INVITEs with `status` and answers the next one."""
    net = CallNet()
    header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    seen: list[SipRequest] = []

    def on_incoming(session: InviteSession, request: SipRequest) -> None:
        seen.append(request)
        if len(seen) <= times:
            session.reject(status, now=net.now, extra=[(header, challenge)])
        else:
            session.answer(now=net.now)

    net.bob.on_incoming = on_incoming
    return net, seen


def test_401_retried_with_authorization_qop_auth() -> None:
    """401 + WWW-Authenticate with qop=auth: the retry carries Authorization whose response is
    MD5(HA1:nonce:nc:cnonce:qop:HA2), HA1 = MD5(user:realm:password), HA2 = MD5(INVITE:uri)
    (RFC 2617 3.2.2), echoing realm, nonce and opaque."""
    challenge = f'Digest realm="{REALM}", nonce="{NONCE}", qop="auth", opaque="{OPAQUE}"'
    net, seen = auth_net(401, challenge)
    a = net.call(auth_username="alice", auth_password="s3cret")
    net.run(1)
    first, retry = net.alice.sent_requests("INVITE")
    assert_retry_of(first, retry)
    assert "Authorization" not in first.headers
    assert "Proxy-Authorization" not in retry.headers
    value = retry.headers.get("Authorization")
    assert value is not None and value.startswith("Digest ")
    p = _params(value[len("Digest ") :])
    assert p["username"] == "alice" and p["realm"] == REALM and p["nonce"] == NONCE
    assert p["uri"] == str(retry.uri) == "sip:bob@10.0.0.2:5060"
    assert p["qop"] == "auth" and p["nc"] == "00000001" and p["cnonce"]
    assert p["opaque"] == OPAQUE
    assert p.get("algorithm", "MD5") == "MD5"
    ha1 = md5(f"alice:{REALM}:s3cret")
    ha2 = md5(f"INVITE:{p['uri']}")
    assert p["response"] == md5(f"{ha1}:{NONCE}:{p['nc']}:{p['cnonce']}:auth:{ha2}")
    assert len(seen) == 2 and seen[1].headers.get("Authorization") == value
    assert a.state is CallState.CONFIRMED
    assert [type(e) for e in net.alice.events_of(a)] == [Ringing, Answered]


def test_407_retried_with_proxy_authorization_without_qop() -> None:
    """407 + Proxy-Authenticate without qop: the retry carries Proxy-Authorization with the
    RFC 2069 response MD5(HA1:nonce:HA2) and no cnonce/nc (RFC 2617 3.2.2.1)."""
    challenge = f'Digest realm="{REALM}", nonce="{NONCE}", algorithm=MD5'
    net, _ = auth_net(407, challenge)
    a = net.call(auth_username="alice", auth_password="pw")
    net.run(1)
    first, retry = net.alice.sent_requests("INVITE")
    assert_retry_of(first, retry)
    assert "Authorization" not in retry.headers
    value = retry.headers.get("Proxy-Authorization")
    assert value is not None
    p = _params(value[len("Digest ") :])
    assert "qop" not in p and "nc" not in p and "cnonce" not in p
    ha1 = md5(f"alice:{REALM}:pw")
    ha2 = md5(f"INVITE:{p['uri']}")
    assert p["response"] == md5(f"{ha1}:{NONCE}:{ha2}")
    assert a.state is CallState.CONFIRMED


def test_second_challenge_ends_the_call_unauthorized() -> None:
    """Credentials are tried once: a second 401 means they are wrong; the call ends."""
    challenge = f'Digest realm="{REALM}", nonce="{NONCE}", qop="auth"'
    net, seen = auth_net(401, challenge, times=2)
    a = net.call(auth_username="alice", auth_password="wrong")
    net.run(1)
    assert len(net.alice.sent_requests("INVITE")) == 2 and len(seen) == 2
    assert net.alice.events_of(a) == [Ringing(), Ended("unauthorized")]
    assert a.state is CallState.ENDED
    net.run(60)
    assert len(net.alice.sent_requests("INVITE")) == 2


def test_407_then_401_ends_the_call_unauthorized() -> None:
    """One authentication retry in all: a 401 after a 407 retry is not answered again."""
    net = CallNet()
    seen: list[SipRequest] = []

    def on_incoming(session: InviteSession, request: SipRequest) -> None:
        seen.append(request)
        status, header = (
            (407, "Proxy-Authenticate") if len(seen) == 1 else (401, "WWW-Authenticate")
        )
        session.reject(
            status, now=net.now, extra=[(header, f'Digest realm="r", nonce="n{len(seen)}"')]
        )

    net.bob.on_incoming = on_incoming
    a = net.call(auth_username="alice", auth_password="pw")
    net.run(1)
    assert len(seen) == 2
    assert net.alice.events_of(a)[-1] == Ended("unauthorized")


@pytest.mark.parametrize("status", [401, 407])
def test_challenge_without_credentials_ends_at_once(status: int) -> None:
    """No credentials configured: a 401 or 407 ends the call without a retry."""
    net, _ = auth_net(status, f'Digest realm="{REALM}", nonce="{NONCE}"')
    a = net.call()
    net.run(1)
    assert len(net.alice.sent_requests("INVITE")) == 1
    assert net.alice.events_of(a) == [Ringing(), Ended("unauthorized")]


def test_unusable_challenge_ends_the_call() -> None:
    """A challenge in a scheme we cannot answer ends the call instead of retrying blindly."""
    net, _ = auth_net(401, 'Basic realm="x"')
    a = net.call(auth_username="alice", auth_password="pw")
    net.run(1)
    assert len(net.alice.sent_requests("INVITE")) == 1
    assert net.alice.events_of(a)[-1] == Ended("unauthorized")
