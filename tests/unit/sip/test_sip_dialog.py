from __future__ import annotations

from callboard.sip.dialog import Dialog
from callboard.sip.headers import Via
from callboard.sip.message import SipRequest, make_response
from callboard.sip.uri import SipUri
from tests.unit.sip.sip_samples import request


def via() -> Via:
    return Via("UDP", "10.0.0.1", 5060, {"branch": "z9hG4bKnew", "rport": None})


def uac_dialog(
    record_routes: list[str], contact: str = "<sip:bob@192.0.2.9:5070>"
) -> tuple[SipRequest, Dialog]:
    invite = request("INVITE", cseq=10)
    for rr in record_routes:
        invite.headers.add("Record-Route", rr)
    ok = make_response(invite, 200, to_tag="bobtag", extra_headers=[("Contact", contact)])
    return invite, Dialog.from_uac_response(invite, ok)


def test_uac_dialog_state() -> None:
    invite, dialog = uac_dialog(["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"])
    assert dialog.call_id == invite.call_id
    assert (dialog.local_tag, dialog.remote_tag) == ("from1", "bobtag")
    assert dialog.local_uri.tag == "from1" and dialog.remote_uri.tag == "bobtag"
    assert str(dialog.remote_target) == "sip:bob@192.0.2.9:5070"
    # the UAC reverses the Record-Route it received
    assert [r.uri.host for r in dialog.route_set] == ["p2.example.com", "p1.example.com"]
    assert (dialog.local_cseq, dialog.remote_cseq) == (10, None)


def test_loose_routing_request() -> None:
    _, dialog = uac_dialog(["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"])
    bye = dialog.create_request("BYE", via=via(), extra_headers=[("Reason", "SIP;cause=200")])
    assert str(bye.uri) == "sip:bob@192.0.2.9:5070"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert bye.cseq == (11, "BYE")
    assert bye.headers.get("Max-Forwards") == "70"
    assert bye.top_via.branch == "z9hG4bKnew"
    assert bye.from_addr.tag == "from1" and bye.to_addr.tag == "bobtag"
    assert bye.call_id == dialog.call_id
    assert bye.headers.get("Reason") == "SIP;cause=200"
    assert "Contact" not in bye.headers
    assert dialog.next_hop() == ("p2.example.com", 5060, "udp")


def test_strict_routing_request() -> None:
    _, dialog = uac_dialog(
        ["<sip:p1.example.com>", "<sip:p2.example.com:5080;transport=tcp;method=INVITE?x=y>"]
    )
    info = dialog.create_request(
        "INFO", via=via(), body=b"Signal=1\r\n", content_type="application/dtmf-relay"
    )
    # the strict router (first in the route set) becomes the Request-URI...
    assert str(info.uri) == "sip:p2.example.com:5080;transport=tcp"
    # ...and the remote target goes last in Route
    assert info.headers.get_all("Route") == ["<sip:p1.example.com>", "<sip:bob@192.0.2.9:5070>"]
    assert info.content_type == "application/dtmf-relay" and info.body == b"Signal=1\r\n"
    assert dialog.next_hop() == ("p2.example.com", 5080, "tcp")


def test_no_route_set() -> None:
    _, dialog = uac_dialog([], contact="<sip:bob@[2001:db8::5];transport=tcp>")
    req = dialog.create_request("UPDATE", via=via(), contact=dialog.local_uri)
    assert "Route" not in req.headers
    assert str(req.uri) == "sip:bob@[2001:db8::5];transport=tcp"
    assert req.headers.get("Contact") is not None
    assert dialog.next_hop() == ("2001:db8::5", 5060, "tcp")


def test_missing_contact_falls_back_to_request_uri() -> None:
    invite = request("INVITE")
    ok = make_response(invite, 200, to_tag="t")
    assert Dialog.from_uac_response(invite, ok).remote_target == invite.uri


def test_ack_and_cancel_do_not_consume_cseq() -> None:
    _, dialog = uac_dialog([])
    ack = dialog.create_ack(10, via=via())
    assert ack.method == "ACK" and ack.cseq == (10, "ACK")
    assert dialog.local_cseq == 10
    assert dialog.create_request("INVITE", via=via()).cseq == (11, "INVITE")
    assert (
        dialog.create_ack(11, via=via(), body=b"v=0", content_type="application/sdp").body == b"v=0"
    )
    assert dialog.create_request("BYE", via=via()).cseq == (12, "BYE")


def test_uas_dialog_and_remote_cseq() -> None:
    invite = request("INVITE", cseq=5)
    invite.headers.add("Record-Route", "<sip:p1;lr>, <sip:p2;lr>")
    dialog = Dialog.from_uas_request(invite, "mytag")
    assert (dialog.local_tag, dialog.remote_tag) == ("mytag", "from1")
    assert dialog.local_uri.tag == "mytag" and dialog.remote_uri.tag == "from1"
    assert [r.uri.host for r in dialog.route_set] == ["p1", "p2"]  # in order for the UAS
    assert str(dialog.remote_target) == "sip:alice@10.0.0.1:5060"
    assert dialog.remote_cseq == 5
    bye = dialog.create_request("BYE", via=via())
    assert bye.cseq == (1, "BYE")
    assert bye.from_addr.tag == "mytag" and bye.to_addr.tag == "from1"
    assert bye.from_addr.uri == invite.to_addr.uri

    later = request("INFO", cseq=7, to_tag="mytag")
    assert dialog.check_remote_cseq(later) and dialog.remote_cseq == 7
    assert not dialog.check_remote_cseq(request("INFO", cseq=6, to_tag="mytag"))
    assert dialog.remote_cseq == 7
    assert dialog.check_remote_cseq(request("ACK", cseq=1, to_tag="mytag"))
    assert dialog.check_remote_cseq(request("CANCEL", cseq=1, to_tag="mytag"))
    assert dialog.remote_cseq == 7


def test_update_remote_target() -> None:
    _, dialog = uac_dialog([])
    reinvite = request("INVITE", to_tag="from1")
    reinvite.headers.set("Contact", "<sip:bob@192.0.2.77:6000>")
    dialog.update_remote_target(reinvite)
    assert dialog.remote_target == SipUri.parse("sip:bob@192.0.2.77:6000")
    reinvite.headers.remove("Contact")
    dialog.update_remote_target(reinvite)
    assert dialog.remote_target.port == 6000


def test_matches() -> None:
    invite = request("INVITE")
    dialog = Dialog.from_uas_request(invite, "mytag")
    assert dialog.matches(request("BYE", to_tag="mytag"))
    assert not dialog.matches(request("BYE", to_tag="other"))
    assert not dialog.matches(request("BYE", to_tag="mytag", call_id="else"))
    assert not dialog.matches(request("BYE", to_tag="mytag", from_tag="x"))
    ours = dialog.create_request("BYE", via=via())
    assert dialog.matches(make_response(ours, 200))
    assert not dialog.matches(ours)  # our own request is not one from the peer
