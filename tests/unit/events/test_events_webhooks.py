from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from callboard.events.base import LegOrRoomEvent
from callboard.events.bus import Envelope, EventBus, event_json
from callboard.events.types import LegConnected, LegHold, RoomCreated
from callboard.events.webhooks import WebhookSink, WebhookTarget, redact_url, sign
from tests.unit.events.webhook_receiver import HttpReceiver, Received


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe(LegOrRoomEvent):
    """A stand-in event of no particular type: `n` tells the deliveries apart."""

    type = "e"
    n: object = None


CONNECTED = LegConnected(leg_type="sip_inbound")


def fixed(target: WebhookTarget | None) -> Callable[[Envelope], WebhookTarget | None]:
    return lambda _event: target


@pytest.fixture
async def sinks() -> AsyncIterator[list[WebhookSink]]:
    """Sinks a test created; closed at the end even when the test fails."""
    made: list[WebhookSink] = []
    yield made
    for sink in made:
        await sink.close(drain_timeout=0)


async def make_sink(
    sinks: list[WebhookSink], target: WebhookTarget | None, *, start: bool = True, **kw: Any
) -> tuple[EventBus, WebhookSink]:
    sink = WebhookSink(fixed(target), **kw)
    sinks.append(sink)
    if start:
        await sink.start()
    bus = EventBus("inst")
    bus.add_sink(sink)
    return bus, sink


def fail_first(n: int, status: int | None = 500) -> Callable[[Received], int | None]:
    return lambda req: status if req.index < n else 200


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def test_sign_matches_a_known_hmac_sha256_vector() -> None:
    body = b"The quick brown fox jumps over the lazy dog"
    assert sign(body, "key") == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


def test_target_repr_hides_the_secret() -> None:
    assert "hunter2" not in repr(WebhookTarget("http://x/", "hunter2"))


def test_redact_url_strips_userinfo_and_query() -> None:
    shown = redact_url("https://user:pw@example.com:8443/a/b?token=abc")
    assert shown == "https://example.com:8443/a/b?..."


async def test_signed_delivery_of_exact_bytes(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url, "s3cret"))
    event = bus.publish(Probe(n="café ñ"), leg_id="L1")
    await receiver.wait_for(1)
    await wait_until(lambda: sink.stats.delivered == 1)

    req = receiver.requests[0]
    expected = "sha256=" + hmac.new(b"s3cret", req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["x-signature-256"], expected)
    assert req.body == event_json(event).encode("utf-8")
    assert b", " not in req.body and b'": ' not in req.body  # compact separators
    assert json.loads(req.body) == event
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == "callboard"
    assert req.path == "/hook"


async def test_no_signature_without_secret(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    bus, _sink = await make_sink(sinks, WebhookTarget(receiver.url))
    bus.publish(RoomCreated(), room_id="R")
    await receiver.wait_for(1)
    assert "x-signature-256" not in receiver.requests[0].headers


async def test_retry_after_500_succeeds_on_attempt_two_with_backoff(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    receiver.decide = fail_first(1)
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url, "k"), backoff=0.3)
    bus.publish(CONNECTED, leg_id="L")
    await wait_until(lambda: sink.stats.delivered == 1)

    first, second = receiver.requests
    # At least the backoff, and clearly short of the doubled delay a later retry would get.
    assert 0.3 <= second.at - first.at < 0.3 * 1.1 + 0.2
    # Serialised and signed once: the retry carries identical bytes and signature.
    assert second.body == first.body
    assert second.headers["x-signature-256"] == first.headers["x-signature-256"]
    assert (sink.stats.delivered, sink.stats.retried, sink.stats.failed) == (1, 1, 0)


async def test_gives_up_after_three_attempts_and_logs_without_secret(
    receiver: HttpReceiver, sinks: list[WebhookSink], caplog: pytest.LogCaptureFixture
) -> None:
    receiver.decide = lambda _req: 500
    url = receiver.url + "?token=tok123"
    bus, sink = await make_sink(sinks, WebhookTarget(url, "topsecret"), backoff=0.1)
    with caplog.at_level(logging.INFO, logger="callboard.events.webhooks"):
        bus.publish(LegHold(leg_type="sip_inbound"), leg_id="L")
        await wait_until(lambda: sink.stats.failed == 1)
        await asyncio.sleep(0.35)  # long enough for a (wrong) fourth attempt to show up

    assert len(receiver.requests) == 3
    t = [r.at for r in receiver.requests]
    assert t[1] - t[0] >= 0.1
    assert t[2] - t[1] >= 0.2  # exponential: backoff, then 2 * backoff
    assert (sink.stats.delivered, sink.stats.retried, sink.stats.failed) == (0, 2, 1)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert f"127.0.0.1:{receiver.port}/hook" in text
    assert "HTTP 500" in text
    assert "topsecret" not in caplog.text
    assert "tok123" not in caplog.text


