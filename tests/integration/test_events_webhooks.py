"""Webhooks end to end: signatures, the envelope, retries, routing, ordering, a dead endpoint.

Every test runs real server processes calling each other over loopback SIP and checks what a
real HTTP receiver got, byte for byte where it matters.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import WEBHOOK_SECRET
from tests.helpers.peers import free_port
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.vsi import VsiClient
from tests.helpers.webhooks import WebhookEvent, WebhookReceiver
from tests.integration.flows import connect, disconnected, pair

Originate = Callable[..., dict[str, Any]]

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")


def check_envelope(event: WebhookEvent, instance_ids: set[str]) -> None:
    """type, RFC 3339 UTC timestamp, instance_id, the event's fields flat beside them."""
    assert isinstance(event.get("type"), str) and event["type"], event
    assert RFC3339_UTC.match(event["timestamp"]), event["timestamp"]
    moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1), event["timestamp"]
    assert event["instance_id"] in instance_ids
    assert "data" not in event, f"fields must be flat, not wrapped: {event}"
    assert isinstance(event.get("leg_id"), str) and event["leg_id"], event
    # The parsed body is exactly what was sent (no second JSON document, no trailing junk).
    assert json.loads(event.request.body) == dict(event)
    content_type = event.request.headers.get("content-type", "")
    assert content_type.split(";")[0].strip() == "application/json", content_type


def expected_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def ringing_leg(server: ServerProcess, timeout: float = 10.0) -> str:
    """The id of the (one new) ringing inbound leg on ``server``, by polling its API."""
    return str(server.wait_for_legs(1, timeout, state="ringing")[0]["id"])


def wait_for_requests(hooks: WebhookReceiver, count: int, timeout: float = 10.0) -> None:
    """Until ``count`` POSTs arrived, failed ones included."""
    deadline = time.monotonic() + timeout
    while len(hooks.requests) < count:
        assert time.monotonic() < deadline, f"only {len(hooks.requests)} webhook requests"
        time.sleep(0.02)


# -- signatures and the envelope ----------------------------------------------------------


def test_bodies_are_signed_with_the_secret_and_unsigned_without(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url, WEBHOOK_SECRET=WEBHOOK_SECRET)
    b = server_factory(WEBHOOK_URL=hooks.url)  # no secret: no signature
    a_leg, b_leg = connect(a, b, hooks, headers={"X-Trace": "t-1"})
    assert a.api("POST", f"/legs/{a_leg}/mute").status_code == 200
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
    assert disconnected(hooks, a_leg)["cdr"]["reason"] == "api_hangup"
    assert disconnected(hooks, b_leg)["cdr"]["reason"] == "remote_bye"

    signed = hooks.events(instance_id=a.instance_id)
    unsigned = hooks.events(instance_id=b.instance_id)
    assert [e.type for e in signed] == [
        "leg.ringing",
        "leg.connected",
        "leg.muted",
        "leg.disconnected",
    ]
    assert [e.type for e in unsigned] == ["leg.ringing", "leg.connected", "leg.disconnected"]
    assert len(signed) + len(unsigned) == len(hooks.requests)  # nothing else, nothing failed

    for event in signed:
        check_envelope(event, {a.instance_id})
        header = event.request.headers.get("x-signature-256")
        assert header == expected_signature(event.request.body, WEBHOOK_SECRET)
        assert event.request.signature_valid(WEBHOOK_SECRET)
        assert not event.request.signature_valid(WEBHOOK_SECRET + "x")
    for event in unsigned:
        check_envelope(event, {b.instance_id})
        assert "x-signature-256" not in event.request.headers, event.request.headers

    # The event's own fields sit beside the envelope.
    by_type = {e.type: e for e in signed}
    assert by_type["leg.connected"]["leg_type"] == "sip_outbound"
    assert by_type["leg.ringing"]["uri"] == b.sip_uri("bob")
    cdr = by_type["leg.disconnected"]["cdr"]
    assert set(cdr) >= {"reason", "duration_total", "duration_answered"}
    inbound_ringing = unsigned[0]
    assert inbound_ringing["leg_id"] == b_leg
    assert inbound_ringing["sip_headers"] == {"X-Trace": "t-1"}
    assert {"from", "to"} <= set(inbound_ringing)


