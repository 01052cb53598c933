from __future__ import annotations

import re
import time

import pytest

from callboard.sip.errors import SipParseError
from callboard.sip.header_map import Headers
from callboard.sip.message import (
    MAX_MESSAGE_SIZE,
    REASON_PHRASES,
    SipRequest,
    SipResponse,
    generate_branch,
    generate_call_id,
    generate_tag,
    make_response,
    parse_message,
)
from tests.unit.sip.sip_samples import (
    BARESIP_INVITE,
    RINGING_RESPONSE,
    SDP,
    SIPP_INVITE,
    request,
    with_length,
)

MINIMAL = """OPTIONS sip:bob@example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1
From: <sip:alice@example.com>;tag=1
To: <sip:bob@example.com>
Call-ID: abc@10.0.0.1
CSeq: 5 OPTIONS"""


def minimal(replace: dict[str, str | None] | None = None, body: bytes = b"") -> bytes:
    """MINIMAL with header lines replaced (None removes the line)."""
    lines = MINIMAL.split("\n")
    for name, value in (replace or {}).items():
        lines = [
            line if not line.startswith(name + ":") else f"{name}: {value}"
            for line in lines
            if value is not None or not line.startswith(name + ":")
        ]
    return with_length("\n".join(lines), body)


class TestParseRealisticMessages:
    def test_sipp_invite(self) -> None:
        msg = parse_message(SIPP_INVITE)
        assert isinstance(msg, SipRequest)
        assert msg.method == "INVITE"
        assert str(msg.uri) == "sip:service@127.0.0.1:5060"
        assert msg.call_id == "1-4181@127.0.0.1"
        assert msg.cseq == (1, "INVITE")
        assert msg.from_addr.tag == "4181SIPpTag001"
        assert msg.from_addr.display_name == "sipp"
        assert msg.to_addr.tag is None
        assert msg.top_via.branch == "z9hG4bK-4181-1-0"
        assert msg.contacts()[0].uri.port == 5061
        assert msg.content_type == "application/sdp"
        assert msg.body == SDP
        assert msg.headers.get("max-forwards") == "70"

    def test_baresip_invite(self) -> None:
        msg = parse_message(BARESIP_INVITE)
        assert isinstance(msg, SipRequest)
        assert msg.uri.params == {"transport": "udp"}
        assert msg.from_addr.display_name == 'Alice "Al" Smith'
        assert msg.top_via.params["rport"] is None
        contact = msg.contacts()[0]
        assert contact.params["+sip.instance"] == '"<urn:uuid:1-2-3>"'
        assert msg.body == SDP

    def test_response_with_two_vias_on_one_line(self) -> None:
        msg = parse_message(RINGING_RESPONSE)
        assert isinstance(msg, SipResponse)
        assert (msg.status, msg.reason) == (180, "Ringing")
        assert [v.host for v in msg.vias] == ["10.0.0.2", "proxy.example.com"]
        assert msg.top_via.params["received"] == "192.0.2.7"
        assert [str(r.uri) for r in msg.record_routes()] == ["sip:proxy.example.com;lr"]
        assert msg.body == b""

    def test_compact_headers_are_canonicalised(self) -> None:
        raw = (
            b"BYE sip:b@h SIP/2.0\r\n"
            b"v: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"f: <sip:a@h>;tag=1\r\nt: <sip:b@h>;tag=2\r\ni: cid\r\n"
            b"CSeq: 2 BYE\r\nm: <sip:a@h>\r\nk: timer\r\nc: text/plain\r\nl: 2\r\n\r\nhi"
        )
        msg = parse_message(raw)
        names = [name for name, _ in msg.headers.items()]
        assert names == [
            "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Supported", "Content-Type",
            "Content-Length",
        ]  # fmt: skip
        assert msg.headers.get("call-id") == msg.headers.get("i") == "cid"
        assert msg.body == b"hi"

    def test_folded_header_lines(self) -> None:
        raw = minimal({"Subject": None}).replace(
            b"CSeq: 5 OPTIONS",
            b"CSeq: 5\r\n   OPTIONS\r\nSubject: I know you're there,\r\n\tpick up",
        )
        msg = parse_message(raw)
        assert msg.cseq == (5, "OPTIONS")
        assert msg.headers.get("Subject") == "I know you're there, pick up"

    def test_lf_only_and_trailing_whitespace(self) -> None:
        raw = minimal().replace(b"\r\n", b"\n").replace(b"CSeq: 5 OPTIONS", b"CSeq: 5 OPTIONS  \t")
        msg = parse_message(raw)
        assert msg.cseq == (5, "OPTIONS")
        assert msg.headers.get("CSeq") == "5 OPTIONS"

    def test_leading_crlf_ignored(self) -> None:
        assert isinstance(parse_message(b"\r\n\r\n" + minimal()), SipRequest)

    def test_header_name_whitespace_before_colon(self) -> None:
        raw = minimal().replace(b"Call-ID:", b"Call-ID   :")
        assert parse_message(raw).call_id == "abc@10.0.0.1"

    def test_body_longer_than_content_length_is_truncated(self) -> None:
        raw = minimal(body=b"hello") + b"EXTRA"
        assert parse_message(raw).body == b"hello"

    def test_missing_content_length_takes_rest_of_datagram(self) -> None:
        raw = minimal(body=b"hello").replace(b"Content-Length: 5\r\n", b"")
        assert parse_message(raw).body == b"hello"

    def test_unknown_headers_keep_spelling_and_order(self) -> None:
        raw = minimal().replace(b"CSeq:", b"X-Foo: 1\r\nx-foo: 2\r\nCSeq:")
        msg = parse_message(raw)
        assert msg.headers.get_all("X-FOO") == ["1", "2"]
        assert [n for n, _ in msg.headers.items() if n.lower() == "x-foo"] == ["X-Foo", "x-foo"]

    def test_response_without_reason_phrase(self) -> None:
        raw = RINGING_RESPONSE.replace(b"SIP/2.0 180 Ringing", b"SIP/2.0 180")
        msg = parse_message(raw)
        assert isinstance(msg, SipResponse) and msg.reason == ""


