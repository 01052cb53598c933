"""Calls nobody answers, both ways, against a hand-played SIP peer on a raw UDP socket.

Outbound: `ring_timeout` runs from the INVITE whatever the far end does (silent, stuck after
100 Trying, answering too late). Inbound: an unanswered call ends after INBOUND_RING_TIMEOUT,
ringing calls hold no RTP ports, and an INVITE whose headers do not parse is refused with 400
before anything is allocated for it.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.raw_sip import (
    Message,
    UdpPeer,
    mutate,
    response_for,
    sdp_offer,
    sip_request,
    udp_peer,
)
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver


@pytest.fixture
def peer(hooked_server: ServerProcess) -> Iterator[UdpPeer]:
    """A hand-played SIP peer for `hooked_server` (whose webhook is `webhook_receiver`)."""
    with udp_peer(hooked_server) as sip_peer:
        yield sip_peer


def _dial(server: ServerProcess, peer: UdpPeer, ring_timeout: int) -> str:
    body = {"type": "sip", "uri": f"sip:nobody@127.0.0.1:{peer.port}", "ring_timeout": ring_timeout}
    response = server.api("POST", "/legs", body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _first_request(peer: UdpPeer, method: str, timeout: float = 3.0) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in peer.requests:
            if message.data.startswith(method.encode() + b" "):
                return message
        peer.drain(0.1, until_any=True)
    raise AssertionError(f"no {method} arrived; got {peer.requests!r}")


def _methods(peer: UdpPeer) -> list[str]:
    return [m.data.split(b" ", 1)[0].decode() for m in peer.requests]


def _ended_by_ring_timeout(hooks: WebhookReceiver, leg: str, started: float) -> None:
    """leg.disconnected with ring_timeout, two seconds (ring_timeout=2) after `started`."""
    end = hooks.wait_for("leg.disconnected", leg_id=leg, timeout=6)
    elapsed = time.monotonic() - started
    assert end["cdr"]["reason"] == "ring_timeout"
    assert 1.8 <= elapsed <= 3.0, f"ended after {elapsed:.2f}s"


def test_ring_timeout_with_a_callee_that_never_answers(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, peer: UdpPeer
) -> None:
    started = time.monotonic()
    leg = _dial(hooked_server, peer, ring_timeout=2)
    _first_request(peer, "INVITE")
    _ended_by_ring_timeout(webhook_receiver, leg, started)
    assert hooked_server.api("GET", "/legs").json() == []
    # No provisional response came, so no CANCEL may be sent (RFC 3261 9.1).
    peer.drain(0.5)
    assert "CANCEL" not in _methods(peer)


def test_ring_timeout_after_100_trying_cancels_even_if_the_cancel_is_never_answered(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, peer: UdpPeer
) -> None:
    started = time.monotonic()
    leg = _dial(hooked_server, peer, ring_timeout=2)
    peer.send(response_for(_first_request(peer, "INVITE"), 100))
    _ended_by_ring_timeout(webhook_receiver, leg, started)
    _first_request(peer, "CANCEL")  # sent, and left unanswered by this peer
    assert hooked_server.api("GET", "/legs").json() == []


def test_a_200_after_the_ring_timeout_is_acked_and_hung_up(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, peer: UdpPeer
) -> None:
    started = time.monotonic()
    leg = _dial(hooked_server, peer, ring_timeout=2)
    invite = _first_request(peer, "INVITE")
    _ended_by_ring_timeout(webhook_receiver, leg, started)
    # The callee answers late: the server must not leave it with a call nobody owns.
    peer.send(response_for(invite, 200, to_tag="late1", sdp=sdp_offer(port=40100)))
    _first_request(peer, "ACK")
    bye = _first_request(peer, "BYE")
    assert "late1" in (bye.header("To") or "")
    peer.send(response_for(bye, 200))
    # The callee did not get our ACK and sends its 200 again: ACKed again, not BYEd again.
    peer.send(response_for(invite, 200, to_tag="late1", sdp=sdp_offer(port=40100)))
    peer.drain(1.0)
    assert _methods(peer).count("ACK") == 2 and _methods(peer).count("BYE") == 1
    assert len(webhook_receiver.events("leg.disconnected", leg_id=leg)) == 1
    assert hooked_server.api("GET", "/legs").json() == []


def test_an_unanswered_inbound_call_ends_with_480_after_the_inbound_ring_timeout(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    server = server_factory(WEBHOOK_URL=webhook_receiver.url, INBOUND_RING_TIMEOUT="2")
    peer = UdpPeer(server)
    try:
        call_id = f"ring-{uuid.uuid4().hex}"
        invite = sip_request("INVITE", server, peer.port, call_id=call_id, body=sdp_offer())
        started = time.monotonic()
        peer.send(invite)
        ringing = webhook_receiver.wait_for("leg.ringing", instance_id=server.instance_id)
        final = peer.wait_final(call_id, timeout=5)
        elapsed = time.monotonic() - started
        assert final is not None and final.status == 480, final
        assert 1.8 <= elapsed <= 3.0, f"480 after {elapsed:.2f}s"
        end = webhook_receiver.wait_for("leg.disconnected", leg_id=ringing["leg_id"])
        assert end["cdr"]["reason"] == "ring_timeout"
        assert server.api("GET", "/legs").json() == []
    finally:
        peer.close()


def test_ringing_inbound_calls_hold_no_rtp_ports(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    """A scanner's INVITEs ring but cannot use up the RTP range: with room for two calls,
    twenty ringing calls still leave both for the calls that are answered."""
    lender = server_factory()  # makes no call: it only lends its reserved RTP port window
    low = lender.rtp_window.low + lender.rtp_window.low % 2
    small = server_factory(
        WEBHOOK_URL=webhook_receiver.url, RTP_PORT_MIN=str(low), RTP_PORT_MAX=str(low + 3)
    )
    peer = UdpPeer(small)
    try:
        for _ in range(20):
            invite = sip_request("INVITE", small, peer.port, body=sdp_offer())
            peer.send(invite)
        webhook_receiver.wait_for_count(20, "leg.ringing", instance_id=small.instance_id)
        legs = small.api("GET", "/legs").json()
        assert len(legs) == 20 and {leg["state"] for leg in legs} == {"ringing"}
        first, second, third = (leg["id"] for leg in legs[:3])
        assert small.api("POST", f"/legs/{first}/answer").json()["status"] == "answered"
        assert small.api("POST", f"/legs/{second}/answer").json()["status"] == "answered"
        # Both port pairs are now in use: the third answer is refused, and the leg rings on.
        refused = small.api("POST", f"/legs/{third}/answer")
        assert refused.status_code == 503, refused.text
        assert "RTP port" in refused.json()["error"]
        assert small.api("GET", f"/legs/{third}").json()["state"] == "ringing"
        # Added to a new room, it is answered first: that fails the same way, and the room
        # made for it does not stay behind.
        added = small.api("POST", "/rooms/made-for-it/legs", {"leg_id": third})
        assert added.status_code == 503, added.text
        assert small.api("GET", "/rooms/made-for-it").status_code == 404
        answers = [m for m in peer.drain(1.0) if m.status == 200]
        assert len(answers) >= 2 and all(b"m=audio" in m.data for m in answers)
    finally:
        peer.close()


def test_an_invite_whose_contact_does_not_parse_is_refused_with_400(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, peer: UdpPeer
) -> None:
    server = hooked_server
    for contact in ("Contact: <sip:", "Contact: <<>>;;", "Contact: sip:a@b:notaport"):
        call_id = f"contact-{uuid.uuid4().hex}"
        invite = sip_request("INVITE", server, peer.port, call_id=call_id, body=sdp_offer())
        invite = invite.replace(
            f"Contact: <sip:mallory@127.0.0.1:{peer.port}>".encode(), contact.encode()
        )
        assert peer.request(invite).status == 400, contact
    webhook_receiver.assert_no_event("leg.ringing", within=0.5)
    assert server.api("GET", "/legs").json() == []
    assert "Traceback" not in server.log_text()
    assert "never retrieved" not in server.log_text()


def test_a_burst_of_mutated_invites_leaves_room_for_a_genuine_call(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    """What a scanner's junk does: hundreds of INVITEs, many of which parse and ring. The
    callee's range holds 100 port pairs; a genuine call is answered, with media, while the
    junk still rings, and no failure inside call set-up goes unanswered or unlogged."""
    caller = server_factory(WEBHOOK_URL=webhook_receiver.url)
    callee = server_factory(WEBHOOK_URL=webhook_receiver.url)
    rng = random.Random(8)
    peer = UdpPeer(callee)
    try:
        for i in range(400):
            invite = sip_request("INVITE", callee, peer.port, body=sdp_offer())
            # A scanner's INVITEs are mostly well formed; some here are broken on top.
            peer.send(invite if i % 3 == 0 else mutate(invite, rng))
            time.sleep(0.003)  # a scanner's pace, not a flood the kernel would drop
            if i % 20 == 0:
                peer.drain()  # keep our socket's receive buffer from filling up
        peer.drain(1.0)
        ringing = [leg for leg in callee.api("GET", "/legs").json() if leg["state"] == "ringing"]
        assert len(ringing) > 100, f"only {len(ringing)} junk INVITEs ring: too few to matter"

        since = webhook_receiver.mark()
        response = caller.api("POST", "/legs", {"type": "sip", "uri": callee.sip_uri("bob")})
        assert response.status_code == 201, response.text
        a_leg = response.json()["id"]
        b_leg = webhook_receiver.wait_for(
            lambda e: e.type == "leg.ringing" and "mallory" not in str(e.get("from")),
            since=since,
            instance_id=callee.instance_id,
        )["leg_id"]
        assert callee.api("POST", f"/legs/{b_leg}/answer").status_code == 200
        webhook_receiver.wait_for("leg.connected", leg_id=a_leg)
        time.sleep(1.0)
        assert caller.api("DELETE", f"/legs/{a_leg}").status_code == 200
        end = webhook_receiver.wait_for("leg.disconnected", leg_id=b_leg)
        assert end["quality"]["rtp_packets_received"] >= 40
        log = callee.log_text()
        assert "never retrieved" not in log and "Traceback" not in log
    finally:
        peer.close()