# -- retries ------------------------------------------------------------------------------


def test_failed_attempt_is_retried_with_the_same_bytes_and_holds_back_the_leg(
    hooked_server: ServerProcess,
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    originate: Originate,
) -> None:
    hooks = webhook_receiver
    a = hooked_server
    b = server_factory()  # no webhook: only A's leg reports
    hooks.fail_first(1)
    a_leg = originate(a, b.sip_uri("bob"))["id"]
    # While the first attempt's backoff runs, more events of the same leg happen.
    assert b.api("POST", f"/legs/{ringing_leg(b)}/answer").status_code == 200
    a.wait_for_leg_state(a_leg, "connected")
    assert a.api("POST", f"/legs/{a_leg}/mute").status_code == 200
    hooks.wait_for("leg.muted", leg_id=a_leg, timeout=8)

    attempts = hooks.events(leg_id=a_leg, delivered_only=False)
    assert [(e.type, e.request.status) for e in attempts] == [
        ("leg.ringing", 500),
        ("leg.ringing", 200),
        ("leg.connected", 200),
        ("leg.muted", 200),
    ]
    first, second = attempts[0].request, attempts[1].request
    assert second.body == first.body  # the same event, byte for byte
    assert second.headers["x-signature-256"] == first.headers["x-signature-256"]
    assert second.signature_valid(WEBHOOK_SECRET)
    backoff = second.monotonic - first.monotonic
    assert 0.9 <= backoff <= 3.0, f"retry after {backoff:.2f}s"
    time.sleep(0.3)  # no third attempt
    assert len(hooks.events("leg.ringing", leg_id=a_leg, delivered_only=False)) == 2


def test_three_attempts_with_growing_backoff_then_the_next_event(
    hooked_server: ServerProcess,
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    originate: Originate,
) -> None:
    hooks = webhook_receiver
    a = hooked_server
    b = server_factory()
    hooks.fail_first(3, status=503)
    a_leg = originate(a, b.sip_uri("bob"))["id"]
    wait_for_requests(hooks, 1)  # leg.ringing, first attempt
    assert a.api("POST", f"/legs/{a_leg}/mute").status_code == 200
    muted = hooks.wait_for("leg.muted", leg_id=a_leg, timeout=10)

    attempts = [r for r in hooks.requests if r.index < muted.request.index]
    assert [r.status for r in attempts] == [503, 503, 503]
    assert len({r.body for r in attempts}) == 1
    assert json.loads(attempts[0].body)["type"] == "leg.ringing"
    first_gap = attempts[1].monotonic - attempts[0].monotonic
    second_gap = attempts[2].monotonic - attempts[1].monotonic
    assert 0.9 <= first_gap <= 2.0, first_gap
    assert 1.8 <= second_gap <= 4.0, second_gap
    assert second_gap > 1.5 * first_gap  # exponential, not constant
    # Given up after three attempts: never delivered, never tried a fourth time.
    time.sleep(0.5)
    assert hooks.events("leg.ringing", leg_id=a_leg) == []
    assert len(hooks.requests) == 4


# -- routing ------------------------------------------------------------------------------


