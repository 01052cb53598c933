"""The audio bridge (input policies, the bounded outbound side) and the room WebSocket's
framing."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from callboard.api.room_ws_framing import FRAME_BYTES, RoomWsFraming
from callboard.media.bridge import AudioBridge, LiveInput, PacedInput
from callboard.media.engine import MediaEngine
from callboard.media.streamed import FADE_SAMPLES

from .audio_analysis import tone


def _frame(value: int) -> np.ndarray:
    return np.full(320, value, dtype=np.int16)


def test_live_input_keeps_a_small_slack_and_drops_the_oldest() -> None:
    live = LiveInput(slack_frames=3)
    for value in range(5):
        live.push(_frame(value))
    assert live.dropped_frames == 2
    assert [int(live.next_frame()[0]) for _ in range(3)] == [2, 3, 4]  # type: ignore[index]
    assert live.next_frame() is None
    with pytest.raises(ValueError, match="320 samples"):
        live.push(np.zeros(100, dtype=np.int16))


def test_paced_input_plays_a_burst_at_real_time_and_flushes() -> None:
    paced = PacedInput(max_ms=1000)
    paced.push(tone(500.0, 16000, 8000))  # half a second at once
    frames = [paced.next_frame() for _ in range(10)]
    assert all(f is not None and f.any() for f in frames)
    assert paced.flush() == 300
    assert not paced.next_frame()[FADE_SAMPLES:].any()  # type: ignore[index]  # a 5 ms fade
    assert not paced.next_frame().any()  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="buffer full"):
        paced.push(np.zeros(20000, dtype=np.int16))


async def test_a_bridge_that_is_not_drained_is_marked_too_slow_and_costs_nothing() -> None:
    bridge = AudioBridge("b1")
    for _ in range(60):  # more than a second the far end has not taken
        bridge.write_frame(_frame(7))
    assert bridge.too_slow.is_set() and bridge.outbound.qsize() == 50
    bridge.push_pcm(_frame(3).astype("<i2").tobytes())
    assert int(bridge.read_frame()[0]) == 3  # type: ignore[index]
    with pytest.raises(ValueError, match="2-byte"):
        bridge.push_pcm(b"\x01\x02\x03")


async def test_a_bridge_is_a_participant_of_the_engine() -> None:
    engine = MediaEngine()
    a, b = AudioBridge("a"), AudioBridge("b")
    for key, bridge in (("a", a), ("b", b)):
        engine.join_room(engine.attach(key, bridge), "room")
    a.push_pcm(tone(700.0, 16000, 320).astype("<i2").tobytes())
    engine.tick()
    heard = np.frombuffer(b.outbound.get_nowait(), dtype="<i2")
    assert np.array_equal(heard, tone(700.0, 16000, 320))
    assert not np.frombuffer(a.outbound.get_nowait(), dtype="<i2").any()


def test_room_ws_framing_both_ways() -> None:
    hello = json.loads(RoomWsFraming.hello("ws-1"))
    assert hello == {
        "type": "connected",
        "participant_id": "ws-1",
        "sample_rate": 16000,
        "format": "pcm_s16le",
    }
    frame = bytes(range(256)) * 2 + bytes(128)
    sent = json.loads(RoomWsFraming.audio(frame))
    assert base64.b64decode(sent["audio"]) == frame
    message = RoomWsFraming.parse(RoomWsFraming.audio(frame))
    assert (message.kind, message.audio) == ("audio", frame)
    assert RoomWsFraming.parse('{"type": "stop"}').kind == "stop"
    assert RoomWsFraming.parse('{"type": "pong", "event_id": 3}').kind == "pong"
    assert json.loads(RoomWsFraming.ping(4)) == {"type": "ping", "event_id": 4}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"audio": "***"}', "base64"),
        ('{"audio": 5}', "base64"),
        (json.dumps({"audio": base64.b64encode(b"12").decode()}), f"{FRAME_BYTES} bytes"),
        ('{"type": "dance"}', "unknown message type"),
    ],
)
def test_room_ws_framing_refuses_bad_messages_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        RoomWsFraming.parse(text)