async def test_timeout_counts_as_a_failed_attempt(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    receiver.decide = fail_first(1, status=None)  # the first request hangs
    bus, sink = await make_sink(
        sinks, WebhookTarget(receiver.url), timeout=0.3, backoff=0.05, attempts=2
    )
    started = time.monotonic()
    bus.publish(CONNECTED, leg_id="L")
    await wait_until(lambda: sink.stats.delivered == 1)

    assert len(receiver.requests) == 2
    assert receiver.requests[1].at - started >= 0.3 + 0.05
    assert sink.stats.retried == 1


async def test_connection_refused_fails_after_all_attempts(sinks: list[WebhookSink]) -> None:
    rx = HttpReceiver()
    await rx.start()
    dead_url = rx.url
    await rx.stop()  # nothing listens on that port any more
    bus, sink = await make_sink(sinks, WebhookTarget(dead_url), backoff=0.01, attempts=3)
    bus.publish(CONNECTED, leg_id="L")
    await wait_until(lambda: sink.stats.failed == 1)
    assert (sink.stats.retried, sink.stats.delivered) == (2, 0)


async def test_per_key_order_holds_while_first_event_retries(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    failed_once: set[str] = set()

    def decide(req: Received) -> int:
        body = req.json()
        if body["n"] == "A1" and "A1" not in failed_once:
            failed_once.add("A1")
            return 500
        return 200

    receiver.decide = decide
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url), backoff=0.3)
    bus.publish(Probe(n="A1"), leg_id="A")
    bus.publish(Probe(n="A2"), leg_id="A")
    bus.publish(Probe(n="R1"), room_id="R")
    bus.publish(Probe(n="A3"), leg_id="A")
    bus.publish(Probe(n="R2"), room_id="R")
    bus.publish(Probe(n="U1"))  # neither leg nor room: ordered by URL
    bus.publish(Probe(n="U2"))
    await wait_until(lambda: sink.stats.delivered == 7)

    seen = [r.json()["n"] for r in receiver.requests]
    assert [n for n in seen if n.startswith("A")] == ["A1", "A1", "A2", "A3"]
    assert [n for n in seen if n.startswith("R")] == ["R1", "R2"]
    assert [n for n in seen if n.startswith("U")] == ["U1", "U2"]
    # The other keys did not wait for A's backoff.
    retry_at = seen.index("A1", 1)
    assert {"R1", "R2", "U1", "U2"} <= set(seen[:retry_at])
    assert sink.active_keys == 0  # idle keys are forgotten


async def test_one_request_in_flight_per_key(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    receiver.gate = asyncio.Event()
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url), concurrency=8)
    for n in ("A1", "A2", "A3"):
        bus.publish(Probe(n=n), leg_id="A")
    bus.publish(Probe(n="B1"), leg_id="B")
    await receiver.wait_for(2)
    await asyncio.sleep(0.1)  # time for a (wrong) second request of key A to arrive
    assert sorted(r.json()["n"] for r in receiver.requests) == ["A1", "B1"]

    receiver.gate.set()
    await wait_until(lambda: sink.stats.delivered == 4)
    assert [r.json()["n"] for r in receiver.requests if r.json()["n"][0] == "A"] == [
        "A1",
        "A2",
        "A3",
    ]


async def test_concurrency_bounds_requests_in_flight(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    receiver.gate = asyncio.Event()
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url), concurrency=3)
    for i in range(10):
        bus.publish(Probe(), leg_id=f"L{i}")
    await receiver.wait_for(3)
    await asyncio.sleep(0.1)
    assert len(receiver.requests) == 3
    receiver.gate.set()
    await wait_until(lambda: sink.stats.delivered == 10)
    assert receiver.max_in_flight == 3


async def test_queue_full_drops_and_counts(
    receiver: HttpReceiver, sinks: list[WebhookSink], caplog: pytest.LogCaptureFixture
) -> None:
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url), start=False, max_queue=3)
    with caplog.at_level(logging.WARNING, logger="callboard.events.webhooks"):
        for i in range(6):
            bus.publish(Probe(n=i), leg_id=f"L{i % 2}")
    assert sink.stats.dropped == 3
    assert sink.queued == 3
    assert len(caplog.records) == 1  # rate limited: one warning for the burst

    await sink.start()
    await wait_until(lambda: sink.stats.delivered == 3)
    assert sorted(b["n"] for b in receiver.bodies()) == [0, 1, 2]


async def test_close_drains_the_queue(receiver: HttpReceiver, sinks: list[WebhookSink]) -> None:
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url), concurrency=2)
    for i in range(30):
        bus.publish(Probe(n=i), leg_id=f"L{i % 3}")
    await sink.close(drain_timeout=5)

    assert sink.stats.delivered == 30
    assert sorted(b["n"] for b in receiver.bodies()) == list(range(30))
    assert (sink.queued, sink.active_keys, sink.stats.dropped) == (0, 0, 0)
    bus.publish(Probe(), leg_id="late")  # after close: dropped, not raised
    assert sink.stats.dropped == 1