def test_leg_webhook_gets_all_of_its_legs_events_and_only_those(
    hooked_server: ServerProcess,
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    originate: Originate,
) -> None:
    hooks = webhook_receiver
    a = hooked_server  # global webhook: hooks.url (path /hooks), WEBHOOK_SECRET
    b = server_factory(WEBHOOK_URL=hooks.url_for("/b"))
    routed = originate(
        a,
        b.sip_uri("bob"),
        webhook_url=hooks.url_for("/leg"),
        webhook_secret="leg-secret",
        app_id="tenant-x",
    )["id"]
    assert a.get_leg(routed)["app_id"] == "tenant-x"  # type: ignore[index]
    plain = originate(a, b.sip_uri("carol"))["id"]
    for leg in b.wait_for_legs(2, state="ringing"):
        assert b.api("POST", f"/legs/{leg['id']}/answer").status_code == 200
    a.wait_for_leg_state(routed, "connected")
    a.wait_for_leg_state(plain, "connected")
    for leg_id in (routed, plain):
        assert a.api("POST", f"/legs/{leg_id}/mute").status_code == 200
        assert a.api("DELETE", f"/legs/{leg_id}").status_code == 200
    hooks.wait_for("leg.disconnected", leg_id=routed)
    hooks.wait_for("leg.disconnected", leg_id=plain)
    hooks.wait_for_count(2, "leg.disconnected", instance_id=b.instance_id)

    lifecycle = ["leg.ringing", "leg.connected", "leg.muted", "leg.disconnected"]
    routed_events = hooks.events(leg_id=routed)
    assert [e.type for e in routed_events] == lifecycle
    for event in routed_events:
        assert event.request.path == "/leg"
        assert event.request.signature_valid("leg-secret")
        assert not event.request.signature_valid(WEBHOOK_SECRET)
        assert event["app_id"] == "tenant-x"
    plain_events = hooks.events(leg_id=plain)
    assert [e.type for e in plain_events] == lifecycle
    for event in plain_events:
        assert event.request.path == "/hooks"
        assert event.request.signature_valid(WEBHOOK_SECRET)
        assert "app_id" not in event
    # Nothing of A reached B's hook, nothing of B reached A's, nothing else at /leg.
    for event in hooks.events():
        expected = {"/leg"} if event["leg_id"] == routed else {"/hooks", "/b"}
        assert event.request.path in expected, (event.request.path, dict(event))
        assert (event.request.path == "/b") == (event["instance_id"] == b.instance_id)


def test_inbound_invite_headers_set_the_legs_webhook(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, originate: Originate
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks, WEBHOOK_SECRET=WEBHOOK_SECRET)
    second = WebhookReceiver()
    try:
        headers = {
            "X-Webhook-URL": second.url,
            "X-Webhook-Secret": "inbound-secret",
            "X-App-ID": "tenant-in",
        }
        a_leg = originate(a, b.sip_uri("bob"), headers=headers)["id"]
        ringing = second.wait_for("leg.ringing")
        b_leg = ringing["leg_id"]
        assert ringing["instance_id"] == b.instance_id
        assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
        second.wait_for("leg.connected", leg_id=b_leg)
        hooks.wait_for("leg.connected", leg_id=a_leg)
        assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
        end = second.wait_for("leg.disconnected", leg_id=b_leg)
        assert end["cdr"]["reason"] == "remote_bye"
        disconnected(hooks, a_leg)

        events = second.events()
        assert [e.type for e in events] == ["leg.ringing", "leg.connected", "leg.disconnected"]
        for event in events:
            assert event["leg_id"] == b_leg
            assert event.request.path == "/hooks"
            assert event.request.signature_valid("inbound-secret")
            assert not event.request.signature_valid(WEBHOOK_SECRET)
            assert event["app_id"] == "tenant-in"
        # B's leg reported nothing to the global webhook; A's leg did, as usual.
        assert hooks.events(instance_id=b.instance_id) == []
        assert [e.type for e in hooks.events(leg_id=a_leg)] == [
            "leg.ringing",
            "leg.connected",
            "leg.disconnected",
        ]
    finally:
        second.close()


# -- ordering -----------------------------------------------------------------------------


def test_events_of_one_leg_arrive_in_order_through_a_slow_receiver(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, originate: Originate
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    delay = 0.25
    hooks.set_delay(delay)
    a_leg = originate(a, b.sip_uri("bob"))["id"]
    assert b.api("POST", f"/legs/{ringing_leg(b)}/answer").status_code == 200
    a.wait_for_leg_state(a_leg, "connected")
    # All of this happens while the first events are still being delivered.
    assert a.api("POST", f"/legs/{a_leg}/mute").status_code == 200
    assert a.api("DELETE", f"/legs/{a_leg}/mute").status_code == 200
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
    disconnected(hooks, a_leg, timeout=10)

    events = hooks.events(leg_id=a_leg)
    assert [e.type for e in events] == [
        "leg.ringing",
        "leg.connected",
        "leg.muted",
        "leg.unmuted",
        "leg.disconnected",
    ]
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    # One at a time per leg: each POST starts only after the previous one was answered.
    arrivals = [e.request.monotonic for e in events]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) >= delay * 0.9, gaps


