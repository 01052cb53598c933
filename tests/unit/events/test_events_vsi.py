from __future__ import annotations

import asyncio
import json

import pytest

from callboard.events.bus import EventBus, event_json
from callboard.events.types import LegConnected, LegMuted
from callboard.events.vsi import MAX_CONTROLS, VsiClosed, VsiHub, VsiSubscriber


async def take(sub: VsiSubscriber, n: int) -> list[dict[str, object]]:
    """The next n messages; a drop notice's timestamp is checked and left out."""
    async with asyncio.timeout(2):
        messages = [json.loads(await sub.next_message()) for _ in range(n)]
    for message in messages:
        if message["type"] == "events_dropped":
            assert str(message.pop("timestamp")).endswith("Z")
    return messages


async def test_regex_filter_uses_search_semantics() -> None:
    sub = VsiSubscriber(app_id_pattern="^sales")
    suffix = VsiSubscriber(app_id_pattern="eu")
    for s in (sub, suffix):
        s.offer({"type": "a", "app_id": "sales-eu"})
        s.offer({"type": "b", "app_id": "support-us"})
        s.offer({"type": "c"})  # no app_id: never matches a pattern
        s.offer({"type": "d", "app_id": "sales-us"})
    assert [m["type"] for m in await take(sub, 2)] == ["a", "d"]
    assert sub.pending == 0
    assert [m["type"] for m in await take(suffix, 1)] == ["a"]
    assert suffix.pending == 0


async def test_no_pattern_forwards_everything() -> None:
    for pattern in (None, ""):
        sub = VsiSubscriber(app_id_pattern=pattern)
        sub.offer({"type": "a"})
        sub.offer({"type": "b", "app_id": "x"})
        assert [m["type"] for m in await take(sub, 2)] == ["a", "b"]


def test_invalid_regex_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^invalid app_id regex: "):
        VsiSubscriber(app_id_pattern="(unclosed")


async def test_overflow_sends_exact_dropped_count_where_the_gap_is() -> None:
    sub = VsiSubscriber(max_buffer=3)
    for i in range(8):
        sub.offer({"type": "e", "n": i})
    assert sub.pending == 4  # three events and the notice
    assert await take(sub, 4) == [
        {"type": "e", "n": 0},
        {"type": "e", "n": 1},
        {"type": "e", "n": 2},
        {"type": "events_dropped", "count": 5},
    ]
    # No drops since: no notice.
    sub.offer({"type": "e", "n": 8})
    assert await take(sub, 1) == [{"type": "e", "n": 8}]
    # A second overflow reports only the new drops.
    for i in range(9, 13):
        sub.offer({"type": "e", "n": i})
    assert await take(sub, 4) == [
        {"type": "e", "n": 9},
        {"type": "e", "n": 10},
        {"type": "e", "n": 11},
        {"type": "events_dropped", "count": 1},
    ]
    sub.offer({"type": "e", "n": 13})
    assert await take(sub, 1) == [{"type": "e", "n": 13}]
    assert sub.dropped_total == 6


async def test_next_message_waits_then_gets_the_event_text() -> None:
    sub = VsiSubscriber()
    waiter = asyncio.create_task(sub.next_message())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    event = EventBus("i").publish(LegMuted(), leg_id="L")
    sub.offer(event)
    text = await asyncio.wait_for(waiter, 1)
    assert text == event_json(event)  # the same bytes a webhook body would carry


async def test_close_wakes_the_waiter() -> None:
    sub = VsiSubscriber()
    waiter = asyncio.create_task(sub.next_message())
    await asyncio.sleep(0.01)
    sub.close()
    with pytest.raises(VsiClosed):
        await asyncio.wait_for(waiter, 1)
    sub.offer({"type": "late"})  # ignored after close
    with pytest.raises(VsiClosed):
        await sub.next_message()


async def test_cancelled_waiter_leaves_subscriber_usable() -> None:
    sub = VsiSubscriber()
    waiter = asyncio.create_task(sub.next_message())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    sub.offer({"type": "x"})
    assert await take(sub, 1) == [{"type": "x"}]


async def test_hub_is_a_bus_sink_for_every_subscriber() -> None:
    bus = EventBus("i")
    hub = VsiHub()
    bus.add_sink(hub)
    everyone = VsiSubscriber()
    sales = VsiSubscriber(app_id_pattern="^sales$")
    gone = VsiSubscriber()
    for s in (everyone, sales, gone, sales):
        hub.subscribe(s)
    assert hub.count == 3
    hub.unsubscribe(gone)
    assert hub.count == 2

    connected = LegConnected(leg_type="sip_inbound")
    bus.publish(connected, leg_id="A", app_id="sales")
    bus.publish(connected, leg_id="B", app_id="other")

    assert [m["leg_id"] for m in await take(everyone, 2)] == ["A", "B"]
    assert [m["leg_id"] for m in await take(sales, 1)] == ["A"]
    assert sales.pending == 0
    assert gone.pending == 0

    hub.close_all()
    assert hub.count == 0
    with pytest.raises(VsiClosed):
        await everyone.next_message()


async def test_control_messages_bypass_filter_and_buffer_limit_in_fifo_order() -> None:
    sub = VsiSubscriber(app_id_pattern="^sales$", max_buffer=2)
    sub.offer({"type": "e", "app_id": "sales", "n": 1})
    sub.offer_control({"type": "ping", "event_id": 1})
    sub.offer({"type": "e", "app_id": "sales", "n": 2})
    sub.offer({"type": "e", "app_id": "sales", "n": 3})  # third event: over max_buffer
    sub.offer_control({"type": "list_legs.result", "request_id": "r1", "data": {"legs": []}})
    assert await take(sub, 5) == [
        {"type": "e", "app_id": "sales", "n": 1},
        {"type": "ping", "event_id": 1},
        {"type": "e", "app_id": "sales", "n": 2},
        {"type": "events_dropped", "count": 1},
        {"type": "list_legs.result", "request_id": "r1", "data": {"legs": []}},
    ]
    # Controls did not use up event space: two more events fit again.
    sub.offer({"type": "e", "app_id": "sales", "n": 4})
    sub.offer({"type": "e", "app_id": "sales", "n": 5})
    assert [m["n"] for m in await take(sub, 2)] == [4, 5]


async def test_control_messages_are_capped_for_a_client_that_never_reads() -> None:
    sub = VsiSubscriber()
    for i in range(MAX_CONTROLS + 3):
        sub.offer_control({"type": "ping", "event_id": i})
    assert sub.pending == MAX_CONTROLS
    assert sub.controls_dropped == 3
    assert (await take(sub, 1))[0]["event_id"] == 0
    sub.offer_control({"type": "ping", "event_id": -1})
    assert sub.pending == MAX_CONTROLS


async def test_control_wakes_the_waiter() -> None:
    sub = VsiSubscriber(app_id_pattern="x")
    waiter = asyncio.create_task(sub.next_message())
    await asyncio.sleep(0.01)
    sub.offer_control({"type": "ping", "event_id": 7})
    assert json.loads(await asyncio.wait_for(waiter, 1)) == {"type": "ping", "event_id": 7}
