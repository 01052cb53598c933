from __future__ import annotations

import pytest

from callboard.sip.errors import SipParseError
from callboard.sip.uri import SipUri


def test_parses_all_parts() -> None:
    uri = SipUri.parse(
        "SIPS:alice:secret@Example.COM:5071;transport=TCP;lr;maddr=1.2.3.4?subject=hi&x=1"
    )
    assert uri.scheme == "sips"
    assert (uri.user, uri.password, uri.host, uri.port) == ("alice", "secret", "Example.COM", 5071)
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "1.2.3.4"}
    assert uri.headers == {"subject": "hi", "x": "1"}
    assert uri.transport == "tcp"


def test_minimal_uri_and_defaults() -> None:
    uri = SipUri.parse("sip:example.com")
    assert uri.user is None and uri.port is None
    assert uri.transport == "udp"
    assert uri.host_port() == ("example.com", 5060)
    assert SipUri.parse("sips:example.com").host_port() == ("example.com", 5061)


def test_ipv6_host_keeps_brackets() -> None:
    uri = SipUri.parse("sip:bob@[2001:db8::1]:5080;transport=udp")
    assert uri.host == "[2001:db8::1]"
    assert uri.port == 5080
    assert uri.host_port() == ("2001:db8::1", 5080)
    assert str(uri) == "sip:bob@[2001:db8::1]:5080;transport=udp"


def test_user_part_keeps_escapes_and_allows_semicolons() -> None:
    uri = SipUri.parse("sip:%61lice;phone-context=x@host")
    assert uri.user == "%61lice;phone-context=x"
    assert uri.host == "host"
    assert uri.params == {}


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",
        "sip:alice:pw@10.0.0.1:5060",
        "sips:example.com;lr",
        "sip:+15551234@gw.example.com;user=phone",
        "sip:a@b;transport=tcp?Replaces=abc%40host&X=1",
        "sip:[::1]",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(SipUri.parse(text)) == text
    assert SipUri.parse(str(SipUri.parse(text))) == SipUri.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:@",
        "sip:@host",
        "sip:alice@",
        "http://example.com",
        "tel:+15551234",
        "sipx:host",
        "sip:ali ce@host",
        "sip:host:0",
        "sip:host:65536",
        "sip:host:abc",
        "sip:host:",
        "sip:[::1",
        "sip:[::1]x",
        "sip:ho$t",
        "sip:host;",
        "sip:host?noequals",
        "sip:host\r\n",
        "sip:<host>",
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_copy_is_independent() -> None:
    uri = SipUri.parse("sip:a@b;lr?h=1")
    clone = uri.copy()
    clone.params["x"] = "1"
    clone.headers.clear()
    assert uri.params == {"lr": None} and uri.headers == {"h": "1"}