# -- a dead endpoint ----------------------------------------------------------------------


def test_dead_webhook_does_not_slow_the_api_or_block_calls(
    server_factory: ServerFactory,
    vsi_client_factory: Callable[..., VsiClient],
    originate: Originate,
) -> None:
    closed_port = free_port("tcp")  # nothing listens there: connection refused
    hanging = WebhookReceiver()  # accepts, then does not answer for longer than any timeout
    hanging.set_delay(30)
    try:
        a = server_factory(WEBHOOK_URL=f"http://127.0.0.1:{closed_port}/hooks", WEBHOOK_SECRET="s")
        b = server_factory(WEBHOOK_URL=hanging.url)
        a_events = vsi_client_factory(a)
        assert a_events.recv() == {"type": "connected"}
        timings: list[tuple[str, float]] = []

        def timed(server: ServerProcess, method: str, path: str) -> None:
            started = time.perf_counter()
            response = server.api(method, path)
            timings.append((f"{method} {path}", time.perf_counter() - started))
            assert response.status_code == 200, response.text

        for call in range(3):
            started = time.perf_counter()
            a_leg = originate(a, b.sip_uri(f"user{call}"))["id"]
            timings.append(("POST /legs", time.perf_counter() - started))
            b_leg = ringing_leg(b)
            timed(b, "POST", f"/legs/{b_leg}/answer")
            a_events.wait_for("leg.connected", leg_id=a_leg, timeout=5)
            timed(a, "POST", f"/legs/{a_leg}/mute")
            timed(a, "GET", "/legs")
            timed(b, "GET", f"/legs/{b_leg}")
            timed(a, "DELETE", f"/legs/{a_leg}")
            end = a_events.wait_for("leg.disconnected", leg_id=a_leg, timeout=5)
            assert end["cdr"]["reason"] == "api_hangup"
            b.wait_for_leg_state(b_leg, "hung_up", timeout=5)

        slowest = max(timings, key=lambda item: item[1])
        assert slowest[1] < 0.5, f"slowest API call: {slowest}"
        assert hanging.requests, "B never even tried its webhook"
        assert a.api("GET", "/legs").json() == [] and b.api("GET", "/legs").json() == []
    finally:
        hanging.close()


def test_a_failing_receiver_trips_the_breaker_then_gets_every_event_once_back(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    """A receiver answering 500: after a few attempts the destination pauses (the metrics say
    so) while the API stays quick; once it answers again every event arrives, each with its
    own event_id, sent as X-Event-Id, the same on every attempt of one event."""
    hooks = webhook_receiver
    hooks.fail_first(10_000)
    server = server_factory(WEBHOOK_URL=hooks.url)
    started = time.perf_counter()
    for n in range(12):
        assert server.api("POST", "/rooms", json={"id": f"r{n}"}).status_code == 201
    assert time.perf_counter() - started < 2.0
    destination = f'destination="http://127.0.0.1:{hooks.port}"'
    _wait_for_metric(server, f"callboard_webhook_circuit_open{{{destination}}} 1.0")
    attempts = len(hooks.requests)
    time.sleep(2.0)
    assert len(hooks.requests) - attempts <= 3  # paused: a probe, not a retry storm
    hooks.fail_first(0)
    hooks.wait_for_count(12, "room.created", timeout=30)
    delivered = hooks.events("room.created")
    ids = [event["event_id"] for event in delivered]
    assert len(set(ids)) == 12
    for event in delivered:
        assert event.request.headers["x-event-id"] == event["event_id"]
    for request in hooks.requests:  # failed attempts carried the id of their event
        body = json.loads(request.body)
        assert request.headers["x-event-id"] == body["event_id"]
    _wait_for_metric(
        server, f'callboard_webhook_events_total{{{destination},outcome="delivered"}} 12.0'
    )
    _wait_for_metric(server, f"callboard_webhook_circuit_open{{{destination}}} 0.0")


def _wait_for_metric(server: ServerProcess, line: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in server.api("GET", "/metrics").text:
        assert time.monotonic() < deadline, f"/metrics never showed {line}"
        time.sleep(0.1)
