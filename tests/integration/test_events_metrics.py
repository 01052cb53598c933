"""GET /metrics end to end: the Prometheus text, and how the values follow real calls."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import disconnected, pair

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

FAMILIES = {
    "callboard_active_legs": "gauge",
    "callboard_active_rooms": "gauge",
    "callboard_legs_total": "counter",
    "callboard_disconnect_reasons_total": "counter",
    "callboard_call_duration_seconds": "histogram",
    "callboard_call_total_duration_seconds": "histogram",
}


def scrape(server: ServerProcess) -> Samples:
    response = server.api("GET", "/metrics")
    assert response.status_code == 200, response.text
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def buckets(samples: Samples, name: str, leg_type: str) -> dict[float, float]:
    return {
        float(dict(labels)["le"]): v
        for (sample, labels), v in samples.items()
        if sample == f"{name}_bucket" and dict(labels).get("type") == leg_type
    }


def dial(a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver) -> tuple[str, str]:
    """A calls B (ringing); unlike flows.dial, safe to repeat with one receiver."""
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")})
    assert response.status_code == 201, response.text
    ringing = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)
    return str(response.json()["id"]), str(ringing["leg_id"])


def connect(a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver) -> tuple[str, str]:
    a_leg, b_leg = dial(a, b, hooks)
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", leg_id=a_leg)
    hooks.wait_for("leg.connected", leg_id=b_leg)
    return a_leg, b_leg


def test_metrics_text_has_every_family_and_process_metrics(server: ServerProcess) -> None:
    response = server.api("GET", "/metrics")
    assert response.status_code == 200
    content_type = response.headers["content-type"]
    assert content_type.startswith("text/plain; version="), content_type
    text = response.text
    for name, kind in FAMILIES.items():
        # Declared up front: present (HELP and TYPE) before any call, so dashboards work.
        assert f"# TYPE {name} {kind}" in text, name
        assert f"# HELP {name} " in text, name
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds"):
        assert name in families, sorted(families)
        assert families[name].samples[0].value > 0
    assert "process_start_time_seconds" in families
    samples = scrape(server)
    assert value(samples, "callboard_active_legs") == 0
    assert value(samples, "callboard_active_rooms") == 0
    # Not under /v1, and not an API JSON document.
    assert server.api("GET", "/v1/metrics").status_code == 404


def test_metrics_follow_an_answered_and_a_declined_call(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    for server in (a, b):
        assert value(scrape(server), "callboard_active_legs") == 0

    # An answered call, about a second long, hung up by A.
    a_leg, b_leg = dial(a, b, hooks)
    ringing_a, ringing_b = scrape(a), scrape(b)
    assert value(ringing_a, "callboard_active_legs") == 1
    assert value(ringing_b, "callboard_active_legs") == 1
    assert value(ringing_a, "callboard_legs_total", type="sip_outbound", state="ringing") == 1
    assert value(ringing_b, "callboard_legs_total", type="sip_inbound", state="ringing") == 1
    assert value(ringing_a, "callboard_legs_total", type="sip_outbound", state="connected") == 0
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", leg_id=a_leg)
    hooks.wait_for("leg.connected", leg_id=b_leg)
    during_a, during_b = scrape(a), scrape(b)
    assert value(during_a, "callboard_active_legs") == 1
    assert value(during_b, "callboard_active_legs") == 1
    assert value(during_a, "callboard_legs_total", type="sip_outbound", state="connected") == 1
    assert value(during_b, "callboard_legs_total", type="sip_inbound", state="connected") == 1
    assert value(during_a, "callboard_call_duration_seconds_count", type="sip_outbound") == 0
    time.sleep(1.1)
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
    cdr_a = disconnected(hooks, a_leg)["cdr"]
    cdr_b = disconnected(hooks, b_leg)["cdr"]
    b.wait_for_leg_state(b_leg, "hung_up")

    after_a, after_b = scrape(a), scrape(b)
    assert value(after_a, "callboard_active_legs") == 0
    assert value(after_b, "callboard_active_legs") == 0
    reasons = "callboard_disconnect_reasons_total"
    assert value(after_a, reasons, type="sip_outbound", reason="api_hangup") == 1
    assert value(after_b, reasons, type="sip_inbound", reason="remote_bye") == 1
    assert value(after_a, reasons, type="sip_inbound", reason="api_hangup") == 0
    assert value(after_a, "callboard_legs_total", type="sip_outbound", state="hung_up") == 1
    for samples, leg_type, cdr in (
        (after_a, "sip_outbound", cdr_a),
        (after_b, "sip_inbound", cdr_b),
    ):
        answered = "callboard_call_duration_seconds"
        total = "callboard_call_total_duration_seconds"
        assert value(samples, f"{answered}_count", type=leg_type) == 1
        assert (
            abs(value(samples, f"{answered}_sum", type=leg_type) - cdr["duration_answered"]) < 0.01
        )
        assert value(samples, f"{total}_count", type=leg_type) == 1
        assert abs(value(samples, f"{total}_sum", type=leg_type) - cdr["duration_total"]) < 0.01
        assert cdr["duration_answered"] >= 1.0
        for le, count in buckets(samples, answered, leg_type).items():
            assert count == (1 if cdr["duration_answered"] <= le else 0), (le, count, cdr)

    # A call B declines: counted by reason, in the total-duration histogram only.
    a_leg2, b_leg2 = dial(a, b, hooks)
    assert value(scrape(a), "callboard_active_legs") == 1
    assert b.api("DELETE", f"/legs/{b_leg2}").status_code == 200
    assert disconnected(hooks, a_leg2)["cdr"]["reason"] == "declined"
    assert disconnected(hooks, b_leg2)["cdr"]["reason"] == "api_hangup"

    final_a, final_b = scrape(a), scrape(b)
    assert value(final_a, "callboard_active_legs") == 0
    assert value(final_b, "callboard_active_legs") == 0
    assert value(final_a, reasons, type="sip_outbound", reason="declined") == 1
    assert value(final_a, reasons, type="sip_outbound", reason="api_hangup") == 1
    assert value(final_b, reasons, type="sip_inbound", reason="api_hangup") == 1
    assert value(final_b, reasons, type="sip_inbound", reason="remote_bye") == 1
    for samples, leg_type in ((final_a, "sip_outbound"), (final_b, "sip_inbound")):
        assert value(samples, "callboard_legs_total", type=leg_type, state="ringing") == 2
        assert value(samples, "callboard_legs_total", type=leg_type, state="connected") == 1
        assert value(samples, "callboard_legs_total", type=leg_type, state="hung_up") == 2
        assert value(samples, "callboard_call_duration_seconds_count", type=leg_type) == 1
        assert value(samples, "callboard_call_total_duration_seconds_count", type=leg_type) == 2


def test_active_legs_counts_concurrent_calls(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    legs = [connect(a, b, hooks) for _ in range(3)]
    assert value(scrape(a), "callboard_active_legs") == 3
    assert value(scrape(b), "callboard_active_legs") == 3
    a.api("DELETE", f"/legs/{legs[0][0]}")
    disconnected(hooks, legs[0][0])
    disconnected(hooks, legs[0][1])
    assert value(scrape(a), "callboard_active_legs") == 2
    assert value(scrape(b), "callboard_active_legs") == 2
    for a_leg, b_leg in legs[1:]:
        b.api("DELETE", f"/legs/{b_leg}")
        disconnected(hooks, a_leg)
        disconnected(hooks, b_leg)
    samples_a, samples_b = scrape(a), scrape(b)
    assert value(samples_a, "callboard_active_legs") == 0
    assert value(samples_b, "callboard_active_legs") == 0
    reasons = "callboard_disconnect_reasons_total"
    assert value(samples_a, reasons, type="sip_outbound", reason="remote_bye") == 2
    assert value(samples_b, reasons, type="sip_inbound", reason="api_hangup") == 2
