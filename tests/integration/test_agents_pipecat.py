"""A real Pipecat bot (pipecat-ai, its single-client WebSocket server transport and protobuf
serializer, run by tests/helpers/pipecat_bots.py) on a call and in a room.

The layout: A calls B. On A the call sits in a room with a WebSocket participant, the
"caller": what it says reaches B's leg over RTP, and it hears what B's leg sends. The agent
is attached on B. The tone bot answers a burst of a tone with its own tone (at 24 kHz, so the
client resamples), reports what it heard through RTVI messages, and interrupts itself when
the caller speaks over its reply.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from tests.helpers.audio import active_spans, dominant_frequency
from tests.helpers.peers import free_port
from tests.helpers.pipecat_bots import BotProcess, running_bot
from tests.helpers.room_ear import RATE, RoomEar
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.standins.common import sine
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect, disconnected

REPLY_HZ = 660.0


def burst(hz: float = 440.0, seconds: float = 0.6) -> np.ndarray:
    """A tone burst and the quiet after it that ends the caller's turn."""
    tone = sine(hz, RATE, round(seconds * RATE))
    return np.concatenate([tone, np.zeros(round(0.5 * RATE), dtype=np.int16)])


def tone_bot(reply_seconds: float = 1.0) -> Iterator[BotProcess]:
    return running_bot(  # type: ignore[return-value]
        "--kind",
        "tone",
        "--port",
        str(free_port("tcp")),
        "--reply-frequency",
        str(REPLY_HZ),
        "--reply-seconds",
        str(reply_seconds),
    )


def call_with_caller(
    a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver, room: str
) -> tuple[str, str, RoomEar]:
    a_leg, b_leg = connect(a, b, hooks)
    assert a.api("POST", f"/rooms/{room}/legs", {"leg_id": a_leg}).status_code == 200
    return a_leg, b_leg, RoomEar(a, room)


def reply_spans(heard: np.ndarray) -> list[tuple[float, float]]:
    return [(s, e) for s, e in active_spans(heard, RATE, threshold_dbfs=-30) if e - s > 0.1]


def test_a_pipecat_bot_hears_the_caller_and_is_heard(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    with tone_bot() as bot:
        a_leg, b_leg, caller = call_with_caller(a, b, hooks, "pc-caller")
        try:
            since = hooks.mark()
            response = b.api("POST", f"/legs/{b_leg}/agent/pipecat", {"websocket_url": bot.url()})
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "agent_started"
            assert response.json()["leg_id"] == b_leg
            connected = hooks.wait_for("agent.connected", since=since, leg_id=b_leg)
            assert connected["conversation_id"] == bot.url()
            # A second agent on the same leg is a conflict.
            again = b.api("POST", f"/legs/{b_leg}/agent/pipecat", {"websocket_url": bot.url()})
            assert again.status_code == 409

            t0 = time.monotonic()
            caller.say(burst(440.0))
            heard_text = hooks.wait_for("agent.user_transcript", since=since, leg_id=b_leg)
            assert heard_text["text"] == "tone 440"
            response_event = hooks.wait_for("agent.agent_response", since=since, leg_id=b_leg)
            assert "tone 440" in response_event["text"]
            heard = caller.listen(3.0, start=t0)
            # The caller's own burst is not sent back to it; what it hears is the bot's reply.
            spans = reply_spans(heard)
            assert spans, "the bot's reply was not heard"
            start, end = spans[-1]
            assert end - start == pytest.approx(1.0, abs=0.1)
            body = heard[int((start + 0.1) * RATE) : int((end - 0.1) * RATE)]
            assert dominant_frequency(body, RATE) == pytest.approx(REPLY_HZ, abs=5)

            # DELETE ends it (stopped) and the bot takes a new client.
            since = hooks.mark()
            assert b.api("DELETE", f"/legs/{b_leg}/agent").status_code == 200
            ended = hooks.wait_for("agent.disconnected", since=since, leg_id=b_leg)
            assert ended["reason"] == "stopped" and ended["provider"] == "pipecat"
            assert b.api("DELETE", f"/legs/{b_leg}/agent").status_code == 404
            since = hooks.mark()
            response = b.api("POST", f"/legs/{b_leg}/agent/pipecat", {"websocket_url": bot.url()})
            assert response.status_code == 200, response.text
            hooks.wait_for("agent.connected", since=since, leg_id=b_leg)

            # Hang-up ends it too.
            since = hooks.mark()
            assert b.api("DELETE", f"/legs/{b_leg}").status_code == 200
            ended = hooks.wait_for("agent.disconnected", since=since, leg_id=b_leg)
            assert ended["reason"] == "hangup"
            disconnected(hooks, a_leg)
        finally:
            caller.close()
