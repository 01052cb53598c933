from __future__ import annotations

import hashlib
import re

import pytest

from callboard.sip.auth import DigestChallenge, build_authorization, pick_challenge
from callboard.sip.errors import SipParseError

RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)


def rfc7616_challenge(algorithm: str) -> str:
    return (
        'Digest realm="http-auth@example.org", qop="auth, auth-int", '
        f"algorithm={algorithm}, "
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )


def fields(value: str) -> dict[str, str]:
    assert value.startswith("Digest ")
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|[^,\s]+)', value)}


def test_rfc2617_section_3_5_example() -> None:
    challenge = DigestChallenge.parse(RFC2617_CHALLENGE)
    assert challenge.qop == ["auth", "auth-int"] and challenge.algorithm == "MD5"
    value = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    got = fields(value)
    assert got["response"] == "6629fae49393a05397450978507c4ef1"
    assert (got["qop"], got["nc"], got["cnonce"]) == ("auth", "00000001", "0a4f113b")
    assert got["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert got["username"] == "Mufasa" and got["uri"] == "/dir/index.html"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm: str, expected: str) -> None:
    challenge = DigestChallenge.parse(rfc7616_challenge(algorithm))
    value = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    got = fields(value)
    assert got["response"] == expected
    assert got["algorithm"] == algorithm


def test_without_qop_uses_rfc2069_response() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093"'
    )
    got = fields(
        build_authorization(
            challenge,
            method="GET",
            uri="/dir/index.html",
            username="Mufasa",
            password="Circle Of Life",
        )
    )
    assert got["response"] == "670fd8c2df070c60b045671b8b24ff02"
    assert "qop" not in got and "nc" not in got and "cnonce" not in got and "opaque" not in got


def test_auth_int_only_when_it_is_the_only_option() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n", qop="auth-int"')
    body = b"v=0\r\n"
    got = fields(
        build_authorization(
            challenge,
            method="INVITE",
            uri="sip:b@h",
            username="u",
            password="p",
            cnonce="c",
            body=body,
        )
    )
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha2 = md5(f"INVITE:sip:b@h:{hashlib.md5(body).hexdigest()}")
    assert got["qop"] == "auth-int"
    assert got["response"] == md5(f"{md5('u:r:p')}:n:00000001:c:auth-int:{ha2}")


def test_session_algorithm_and_nonce_count() -> None:
    challenge = DigestChallenge.parse(
        'Digest realm="r", nonce="n", algorithm=sha-256-sess, qop=auth'
    )
    assert challenge.algorithm == "SHA-256-sess"
    value = build_authorization(
        challenge, method="REGISTER", uri="sip:h", username="u", password="p", nc=26
    )
    got = fields(value)
    assert got["nc"] == "0000001a"
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest()  # noqa: E731
    ha1 = sha(f"{sha('u:r:p')}:n:{got['cnonce']}")
    assert got["response"] == sha(f"{ha1}:n:0000001a:{got['cnonce']}:auth:{sha('REGISTER:sip:h')}")


def test_parse_details() -> None:
    challenge = DigestChallenge.parse('digest REALM="a, b", Nonce="x", stale=TRUE, algorithm="MD5"')
    assert challenge.realm == "a, b"
    assert challenge.stale is True
    assert challenge.opaque is None and challenge.qop == []


@pytest.mark.parametrize(
    "value",
    [
        'Basic realm="r"',
        'Digest nonce="n"',
        'Digest realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r, nonce="n"',
        "Digest realm",
    ],
)
def test_parse_rejects(value: str) -> None:
    with pytest.raises(SipParseError):
        DigestChallenge.parse(value)


def test_pick_prefers_sha256_and_skips_unusable() -> None:
    values = [
        'Digest realm="r", nonce="1", algorithm=MD5',
        'Digest realm="r", nonce="2", algorithm=SHA-512-256',
        'Digest realm="r", nonce="3", algorithm=SHA-256',
        'Basic realm="r"',
    ]
    assert pick_challenge(values).nonce == "3"
    assert pick_challenge(values[:2]).nonce == "1"
    with pytest.raises(SipParseError):
        pick_challenge(values[1:2] + values[3:])


def test_quotes_in_username_are_escaped() -> None:
    challenge = DigestChallenge.parse('Digest realm="r", nonce="n"')
    value = build_authorization(challenge, method="BYE", uri="sip:h", username='a"b', password="p")
    assert 'username="a\\"b"' in value
