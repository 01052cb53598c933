from __future__ import annotations

import pytest

from callboard.sip.errors import SipParseError
from callboard.sip.headers import NameAddr, Via, parse_name_addr_list, parse_via_list


class TestNameAddr:
    def test_angle_brackets_with_params(self) -> None:
        addr = NameAddr.parse("<sip:alice@example.com;transport=tcp>;tag=abc;expires=60")
        assert addr.display_name is None
        assert addr.uri.params == {"transport": "tcp"}
        assert addr.params == {"tag": "abc", "expires": "60"}
        assert addr.tag == "abc"

    def test_bare_uri_params_belong_to_header(self) -> None:
        addr = NameAddr.parse("sip:alice@example.com;tag=xyz;transport=tcp")
        assert addr.uri.params == {}
        assert addr.params == {"tag": "xyz", "transport": "tcp"}
        assert str(addr) == "<sip:alice@example.com>;tag=xyz;transport=tcp"

    def test_quoted_display_name_with_escapes(self) -> None:
        addr = NameAddr.parse('"Alice \\"Al\\" <Smith>, Jr" <sip:alice@h>;tag=1')
        assert addr.display_name == 'Alice "Al" <Smith>, Jr'
        assert addr.uri.host == "h"
        assert NameAddr.parse(str(addr)) == addr

    def test_token_display_name(self) -> None:
        addr = NameAddr.parse("Bob   Smith <sip:bob@h>")
        assert addr.display_name == "Bob Smith"
        assert str(addr) == '"Bob Smith" <sip:bob@h>'

    def test_quoted_param_value_may_hold_separators(self) -> None:
        addr = NameAddr.parse('<sip:a@h>;+sip.instance="<urn:uuid:1;2,3>";reg-id=1')
        assert addr.params == {"+sip.instance": '"<urn:uuid:1;2,3>"', "reg-id": "1"}

    def test_tag_setter(self) -> None:
        addr = NameAddr.parse("<sip:a@h>")
        assert addr.tag is None
        addr.tag = "t1"
        assert str(addr) == "<sip:a@h>;tag=t1"
        addr.tag = None
        assert addr.params == {}

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "<sip:a@h",
            '"unterminated <sip:a@h>',
            '"name" sip:a@h',
            "<sip:a@h> junk",
            "<http://x>",
            "*",
        ],
    )
    def test_rejects(self, text: str) -> None:
        with pytest.raises(SipParseError):
            NameAddr.parse(text)

    def test_list_ignores_commas_in_quotes_and_brackets(self) -> None:
        value = '"Doe, John" <sip:j@h;x=a,b>;q=0.5, sip:k@h , <sip:l@h>'
        addrs = parse_name_addr_list(value)
        assert [a.uri.user for a in addrs] == ["j", "k", "l"]
        assert addrs[0].display_name == "Doe, John"
        assert addrs[0].params == {"q": "0.5"}


class TestVia:
    def test_parse_typical(self) -> None:
        via = Via.parse("SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK776asdhds;rport")
        assert (via.transport, via.host, via.port) == ("UDP", "1.2.3.4", 5060)
        assert via.branch == "z9hG4bK776asdhds"
        assert via.params["rport"] is None
        assert str(via) == "SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bK776asdhds;rport"

    def test_whitespace_and_case_tolerated(self) -> None:
        via = Via.parse(
            "sip / 2.0 / tcp   host.example.com : 5070 ; Branch = z9hG4bKx ; received=10.0.0.1"
        )
        assert (via.transport, via.host, via.port) == ("TCP", "host.example.com", 5070)
        assert via.params == {"branch": "z9hG4bKx", "received": "10.0.0.1"}

    def test_ipv6_and_defaults(self) -> None:
        via = Via.parse("SIP/2.0/TLS [2001:db8::9];branch=z9hG4bK1")
        assert via.host == "[2001:db8::9]" and via.port is None
        assert via.sent_by == ("2001:db8::9", 5061)
        assert Via.parse("SIP/2.0/UDP h").sent_by == ("h", 5060)

    def test_list(self) -> None:
        vias = parse_via_list(
            "SIP/2.0/UDP a:1;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2,SIP/2.0/UDP c"
        )
        assert [v.host for v in vias] == ["a", "b", "c"]
        assert [v.transport for v in vias] == ["UDP", "TCP", "UDP"]

    @pytest.mark.parametrize(
        "text",
        [
            "",
            "SIP/2.0/UDP",
            "SIP/3.0/UDP host",
            "SIP/2.0 host",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP ho st",
            "SIP/2.0/UDP host;=x",
            "HTTP/1.1/UDP host",
        ],
    )
    def test_rejects(self, text: str) -> None:
        with pytest.raises(SipParseError):
            Via.parse(text)

    def test_copy_is_independent(self) -> None:
        via = Via.parse("SIP/2.0/UDP h;branch=z9hG4bK1")
        clone = via.copy()
        clone.params["received"] = "1.1.1.1"
        assert "received" not in via.params
