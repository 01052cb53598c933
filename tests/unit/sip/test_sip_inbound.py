from __future__ import annotations

from callboard.sip.errors import SipParseError
from callboard.sip.inbound import error_response, salvage_request, stamp_via_source
from callboard.sip.message import SipRequest, parse_message
from tests.unit.sip.sip_samples import BARESIP_INVITE, SIPP_INVITE


def parsed(raw: bytes) -> SipRequest:
    msg = parse_message(raw)
    assert isinstance(msg, SipRequest)
    return msg


def test_bare_rport_filled_and_received_added_even_when_equal() -> None:
    req = parsed(BARESIP_INVITE)  # Via 127.0.0.1:35000 with bare rport
    stamp_via_source(req, ("127.0.0.1", 35000))
    assert req.top_via.params == {
        "branch": "z9hG4bK9f1a2b3c4d",
        "rport": "35000",
        "received": "127.0.0.1",
    }


def test_rport_reflects_nat_port() -> None:
    req = parsed(BARESIP_INVITE)
    stamp_via_source(req, ("203.0.113.5", 61000))
    assert (req.top_via.params["received"], req.top_via.params["rport"]) == ("203.0.113.5", "61000")


def test_received_only_when_source_differs() -> None:
    req = parsed(SIPP_INVITE)  # Via 127.0.0.1:5061, no rport
    before = req.headers.get("Via")
    stamp_via_source(req, ("127.0.0.1", 5061))
    assert req.headers.get("Via") == before
    stamp_via_source(req, ("10.9.9.9", 5061))
    assert req.top_via.params["received"] == "10.9.9.9"
    assert "rport" not in req.top_via.params


def test_salvage_answers_readable_requests() -> None:
    broken = SIPP_INVITE.replace(b"Content-Length: 192", b"Content-Length: banana")
    try:
        parse_message(broken)
    except SipParseError as exc:
        error = exc
    req = salvage_request(broken)
    assert req is not None and req.method == "INVITE"
    resp = error_response(req, error, "127.0.0.1")
    assert resp.status == 400
    assert resp.headers.get_all("Via") == ["SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4181-1-0"]
    assert resp.call_id == "1-4181@127.0.0.1" and resp.cseq == (1, "INVITE")
    assert resp.to_addr.tag
    warning = resp.headers.get("Warning") or ""
    assert warning.startswith('399 127.0.0.1 "') and "Content-Length" in warning
    assert parse_message(resp.to_bytes()).headers.get("Warning") == warning


def test_salvage_drops_unparseable_from_and_to() -> None:
    broken = SIPP_INVITE.replace(b"To: service <sip:service@127.0.0.1:5060>", b"To: <<garbage")
    req = salvage_request(broken)
    assert req is not None and "To" not in req.headers and "From" in req.headers


def test_salvage_gives_up() -> None:
    assert salvage_request(b"\x00\x01garbage") is None
    assert salvage_request(b"") is None
    assert (
        salvage_request(
            SIPP_INVITE.replace(b"INVITE sip", b"ACK sip").replace(b"1 INVITE", b"1 ACK")
        )
        is None
    )
    assert salvage_request(SIPP_INVITE.replace(b"Via: SIP/2.0/UDP", b"Via: junk")) is None
    assert salvage_request(SIPP_INVITE.replace(b"Call-ID:", b"X-Call-ID:")) is None
    assert salvage_request(SIPP_INVITE.replace(b"CSeq: 1 INVITE", b"CSeq: one")) is None
    assert salvage_request(SIPP_INVITE.replace(b"SIP/2.0\r\n", b"HTTP/1.1\r\n", 1)) is None
    response = b"SIP/2.0 200 OK\r\n" + SIPP_INVITE.split(b"\r\n", 1)[1]
    assert salvage_request(response) is None


def test_error_response_sanitises_warning_text() -> None:
    req = salvage_request(SIPP_INVITE)
    assert req is not None
    resp = error_response(req, SipParseError('bad "quote" \\ and\r\nnewline', status=513), "h")
    assert resp.status == 513 and resp.reason == "Message Too Large"
    assert (
        parse_message(resp.to_bytes()).headers.get("Warning")
        == '399 h "bad  quote    and  newline"'
    )
