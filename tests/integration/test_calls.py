"""Two instances on loopback calling each other: the call life cycle and its events."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.helpers.server import ServerFactory
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect, dial, disconnected, pair


def test_answer_then_caller_hangs_up(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = dial(
        a, b, hooks, **{"from": "alice", "headers": {"X-Correlation-ID": "abc-123"}}
    )
    ringing = hooks.wait_for("leg.ringing", leg_id=b_leg)
    assert "alice@" in ringing["from"]
    assert ringing["to"].startswith("sip:bob@127.0.0.1")
    assert ringing["sip_headers"] == {"X-Correlation-ID": "abc-123"}
    leg = b.get_leg(b_leg)
    assert leg is not None
    assert leg["type"] == "sip_inbound" and leg["state"] == "ringing"
    assert leg["sip_headers"] == {"X-Correlation-ID": "abc-123"}
    assert leg["instance_id"] == b.instance_id

    assert b.api("POST", f"/legs/{b_leg}/answer").json()["status"] == "answered"
    b.wait_for_leg_state(b_leg, "connected")
    a.wait_for_leg_state(a_leg, "connected")
    time.sleep(1.0)  # let RTP flow both ways

    assert a.api("DELETE", f"/legs/{a_leg}").json()["status"] == "hung_up"
    end_a = disconnected(hooks, a_leg)
    end_b = disconnected(hooks, b_leg)
    assert end_a["cdr"]["reason"] == "api_hangup"
    assert end_b["cdr"]["reason"] == "remote_bye"
    for end in (end_a, end_b):
        assert end["cdr"]["duration_answered"] >= 0.9
        assert end["cdr"]["duration_total"] >= end["cdr"]["duration_answered"]
        quality = end["quality"]
        assert quality["rtp_packets_received"] >= 40
        assert quality["rtp_packets_lost"] == 0
        assert 4.0 <= quality["mos_score"] <= 4.5
    assert hooks.types(leg_id=b_leg) == ["leg.ringing", "leg.connected", "leg.disconnected"]
    assert hooks.types(leg_id=a_leg) == ["leg.ringing", "leg.connected", "leg.disconnected"]
    assert a.api("GET", f"/legs/{a_leg}").status_code == 404
    assert b.api("GET", "/legs").json() == []


def test_callee_hangs_up(server_factory: ServerFactory, webhook_receiver: WebhookReceiver) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = connect(a, b, hooks)
    b.api("DELETE", f"/legs/{b_leg}")
    assert disconnected(hooks, a_leg)["cdr"]["reason"] == "remote_bye"
    assert disconnected(hooks, b_leg)["cdr"]["reason"] == "api_hangup"
    hooks.assert_no_event("leg.disconnected", within=0.5, leg_id=a_leg, cdr__reason="api_hangup")
    assert len(hooks.events("leg.disconnected", leg_id=a_leg)) == 1


def test_caller_cancel(server_factory: ServerFactory, webhook_receiver: WebhookReceiver) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = dial(a, b, hooks)
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
    end_b = disconnected(hooks, b_leg)
    end_a = disconnected(hooks, a_leg)
    assert end_b["cdr"]["reason"] == "caller_cancel"
    assert end_a["cdr"]["reason"] == "api_hangup"
    assert end_a["cdr"]["duration_answered"] == 0
    assert "quality" not in end_a


def test_ring_timeout(server_factory: ServerFactory, webhook_receiver: WebhookReceiver) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    started = time.monotonic()
    a_leg, b_leg = dial(a, b, hooks, ring_timeout=1)
    end_a = disconnected(hooks, a_leg)
    assert end_a["cdr"]["reason"] == "ring_timeout"
    assert 0.8 <= time.monotonic() - started <= 4.0
    assert disconnected(hooks, b_leg)["cdr"]["reason"] == "caller_cancel"


def test_max_duration(server_factory: ServerFactory, webhook_receiver: WebhookReceiver) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = connect(a, b, hooks, max_duration=1)
    end_a = disconnected(hooks, a_leg, timeout=5)
    assert end_a["cdr"]["reason"] == "max_duration"
    assert 0.9 <= end_a["cdr"]["duration_answered"] <= 2.0
    assert disconnected(hooks, b_leg)["cdr"]["reason"] == "remote_bye"


def test_decline_maps_to_declined(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = dial(a, b, hooks)
    b.api("DELETE", f"/legs/{b_leg}")  # a ringing inbound leg is rejected with 603
    assert disconnected(hooks, a_leg)["cdr"]["reason"] == "declined"
    assert disconnected(hooks, b_leg)["cdr"]["reason"] == "api_hangup"


def test_hold_and_unhold_both_ways(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = connect(a, b, hooks)

    assert a.api("POST", f"/legs/{a_leg}/hold").json()["status"] == "held"
    hooks.wait_for("leg.hold", leg_id=a_leg)
    hooks.wait_for("leg.hold", leg_id=b_leg)
    assert a.get_leg(a_leg)["held"] is True  # type: ignore[index]
    b_view = b.wait_for_leg_state(b_leg, "held")
    assert b_view is not None and b_view["held"] is True
    assert a.api("POST", f"/legs/{a_leg}/hold").status_code == 409  # already held
    assert b.api("DELETE", f"/legs/{b_leg}/hold").status_code == 409  # B did not hold

    assert a.api("DELETE", f"/legs/{a_leg}/hold").json()["status"] == "resumed"
    hooks.wait_for("leg.unhold", leg_id=a_leg)
    hooks.wait_for("leg.unhold", leg_id=b_leg)
    b.wait_for_leg_state(b_leg, "connected")

    # And the other way round.
    assert b.api("POST", f"/legs/{b_leg}/hold").status_code == 200
    a.wait_for_leg_state(a_leg, "held")
    hooks.wait_for("leg.hold", leg_id=a_leg, since=0)
    assert b.api("DELETE", f"/legs/{b_leg}/hold").status_code == 200
    a.wait_for_leg_state(a_leg, "connected")
    assert len(hooks.wait_for_count(2, "leg.unhold", leg_id=a_leg)) == 2
    # Media flows both ways again after all that.
    time.sleep(1.5)
    b.api("DELETE", f"/legs/{b_leg}")
    assert disconnected(hooks, a_leg)["quality"]["rtp_packets_received"] > 60
    assert disconnected(hooks, b_leg)["quality"]["rtp_packets_received"] > 60


def test_dtmf_both_ways(server_factory: ServerFactory, webhook_receiver: WebhookReceiver) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = connect(a, b, hooks)
    assert a.api("POST", f"/legs/{a_leg}/dtmf", {"digits": "1234567890*#ABCD"}).status_code == 200
    got = hooks.wait_for_count(16, "dtmf.received", timeout=15, leg_id=b_leg)
    assert "".join(e["digit"] for e in got) == "1234567890*#ABCD"
    assert [e["seq"] for e in got] == list(range(1, 17))
    assert b.api("POST", f"/legs/{b_leg}/dtmf", {"digits": "9#"}).status_code == 200
    back = hooks.wait_for_count(2, "dtmf.received", leg_id=a_leg)
    assert [(e["digit"], e["seq"]) for e in back] == [("9", 1), ("#", 2)]
    # Nothing arrives twice although RFC 4733 end packets are sent three times.
    hooks.assert_no_event("dtmf.received", within=0.5, leg_id=b_leg, seq=17)


def test_rtp_timeout(server_factory: ServerFactory, webhook_receiver: WebhookReceiver) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks, RTP_TIMEOUT="2")
    a_leg, b_leg = connect(a, b, hooks)
    assert a.proc is not None
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        end_b = disconnected(hooks, b_leg, timeout=6)
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    assert end_b["cdr"]["reason"] == "rtp_timeout"
    disconnected(hooks, a_leg)


def test_held_leg_does_not_time_out(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks, RTP_TIMEOUT="1")
    a_leg, b_leg = connect(a, b, hooks)
    a.api("POST", f"/legs/{a_leg}/hold")
    b.wait_for_leg_state(b_leg, "held")
    # While A holds, B sends nothing to A (recvonly answer) and A keeps running.
    time.sleep(2.5)
    assert a.get_leg(a_leg)["state"] == "held"  # type: ignore[index]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_call_over_each_transport(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, transport: str
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    uri = b.sip_uri("bob", transport=transport if transport == "tcp" else None)
    response = a.api("POST", "/legs", {"type": "sip", "uri": uri})
    assert response.status_code == 201
    a_leg = response.json()["id"]
    b_leg = hooks.wait_for("leg.ringing", instance_id=b.instance_id)["leg_id"]
    b.api("POST", f"/legs/{b_leg}/answer")
    a.wait_for_leg_state(a_leg, "connected")
    b.api("DELETE", f"/legs/{b_leg}")
    assert disconnected(hooks, a_leg)["cdr"]["reason"] == "remote_bye"


def test_early_media_then_answer(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = dial(a, b, hooks)
    assert b.api("POST", f"/legs/{b_leg}/early-media").json()["status"] == "early_media"
    hooks.wait_for("leg.early_media", leg_id=a_leg)
    hooks.wait_for("leg.early_media", leg_id=b_leg)
    a.wait_for_leg_state(a_leg, "early_media")
    assert b.api("POST", f"/legs/{b_leg}/early-media").status_code == 409
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", leg_id=a_leg)
    a.api("DELETE", f"/legs/{a_leg}")
    assert disconnected(hooks, b_leg)["cdr"]["reason"] == "remote_bye"


def test_sigterm_hangs_up_and_delivers(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, b_leg = connect(a, b, hooks)
    assert a.stop() == 0
    assert disconnected(hooks, a_leg)["cdr"]["reason"] == "api_hangup"
    assert disconnected(hooks, b_leg)["cdr"]["reason"] == "remote_bye"
