from __future__ import annotations

import json
import logging
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from callboard.events.base import LegEvent, LegOrRoomEvent, RoomEvent, event_keys, payload_keys
from callboard.events.bus import Envelope, EventBus, event_json, utc_timestamp
from callboard.events.types import (
    DtmfReceived,
    LegConnected,
    LegMuted,
    LegRinging,
    RecordingFinished,
    RoomCreated,
    RoomDeleted,
)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def test_envelope_is_flat_and_handed_to_sinks() -> None:
    bus = EventBus("inst-1")
    seen: list[Envelope] = []
    bus.add_sink(seen.append)

    event = bus.publish(LegConnected(leg_type="sip_inbound"), leg_id="L1")

    assert seen == [event]
    assert seen[0] is event
    assert list(event)[:4] == ["type", "event_id", "timestamp", "instance_id"]
    assert uuid.UUID(event["event_id"]).version == 4
    assert bus.publish(LegConnected(leg_type="sip_inbound"))["event_id"] != event["event_id"]
    assert event["type"] == "leg.connected"
    assert event["instance_id"] == "inst-1"
    assert event["leg_id"] == "L1"
    assert event["leg_type"] == "sip_inbound"
    assert "data" not in event
    assert TIMESTAMP.match(event["timestamp"]), event["timestamp"]


def test_utc_timestamp_format() -> None:
    moment = datetime(2024, 3, 5, 7, 8, 9, 123456, tzinfo=UTC)
    assert utc_timestamp(moment) == "2024-03-05T07:08:09.123Z"


def test_none_fields_are_left_out_and_keyword_fields_lose_their_underscore() -> None:
    bus = EventBus("i")
    ringing = bus.publish(LegRinging(uri="sip:bob@example.com", from_="alice"), leg_id="L")
    assert {k: v for k, v in ringing.items() if k not in ("timestamp", "event_id")} == {
        "type": "leg.ringing",
        "instance_id": "i",
        "leg_id": "L",
        "uri": "sip:bob@example.com",
        "from": "alice",
    }
    # Empty but not None is sent: presence follows None alone.
    finished = bus.publish(
        RecordingFinished(file="/r.wav", participant_files={}), room_id="R", app_id="sales"
    )
    assert set(finished) == {
        "type", "event_id", "timestamp", "instance_id", "room_id", "app_id", "file",
        "participant_files",
    }  # fmt: skip


def test_event_keys_list_scope_then_fields() -> None:
    assert event_keys(LegMuted) == ("leg_id",)
    assert event_keys(RoomCreated) == ("room_id",)
    assert event_keys(DtmfReceived) == ("leg_id", "digit", "seq")
    assert event_keys(LegRinging) == (
        "leg_id", "from", "to", "sip_headers", "uri", "replaces_leg_id"
    )  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class _Forger(RoomEvent):
    type = "forger"
    instance_id: str
    timestamp: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _ScopeClash(LegEvent):
    type = "scope_clash"
    leg_id: str


def test_envelope_keys_cannot_be_overridden_by_fields(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(TypeError, match="instance_id"):
        payload_keys(_Forger)
    with pytest.raises(TypeError, match="leg_id"):
        payload_keys(_ScopeClash)
    bus = EventBus("inst-1")
    seen: list[Envelope] = []
    bus.add_sink(seen.append)
    with caplog.at_level(logging.ERROR, logger="callboard.events.bus"):
        event = bus.publish(_Forger(instance_id="forged", timestamp="x"), room_id="R")
    assert seen == [event]  # still delivered (publish never raises), never forged
    assert event["instance_id"] == "inst-1"
    assert TIMESTAMP.match(event["timestamp"])
    assert "forger" in caplog.text


def test_raising_sink_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus("i")
    before: list[Envelope] = []
    after: list[Envelope] = []

    def broken(_event: Envelope) -> None:
        raise RuntimeError("sink bug")

    bus.add_sink(before.append)
    bus.add_sink(broken)
    bus.add_sink(after.append)

    with caplog.at_level(logging.ERROR, logger="callboard.events.bus"):
        first = bus.publish(DtmfReceived(digit="5", seq=1), leg_id="L")
        second = bus.publish(DtmfReceived(digit="6", seq=2), leg_id="L")

    assert before == [first, second]
    assert after == [first, second]
    assert sum("sink bug" in (r.exc_text or "") for r in caplog.records) == 2


def test_remove_sink() -> None:
    bus = EventBus("i")
    seen: list[Envelope] = []
    bus.add_sink(seen.append)
    bus.publish(RoomCreated(), room_id="R")
    bus.remove_sink(seen.append)
    bus.remove_sink(seen.append)  # removing an absent sink is harmless
    bus.publish(RoomDeleted(), room_id="R")
    assert [e["type"] for e in seen] == ["room.created"]
    assert bus.sink_count == 0


def test_sink_removed_during_fan_out_still_sees_the_current_event() -> None:
    bus = EventBus("i")
    seen: list[str] = []

    def remover(event: Envelope) -> None:
        bus.remove_sink(remover)
        bus.remove_sink(recorder)

    def recorder(event: Envelope) -> None:
        seen.append(event["type"])

    bus.add_sink(remover)
    bus.add_sink(recorder)
    bus.publish(RoomCreated(), room_id="R")
    bus.publish(RoomDeleted(), room_id="R")
    assert seen == ["room.created"]


def test_event_logged_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus("i")
    with caplog.at_level(logging.INFO, logger="callboard.events.bus"):
        bus.publish(DtmfReceived(digit="7", seq=1), leg_id="L")
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="callboard.events.bus"):
        bus.publish(DtmfReceived(digit="7", seq=2), leg_id="L")
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "dtmf.received" in caplog.records[0].getMessage()


def test_event_json_is_compact_and_never_emits_nan() -> None:
    event: Envelope = {"type": "leg.disconnected", "quality": {"mos_score": math.nan}, "x": "café"}
    text = event_json(event)
    assert text == '{"type":"leg.disconnected","quality":{"mos_score":null},"x":"café"}'
    assert json.loads(text)["quality"]["mos_score"] is None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Odd(LegOrRoomEvent):
    type = "odd"
    thing: object
    tags: set[str]


def test_unserialisable_field_does_not_break_publish() -> None:
    bus = EventBus("i")
    texts: list[str] = []
    bus.add_sink(lambda e: texts.append(event_json(e)))
    bus.publish(_Odd(thing=object(), tags={"a"}), leg_id="L")
    decoded = json.loads(texts[0])
    assert decoded["tags"] == ["a"]
    assert decoded["thing"].startswith("<object object")
