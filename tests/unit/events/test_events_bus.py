from __future__ import annotations

import json
import logging
import math
import re
from datetime import UTC, datetime

import pytest

from callboard.events.bus import Event, EventBus, event_json, utc_timestamp

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_envelope_is_flat_and_handed_to_sinks() -> None:
    bus = EventBus("inst-1")
    seen: list[Event] = []
    bus.add_sink(seen.append)

    event = bus.publish("leg.connected", leg_id="L1", leg_type="sip_inbound")

    assert seen == [event]
    assert seen[0] is event
    assert list(event)[:3] == ["type", "timestamp", "instance_id"]
    assert event["type"] == "leg.connected"
    assert event["instance_id"] == "inst-1"
    assert event["leg_id"] == "L1"
    assert event["leg_type"] == "sip_inbound"
    assert "data" not in event
    assert TIMESTAMP.match(event["timestamp"]), event["timestamp"]


def test_utc_timestamp_format() -> None:
    moment = datetime(2024, 3, 5, 7, 8, 9, 123456, tzinfo=UTC)
    assert utc_timestamp(moment) == "2024-03-05T07:08:09.123Z"


def test_envelope_keys_cannot_be_overridden_by_fields() -> None:
    bus = EventBus("inst-1")
    event = bus.publish("room.created", room_id="R", instance_id="forged", timestamp="x")
    assert event["instance_id"] == "inst-1"
    assert TIMESTAMP.match(event["timestamp"])


def test_raising_sink_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus("i")
    before: list[Event] = []
    after: list[Event] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("sink bug")

    bus.add_sink(before.append)
    bus.add_sink(broken)
    bus.add_sink(after.append)

    with caplog.at_level(logging.ERROR, logger="callboard.events.bus"):
        first = bus.publish("dtmf.received", leg_id="L", digit="5", seq=1)
        second = bus.publish("dtmf.received", leg_id="L", digit="6", seq=2)

    assert before == [first, second]
    assert after == [first, second]
    assert sum("sink bug" in (r.exc_text or "") for r in caplog.records) == 2


def test_remove_sink() -> None:
    bus = EventBus("i")
    seen: list[Event] = []
    bus.add_sink(seen.append)
    bus.publish("a")
    bus.remove_sink(seen.append)
    bus.remove_sink(seen.append)  # removing an absent sink is harmless
    bus.publish("b")
    assert [e["type"] for e in seen] == ["a"]
    assert bus.sink_count == 0


def test_sink_removed_during_fan_out_still_sees_the_current_event() -> None:
    bus = EventBus("i")
    seen: list[str] = []

    def remover(event: Event) -> None:
        bus.remove_sink(remover)
        bus.remove_sink(recorder)

    def recorder(event: Event) -> None:
        seen.append(event["type"])

    bus.add_sink(remover)
    bus.add_sink(recorder)
    bus.publish("first")
    bus.publish("second")
    assert seen == ["first"]


def test_event_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus("i")
    with caplog.at_level(logging.INFO, logger="callboard.events.bus"):
        bus.publish("dtmf.received", leg_id="L", digit="7")
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="callboard.events.bus"):
        bus.publish("dtmf.received", leg_id="L", digit="7")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "dtmf.received" in caplog.records[0].getMessage()


def test_event_json_is_compact_and_never_emits_nan() -> None:
    event: Event = {"type": "leg.disconnected", "quality": {"mos_score": math.nan}, "x": "café"}
    text = event_json(event)
    assert text == '{"type":"leg.disconnected","quality":{"mos_score":null},"x":"café"}'
    assert json.loads(text)["quality"]["mos_score"] is None


def test_unserialisable_field_does_not_break_publish() -> None:
    bus = EventBus("i")
    texts: list[str] = []
    bus.add_sink(lambda e: texts.append(event_json(e)))
    bus.publish("odd", thing=object(), tags={"a"})
    decoded = json.loads(texts[0])
    assert decoded["tags"] == ["a"]
    assert decoded["thing"].startswith("<object object")