class TestParseRejects:
    @pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
    def test_missing_mandatory_header(self, header: str) -> None:
        with pytest.raises(SipParseError, match=header):
            parse_message(minimal({header: None}))

    def test_max_forwards_is_optional(self) -> None:
        assert "Max-Forwards" not in parse_message(minimal()).headers

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"\r\n\r\n",
            b"garbage\r\n\r\n",
            b"OPTIONS sip:b@h\r\n\r\n",
            b"OPTIONS  sip:b@h SIP/2.0 extra\r\n\r\n",
            b"SIP/2.0 2000 OK\r\n\r\n",
            b"SIP/2.0 099 Nope\r\n\r\n",
            b"SIP/2.0 abc OK\r\n\r\n",
            b"OPT(IONS sip:b@h SIP/2.0\r\n\r\n",
        ],
    )
    def test_garbage_start_line(self, raw: bytes) -> None:
        with pytest.raises(SipParseError):
            parse_message(raw)

    def test_bad_version(self) -> None:
        with pytest.raises(SipParseError) as info:
            parse_message(minimal().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
        assert info.value.status == 505

    def test_unsupported_request_uri_scheme_is_416(self) -> None:
        with pytest.raises(SipParseError) as info:
            parse_message(minimal().replace(b"sip:bob@example.com SIP", b"tel:+123 SIP", 1))
        assert info.value.status == 416

    @pytest.mark.parametrize(
        "cseq",
        ["abc OPTIONS", "5", "5 OPTIONS extra", "-1 OPTIONS", "2147483648 OPTIONS", "5 INVITE"],
    )
    def test_bad_cseq(self, cseq: str) -> None:
        with pytest.raises(SipParseError):
            parse_message(minimal({"CSeq": cseq}))

    @pytest.mark.parametrize(
        ("header", "value"),
        [
            ("Via", "SIP/2.0/UDP"),
            ("From", "<sip:alice@"),
            ("To", "not a uri"),
            ("Call-ID", ""),
            ("Call-ID", "two words"),
        ],
    )
    def test_bad_mandatory_values(self, header: str, value: str) -> None:
        with pytest.raises(SipParseError):
            parse_message(minimal({header: value}))

    def test_content_length_larger_than_body(self) -> None:
        with pytest.raises(SipParseError, match="Content-Length"):
            parse_message(minimal(body=b"hello")[:-1])

    @pytest.mark.parametrize("value", ["abc", "-1", "1 2", "99999999999"])
    def test_bad_content_length(self, value: str) -> None:
        raw = minimal().replace(b"Content-Length: 0", f"Content-Length: {value}".encode())
        with pytest.raises(SipParseError):
            parse_message(raw)

    def test_conflicting_content_lengths(self) -> None:
        raw = minimal(body=b"ab").replace(b"Content-Length: 2", b"Content-Length: 2\r\nl: 1")
        with pytest.raises(SipParseError):
            parse_message(raw)

    def test_non_utf8_header_bytes(self) -> None:
        with pytest.raises(SipParseError, match="UTF-8"):
            parse_message(minimal().replace(b"CSeq:", b"X-Bad: \xff\xfe\r\nCSeq:"))

    def test_utf8_header_values_are_fine(self) -> None:
        raw = minimal().replace(b"CSeq:", "Subject: caf\u00e9 \u2603\r\nCSeq:".encode())
        assert parse_message(raw).headers.get("Subject") == "caf\u00e9 \u2603"

    @pytest.mark.parametrize("bad", [b"\x00", b"\x1b", b"\r", b"\x7f"])
    def test_control_characters_in_headers(self, bad: bytes) -> None:
        with pytest.raises(SipParseError):
            parse_message(minimal().replace(b"CSeq: 5", b"CSeq: 5" + bad))

    def test_header_line_without_colon(self) -> None:
        with pytest.raises(SipParseError):
            parse_message(minimal().replace(b"CSeq:", b"Junk\r\nCSeq:"))

    def test_continuation_before_first_header(self) -> None:
        with pytest.raises(SipParseError):
            parse_message(minimal().replace(b"SIP/2.0\r\n", b"SIP/2.0\r\n folded\r\n", 1))

    def test_no_blank_line(self) -> None:
        with pytest.raises(SipParseError):
            parse_message(minimal().rstrip(b"\r\n"))

    def test_oversize(self) -> None:
        body = b"x" * MAX_MESSAGE_SIZE
        with pytest.raises(SipParseError) as info:
            parse_message(minimal(body=body))
        assert info.value.status == 513


class TestPerformance:
    def test_many_folded_lines_parse_in_linear_time(self) -> None:
        raw = minimal().replace(b"CSeq:", b"Subject: a" + b"\r\n b" * 15000 + b"\r\nCSeq:")
        started = time.perf_counter()
        msg = parse_message(raw)
        assert time.perf_counter() - started < 1.0
        assert msg.headers.get("Subject", "").count("b") == 15000

    def test_many_short_headers(self) -> None:
        raw = minimal().replace(b"CSeq:", b"X-A: 1\r\n" * 7000 + b"CSeq:")
        started = time.perf_counter()
        msg = parse_message(raw)
        assert time.perf_counter() - started < 1.0
        assert len(msg.headers.get_all("X-A")) == 7000


class TestSerialisation:
    def test_to_bytes_sets_content_length_and_crlf(self) -> None:
        req = request("MESSAGE")
        req.body = b"hello"
        req.headers.add("Content-Type", "text/plain")
        data = req.to_bytes()
        assert data.endswith(b"\r\nContent-Length: 5\r\n\r\nhello")
        assert b"\n" not in data.replace(b"\r\n", b"")
        again = parse_message(data)
        assert again.body == b"hello"
        assert again.headers.items() == req.headers.items()

    def test_content_length_replaced_in_place(self) -> None:
        req = request("MESSAGE")
        req.headers.add("Content-Length", "99")
        req.headers.add("X-After", "1")
        req.body = b"abc"
        names = [n for n, _ in parse_message(req.to_bytes()).headers.items()]
        assert names[-2:] == ["Content-Length", "X-After"]
        assert req.headers.get_all("Content-Length") == ["3"]

    def test_realistic_messages_round_trip(self) -> None:
        for raw in (SIPP_INVITE, BARESIP_INVITE, RINGING_RESPONSE):
            msg = parse_message(raw)
            assert msg.to_bytes() == raw

    def test_replace_top_via_keeps_other_values(self) -> None:
        msg = parse_message(RINGING_RESPONSE)
        via = msg.top_via
        via.params["x"] = "1"
        msg.replace_top_via(via)
        assert msg.vias[0].params["x"] == "1"
        assert [v.host for v in msg.vias] == ["10.0.0.2", "proxy.example.com"]


class TestHeaders:
    def test_multimap_operations(self) -> None:
        h = Headers([("Via", "a"), ("X", "1"), ("v", "b")])
        assert h.get("VIA") == "a"
        assert h.get_all("via") == ["a", "b"]
        h.insert("Via", "top")
        assert h.get_all("Via") == ["top", "a", "b"]
        h.insert("Route", "r")
        assert h.items()[0] == ("Route", "r")
        h.set("x", "2")
        assert h.get_all("X") == ["2"]
        h.remove("v")
        assert "Via" not in h and "route" in h and 5 not in h
        assert h.get("Missing") is None and h.get("Missing", "d") == "d"

    def test_set_keeps_position_and_drops_duplicates(self) -> None:
        h = Headers([("X-A", "1"), ("X-B", "1"), ("X-A", "2"), ("X-C", "1")])
        h.set("x-a", "new")
        assert h.items() == [("x-a", "new"), ("X-B", "1"), ("X-C", "1")]

    def test_copy_is_independent(self) -> None:
        h = Headers([("A", "1")])
        c = h.copy()
        c.add("B", "2")
        assert len(h) == 1 and len(c) == 2

    def test_canonical_spellings(self) -> None:
        h = Headers()
        for name in ("call-id", "CSEQ", "www-authenticate", "i", "l", "e", "o", "u", "y", "b", "r"):
            h.add(name, "x")
        assert [n for n, _ in h.items()] == [
            "Call-ID", "CSeq", "WWW-Authenticate", "Call-ID", "Content-Length", "Content-Encoding",
            "Event", "Allow-Events", "Identity", "Referred-By", "Refer-To",
        ]  # fmt: skip


class TestMakeResponse:
    def test_copies_dialog_headers_and_adds_tag(self) -> None:
        req = parse_message(BARESIP_INVITE)
        assert isinstance(req, SipRequest)
        req.headers.insert("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp")
        resp = make_response(req, 180, to_tag="mytag", extra_headers=[("Server", "cb")])
        assert resp.reason == "Ringing"
        assert resp.headers.get_all("Via") == req.headers.get_all("Via")
        assert resp.to_addr.tag == "mytag"
        assert resp.from_addr == req.from_addr
        assert (resp.call_id, resp.cseq) == (req.call_id, req.cseq)
        assert resp.headers.get("Server") == "cb"
        assert "Contact" not in resp.headers and "User-Agent" not in resp.headers

    def test_existing_to_tag_is_kept(self) -> None:
        req = request("BYE", to_tag="theirs")
        assert make_response(req, 200, to_tag="other").to_addr.tag == "theirs"

    def test_record_route_only_for_dialog_creating_success(self) -> None:
        req = request("INVITE", routes=())
        req.headers.add("Record-Route", "<sip:p1;lr>")
        req.headers.add("Record-Route", "<sip:p2;lr>")
        assert make_response(req, 200).headers.get_all("Record-Route") == [
            "<sip:p1;lr>",
            "<sip:p2;lr>",
        ]
        assert make_response(req, 180).headers.get_all("Record-Route") == [
            "<sip:p1;lr>",
            "<sip:p2;lr>",
        ]
        assert make_response(req, 100).headers.get_all("Record-Route") == []
        assert make_response(req, 486).headers.get_all("Record-Route") == []
        opts = request("OPTIONS")
        opts.headers.add("Record-Route", "<sip:p1;lr>")
        assert make_response(opts, 200).headers.get_all("Record-Route") == []

    def test_body_and_content_type(self) -> None:
        resp = make_response(request(), 200, body=SDP, content_type="application/sdp")
        assert resp.content_type == "application/sdp"
        assert parse_message(resp.to_bytes()).body == SDP

    def test_reason_phrases(self) -> None:
        assert REASON_PHRASES[487] == "Request Terminated"
        assert make_response(request(), 481).reason == "Call/Transaction Does Not Exist"
        assert make_response(request(), 299).reason == "Success"
        assert make_response(request(), 200, "Fine").reason == "Fine"


def test_identifiers() -> None:
    branches = {generate_branch() for _ in range(100)}
    assert len(branches) == 100
    assert all(re.fullmatch(r"z9hG4bK[0-9a-f]{20}", b) for b in branches)
    assert generate_tag() != generate_tag()
    call_id = generate_call_id("10.0.0.1")
    assert call_id.endswith("@10.0.0.1") and " " not in call_id