async def test_close_gives_up_after_drain_timeout(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    receiver.decide = lambda _req: None  # every request hangs
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url), timeout=30)
    bus.publish(Probe(), leg_id="A")
    bus.publish(Probe(), leg_id="B")
    await receiver.wait_for(2)
    started = time.monotonic()
    await sink.close(drain_timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert sink.stats.dropped == 2
    assert sink.stats.delivered == 0


async def test_unrouted_and_raising_resolver_send_nothing(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    target = WebhookTarget(receiver.url)

    def resolve(event: Envelope) -> WebhookTarget | None:
        if event["n"] == "boom":
            raise KeyError("no such leg")
        return target if event["n"] == "routed" else None

    sink = WebhookSink(resolve)
    sinks.append(sink)
    await sink.start()
    bus = EventBus("i")
    bus.add_sink(sink)
    bus.publish(Probe(n="unrouted"))
    bus.publish(Probe(n="boom"))
    bus.publish(Probe(n="routed"))
    await sink.close()
    assert [b["n"] for b in receiver.bodies()] == ["routed"]
    assert sink.stats.delivered == 1


async def test_every_delivery_carries_its_event_id(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    receiver.decide = fail_first(1)
    bus, sink = await make_sink(sinks, WebhookTarget(receiver.url), backoff=0.01)
    event = bus.publish(CONNECTED, leg_id="L1")
    await wait_until(lambda: sink.stats.delivered == 1)
    ids = [r.headers["x-event-id"] for r in receiver.requests]
    assert ids == [event["event_id"], event["event_id"]]  # the retry repeats it
    assert receiver.requests[1].json()["event_id"] == event["event_id"]


async def test_a_failing_destination_trips_its_breaker_and_recovers(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    """Twenty legs' events to a receiver answering 500: after three failures in a row the
    destination pauses (no attempts for the cool-down), then one probe; once the receiver
    is back every event is delivered, in order per leg."""
    receiver.decide = lambda _req: 500
    bus, sink = await make_sink(
        sinks,
        WebhookTarget(receiver.url),
        backoff=0.01,
        attempts=50,
        concurrency=2,
        breaker_threshold=3,
        breaker_cooldown=0.5,
    )
    for n in range(40):
        bus.publish(Probe(n=n), leg_id=f"L{n % 20}")
    await wait_until(lambda: len(receiver.requests) >= 3)
    await asyncio.sleep(0.3)
    paused = len(receiver.requests)
    assert paused <= 3 + 2  # the threshold, and attempts already in flight
    destination = sink.destinations[f"http://127.0.0.1:{receiver.port}"]
    assert destination.tripped and destination.stats.retried >= 3
    receiver.decide = lambda _req: 200
    await wait_until(lambda: sink.stats.delivered == 40, timeout=10)
    assert not destination.tripped and destination.stats.delivered == 40
    by_leg: dict[str, list[int]] = {}
    for body in receiver.bodies():
        if "n" in body:
            by_leg.setdefault(body["leg_id"], []).append(body["n"])
    assert all(ns == sorted(ns) and len(set(ns)) == 2 for ns in by_leg.values())


async def test_a_tripped_destination_cannot_fill_the_whole_queue(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    receiver.decide = lambda _req: 500
    bus, sink = await make_sink(
        sinks, WebhookTarget(receiver.url), backoff=0.01, attempts=50, max_queue=20,
        breaker_threshold=2, breaker_cooldown=30,
    )  # fmt: skip
    bus.publish(Probe(n=0), leg_id="first")
    await wait_until(lambda: sink.destinations[f"http://127.0.0.1:{receiver.port}"].tripped)
    for n in range(30):
        bus.publish(Probe(n=n), leg_id=f"L{n}")
    destination = sink.destinations[f"http://127.0.0.1:{receiver.port}"]
    assert destination.outstanding == 10  # half of max_queue
    assert destination.stats.dropped == 21 and sink.stats.dropped == 21


async def test_probes_of_a_tripped_destination_do_not_use_up_an_events_attempts(
    receiver: HttpReceiver, sinks: list[WebhookSink]
) -> None:
    """Three attempts an event, but the receiver is down for six requests: the failures
    after the breaker tripped are the destination's, so no event is given up."""
    receiver.decide = fail_first(6)
    bus, sink = await make_sink(
        sinks, WebhookTarget(receiver.url), backoff=0.01, attempts=3, concurrency=1,
        breaker_threshold=2, breaker_cooldown=0.05,
    )  # fmt: skip
    for n in range(5):
        bus.publish(Probe(n=n), leg_id="L")
    await wait_until(lambda: sink.stats.delivered == 5, timeout=15)
    assert sink.stats.failed == 0 and len(receiver.requests) == 6 + 5
    assert [b["n"] for b in receiver.bodies()][-5:] == [0, 1, 2, 3, 4]  # in order, once
