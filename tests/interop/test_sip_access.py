"""Who may call in over SIP, against the real server: SIP_ALLOWED_IPS (403, or silence with
SIP_SILENT_DROP; a peer we called may still hang up), digest authentication of inbound
INVITEs answered by SIPp, the per-source INVITE rate limit (another source's calls go on),
and MAX_LEGS (503 on SIP and REST while the running calls are untouched)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.helpers.raw_sip import sdp_offer, sip_request, udp_peer
from tests.helpers.server import ServerFactory
from tests.helpers.sipp import SippProcess, SippRunner
from tests.helpers.webhooks import WebhookReceiver


def test_sources_outside_sip_allowed_ips_are_refused_or_ignored(
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    hooks = webhook_receiver
    server = server_factory(WEBHOOK_URL=hooks.url, SIP_ALLOWED_IPS="10.0.0.0/8,2001:db8::/32")
    with udp_peer(server) as peer:
        for method in ("INVITE", "OPTIONS"):
            body = sdp_offer() if method == "INVITE" else b""
            data = sip_request(method, server, peer.port, body=body)
            assert peer.request(data).status == 403, method
    assert server.api("GET", "/legs").json() == []
    # Our own call to a peer outside the list: its BYE (in our dialog) is let in.
    callee = sipp_callee("uas_hangup", rtp_echo=True)
    leg = originate(server, callee.uri("bob"), codecs=["PCMU"])["id"]
    assert hooks.wait_for("leg.disconnected", leg_id=leg)["cdr"]["reason"] == "remote_bye"
    callee.wait().assert_ok()

    silent = server_factory(SIP_ALLOWED_IPS="10.0.0.0/8", SIP_SILENT_DROP="true")
    with udp_peer(silent) as peer:
        peer.send(sip_request("OPTIONS", silent, peer.port, body=b""))
        peer.send(sip_request("INVITE", silent, peer.port, body=sdp_offer()))
        assert peer.drain(1.5) == []  # not even 100 Trying


def test_inbound_invites_need_digest_credentials_when_users_are_set(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, sipp: SippRunner
) -> None:
    hooks = webhook_receiver
    server = server_factory(WEBHOOK_URL=hooks.url, SIP_INBOUND_USERS="alice:s3cret,bob:pw")
    with udp_peer(server) as peer:  # no credentials: challenged, no leg
        response = peer.request(sip_request("INVITE", server, peer.port, body=sdp_offer()))
        assert response.status == 401
        assert "Digest" in (response.header("WWW-Authenticate") or "")
    assert server.api("GET", "/legs").json() == []
    caller = sipp.start("uac_auth", server.sip_target, timeout=30)
    leg = hooks.wait_for("leg.ringing", instance_id=server.instance_id)["leg_id"]
    assert server.api("POST", f"/legs/{leg}/answer").status_code == 200
    caller.wait().assert_ok()
    assert hooks.wait_for("leg.disconnected", leg_id=leg)["cdr"]["reason"] == "remote_bye"
    assert len(hooks.events("leg.ringing", instance_id=server.instance_id)) == 1


def test_an_invite_flood_from_one_source_is_limited_while_others_call_in(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(SIP_INVITE_RATE="5", SIP_INVITE_BURST="5")
    with udp_peer(server, "127.0.0.2") as flooder, udp_peer(server, "127.0.0.3") as other:
        for _ in range(40):
            flooder.send(sip_request("INVITE", server, flooder.port, body=sdp_offer()))
        flooder.drain(1.0)
        statuses = [r.status for r in flooder.responses if r.status >= 180]
        limited = [r for r in flooder.responses if r.status == 503]
        assert len(limited) >= 30, statuses
        assert limited[0].header("Retry-After") == "1"
        assert statuses.count(180) <= 10  # the burst, and what refilled meanwhile
        # Another source is not limited by the flood.
        invite = sip_request("INVITE", server, other.port, body=sdp_offer())
        other.send(invite)
        other.drain(1.0)
        assert 180 in [r.status for r in other.responses]
    legs = server.api("GET", "/legs").json()
    assert 2 <= len(legs) <= 11
    for leg in legs:
        server.api("DELETE", f"/legs/{leg['id']}")


def test_max_legs_refuses_new_calls_and_keeps_the_running_ones(
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    hooks = webhook_receiver
    server = server_factory(WEBHOOK_URL=hooks.url, MAX_LEGS="2", MAX_ROOMS="1")
    callees = [sipp_callee("uas_answer", rtp_echo=True) for _ in range(2)]
    legs = [originate(server, c.uri("bob"), codecs=["PCMU"])["id"] for c in callees]
    for leg in legs:
        hooks.wait_for("leg.connected", leg_id=leg)
    refused = server.api("POST", "/legs", json={"type": "sip", "uri": callees[0].uri("x")})
    assert refused.status_code == 503 and "MAX_LEGS" in refused.json()["error"]
    with udp_peer(server) as peer:
        busy = peer.request(sip_request("INVITE", server, peer.port, body=sdp_offer()))
        assert busy.status == 503 and busy.header("Retry-After")
    assert server.api("POST", "/rooms", json={"id": "one"}).status_code == 201
    two = server.api("POST", "/rooms", json={"id": "two"})
    assert two.status_code == 503 and "MAX_ROOMS" in two.json()["error"]
    time.sleep(1.0)
    for leg in legs:  # untouched, and media still flows
        state = server.api("GET", f"/legs/{leg}").json()
        assert state["state"] == "connected"
        server.api("DELETE", f"/legs/{leg}")
    for leg in legs:
        end = hooks.wait_for("leg.disconnected", leg_id=leg)
        assert end["cdr"]["reason"] == "api_hangup"
        assert end["quality"]["rtp_packets_received"] > 40
    for callee in callees:
        callee.wait().assert_ok()
    again = server.api("POST", "/legs", json={"type": "sip", "uri": callees[0].uri("x")})
    assert again.status_code == 201  # room again once the legs ended
    server.api("DELETE", f"/legs/{again.json()['id']}")


def test_a_request_body_over_max_request_bytes_is_a_413(server_factory: ServerFactory) -> None:
    server = server_factory(MAX_REQUEST_BYTES="2048")
    big = {"id": "r", "webhook_url": "http://example.invalid/" + "a" * 4000}
    refused = server.api("POST", "/rooms", json=big)
    assert refused.status_code == 413 and "MAX_REQUEST_BYTES" in refused.json()["error"]
    assert server.api("POST", "/rooms", json={"id": "small"}).status_code == 201
