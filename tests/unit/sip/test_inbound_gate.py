"""The inbound gate on its own: allow-list (with the in-dialog exception), silent drop, the
per-source INVITE rate limit, capacity, and digest authentication against our own client."""

from __future__ import annotations

import ipaddress

from callboard.sip.auth import DigestChallenge, build_authorization
from callboard.sip.digest_server import NONCE_LIFETIME, DigestVerifier
from callboard.sip.inbound_gate import DROP, InboundGate, TokenBuckets
from callboard.sip.message import SipRequest, parse_message


def _request(
    method: str = "INVITE", to_tag: str = "", auth: str = "", branch: str = "z9hG4bK1"
) -> SipRequest:
    lines = [
        f"{method} sip:bob@192.0.2.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 198.51.100.7:5060;branch={branch}",
        "From: <sip:alice@198.51.100.7>;tag=a1",
        f"To: <sip:bob@192.0.2.1>{';tag=' + to_tag if to_tag else ''}",
        "Call-ID: c1@198.51.100.7",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    message = parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def test_the_allow_list_refuses_or_drops_strangers_but_not_their_dialogs() -> None:
    nets = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")]
    gate = InboundGate(allowed=nets, in_dialog=lambda call_id, tag: tag == "ours")
    assert gate.screen(_request(), "10.1.1.1", 0.0) is None
    assert gate.screen(_request(), "2001:db8::5", 0.0) is None
    refused = gate.screen(_request("OPTIONS"), "203.0.113.5", 0.0)
    assert refused is not None and refused.status == 403
    assert gate.screen(_request("BYE", to_tag="ours"), "203.0.113.5", 0.0) is None
    assert gate.screen(_request("BYE", to_tag="forged"), "203.0.113.5", 0.0) is not None
    assert gate.screen(_request("ACK", to_tag="forged"), "203.0.113.5", 0.0) is DROP
    gate.silent_drop = True
    assert gate.screen(_request(), "203.0.113.5", 0.0) is DROP


def test_the_rate_limit_is_per_source_and_refills() -> None:
    gate = InboundGate(invite_rate=2.0, invite_burst=3)
    verdicts = [gate.screen(_request(), "198.51.100.7", 0.0) for _ in range(5)]
    assert verdicts[:3] == [None, None, None]
    limited = verdicts[3]
    assert limited is not None and limited.status == 503
    assert dict(limited.headers)["Retry-After"] == "1"
    assert gate.screen(_request(), "198.51.100.8", 0.0) is None  # another source
    assert gate.screen(_request("OPTIONS"), "198.51.100.7", 0.0) is None  # INVITEs only
    assert gate.screen(_request(), "198.51.100.7", 0.6) is None  # refilled one token


def test_buckets_forget_the_least_recent_sources() -> None:
    buckets = TokenBuckets(1.0, 1)
    for n in range(70000):
        buckets.take(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}", 0.0)
    assert len(buckets._buckets) == 65536


def test_capacity_refuses_new_invites_only() -> None:
    gate = InboundGate(at_capacity=lambda: "too many legs: MAX_LEGS (2) reached")
    busy = gate.screen(_request(), "198.51.100.7", 0.0)
    assert busy is not None and busy.status == 503 and "MAX_LEGS" in busy.reason
    assert gate.screen(_request("INVITE", to_tag="x"), "198.51.100.7", 0.0) is None


def _answer(challenge: str, password: str = "s3cret", user: str = "alice") -> str:
    return build_authorization(
        DigestChallenge.parse(challenge),
        method="INVITE",
        uri="sip:bob@192.0.2.1",
        username=user,
        password=password,
    )


def test_digest_challenges_then_accepts_the_right_password_only() -> None:
    gate = InboundGate(users={"alice": "s3cret"}, realm="callboard")
    challenged = gate.screen(_request(), "198.51.100.7", 100.0)
    assert challenged is not None and challenged.status == 401
    offers = [value for name, value in challenged.headers if name == "WWW-Authenticate"]
    assert [DigestChallenge.parse(v).algorithm for v in offers] == ["MD5", "SHA-256"]
    for offer in offers:
        assert gate.screen(_request(auth=_answer(offer)), "198.51.100.7", 101.0) is None
        wrong = gate.screen(_request(auth=_answer(offer, "guess")), "198.51.100.7", 101.0)
        assert wrong is not None and wrong.status == 403
        nobody = gate.screen(_request(auth=_answer(offer, user="eve")), "198.51.100.7", 101.0)
        assert nobody is not None and nobody.status == 403


def test_an_old_or_forged_nonce_is_challenged_again() -> None:
    verifier = DigestVerifier({"alice": "s3cret"}, "callboard")
    offer = verifier.challenge(0.0)[0]
    late = verifier.verify(_request(auth=_answer(offer)), NONCE_LIFETIME + 10)
    assert not late.accepted and not late.refused and "stale=true" in late.challenge[0]
    forged = offer.replace('nonce="', 'nonce="0')
    again = verifier.verify(_request(auth=_answer(forged)), 1.0)
    assert not again.accepted and "stale" not in again.challenge[0]


def test_a_replayed_invite_is_challenged_but_a_retransmission_passes() -> None:
    """Credentials that let one INVITE in do not let in another (a new branch) while the
    nonce is still good: it gets a fresh challenge. The same INVITE again (its branch) is a
    retransmission and passes; the same nonce with the next count is a new request and does."""
    verifier = DigestVerifier({"alice": "s3cret"}, "callboard")
    offer = verifier.challenge(0.0)[0]
    credentials = _answer(offer)
    assert verifier.verify(_request(auth=credentials), 1.0).accepted
    assert verifier.verify(_request(auth=credentials), 1.5).accepted  # retransmission
    replay = verifier.verify(_request(auth=credentials, branch="z9hG4bK2"), 2.0)
    assert not replay.accepted and not replay.refused and replay.challenge
    assert "stale" not in replay.challenge[0]
    following = build_authorization(
        DigestChallenge.parse(offer),
        method="INVITE",
        uri="sip:bob@192.0.2.1",
        username="alice",
        password="s3cret",
        nc=2,
    )
    assert verifier.verify(_request(auth=following, branch="z9hG4bK3"), 3.0).accepted
