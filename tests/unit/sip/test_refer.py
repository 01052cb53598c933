import pytest

from callboard.sip.errors import SipParseError
from callboard.sip.message import SipRequest
from callboard.sip.refer import (
    Replaces,
    notify_headers,
    parse_replaces,
    read_refer,
    read_sipfrag,
    sipfrag,
)
from callboard.sip.uri import SipUri


def _refer(*refer_to: str) -> SipRequest:
    request = SipRequest("REFER", SipUri.parse("sip:us@127.0.0.1"))
    for value in refer_to:
        request.headers.add("Refer-To", value)
    return request


def test_a_blind_refer_names_its_target() -> None:
    target = read_refer(_refer("<sip:carol@198.51.100.7:5060;transport=udp>"))
    assert target.kind == "blind"
    assert target.target_uri == "sip:carol@198.51.100.7:5060;transport=udp"
    assert target.replaces is None
    assert read_refer(_refer("sip:carol@example.com")).target_uri == "sip:carol@example.com"


def test_an_attended_refer_carries_the_dialog_to_replace() -> None:
    value = "<sip:dave@h?Replaces=abc%40h%3Bto-tag%3D1%3Bfrom-tag%3D2&Require=replaces>"
    target = read_refer(_refer(value))
    assert target.kind == "attended"
    assert target.target_uri == "sip:dave@h"
    assert target.replaces == Replaces("abc@h", "1", "2")


@pytest.mark.parametrize(
    "values",
    [(), ("<sip:a@h>", "<sip:b@h>"), ("not a uri",), ("<sip:a@h?Replaces=only-call-id>",)],
)
def test_a_refer_without_one_good_refer_to_is_refused(values: tuple[str, ...]) -> None:
    with pytest.raises(SipParseError):
        read_refer(_refer(*values))


def test_replaces_needs_both_tags() -> None:
    assert parse_replaces("x;from-tag=b;to-tag=a") == Replaces("x", "a", "b")
    with pytest.raises(SipParseError):
        parse_replaces("x;to-tag=a")


def test_the_refer_to_we_send_round_trips() -> None:
    from callboard.sip.refer import refer_to

    assert refer_to("sip:bob@example.com") == "<sip:bob@example.com>"
    value = refer_to("sip:bob@h", Replaces("c@h", "to1", "from2"))
    assert value == "<sip:bob@h?Replaces=c%40h%3Bto-tag%3Dto1%3Bfrom-tag%3Dfrom2>"
    target = read_refer(_refer(value))
    assert target.target_uri == "sip:bob@h" and target.replaces == Replaces("c@h", "to1", "from2")


def test_a_sipfrag_gives_its_status_line() -> None:
    assert read_sipfrag(b"SIP/2.0 180 Ringing\r\n") == (180, "Ringing")
    assert read_sipfrag(b"SIP/2.0 200 OK\r\nContact: <sip:x@h>\r\n") == (200, "OK")
    assert read_sipfrag(b"SIP/2.0 503") == (503, "")
    for junk in (b"", b"INVITE sip:a@h SIP/2.0", b"SIP/2.0 abc"):
        with pytest.raises(SipParseError):
            read_sipfrag(junk)


def test_a_replaces_header_value_round_trips_with_early_only() -> None:
    for early_only in (False, True):
        replaces = Replaces("c@h", "to1", "from1", early_only)
        assert parse_replaces(replaces.header_value()) == replaces
    assert Replaces("c@h", "a", "b").header_value() == "c@h;to-tag=a;from-tag=b"


def test_the_notifies_we_send_for_an_accepted_refer() -> None:
    assert read_sipfrag(sipfrag(180, "Ringing")) == (180, "Ringing")
    assert dict(notify_headers(final=False)) == {
        "Event": "refer",
        "Subscription-State": "active;expires=60",
    }
    assert dict(notify_headers(final=True))["Subscription-State"].startswith("terminated")
