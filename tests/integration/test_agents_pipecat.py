"""A real Pipecat bot (pipecat-ai, its single-client WebSocket server transport and protobuf
serializer, run by tests/helpers/pipecat_bots.py) on a call and in a room.

The layout: A calls B. On A the call sits in a room with a WebSocket participant, the
"caller": what it says reaches B's leg over RTP, and it hears what B's leg sends. The agent
is attached on B. The tone bot answers a burst of a tone with its own tone (at 24 kHz, so the
client resamples), reports what it heard through RTVI messages, and interrupts itself when
the caller speaks over its reply.
"""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager

import pytest

from tests.helpers.agent_calls import REPLY_HZ, burst, call_with_caller, reply_spans
from tests.helpers.audio import dominant_frequency
from tests.helpers.peers import free_port
from tests.helpers.pipecat_bots import BotProcess, running_bot
from tests.helpers.room_ear import RATE, RoomEar
from tests.helpers.server import ServerFactory
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import disconnected


def tone_args(reply_seconds: float) -> list[str]:
    return [
        "--kind",
        "tone",
        "--port",
        str(free_port("tcp")),
        "--reply-frequency",
        str(REPLY_HZ),
        "--reply-seconds",
        str(reply_seconds),
    ]


def tone_bot(reply_seconds: float = 1.0) -> AbstractContextManager[BotProcess]:
    return running_bot(*tone_args(reply_seconds))


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


def test_barge_in_injection_and_a_bot_crash(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    a_leg, b_leg, caller = call_with_caller(a, b, hooks, "pc-barge")
    try:
        bot = BotProcess(
            [sys.executable, "-m", "tests.helpers.pipecat_bots", *tone_args(4.0)]
        ).start()
        try:
            since = hooks.mark()
            assert b.api("POST", f"/legs/{b_leg}/agent/pipecat", {"websocket_url": bot.url()})
            hooks.wait_for("agent.connected", since=since, leg_id=b_leg)
            # The caller speaks, the bot answers for 4 s; 1 s into its answer the caller speaks
            # again: the bot interrupts itself and the rest of its answer is never heard.
            t0 = time.monotonic()
            caller.say(burst(440.0)).join()
            hooks.wait_for("agent.agent_response", since=since, leg_id=b_leg)
            time.sleep(1.0)
            barge = time.monotonic()
            caller.say(burst(550.0, seconds=0.4))
            heard = caller.listen(barge - t0 + 2.0, start=t0)
            spans = reply_spans(heard[int((barge - t0 - 1.5) * RATE) :])
            assert spans, "the first answer was not heard"
            first_end = barge - 1.5 + spans[0][1]
            # Cut within a few frames of the caller's new speech reaching the bot.
            assert first_end - barge < 0.35, first_end - barge
            transcripts = hooks.events("agent.user_transcript", since=since, leg_id=b_leg)
            hooks.wait_for(
                lambda e: e.type == "agent.user_transcript" and e["text"] == "tone 550",
                since=since,
            )
            assert [e["text"] for e in transcripts][:1] == ["tone 440"]

            # A message reaches the bot (a TranscriptionFrame): it answers it aloud.
            time.sleep(4.5)  # the answer to the second burst plays out
            response = b.api("POST", f"/legs/{b_leg}/agent/message", {"message": "hello bot"})
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "message_sent"
            t1 = time.monotonic()
            heard = caller.listen(1.5, start=t1)
            assert reply_spans(heard), "the injected message got no spoken answer"
            assert dominant_frequency(heard[-RATE // 2 :], RATE) == pytest.approx(REPLY_HZ, abs=5)

            # The bot dies: the session ends with an error, the call goes on.
            since = hooks.mark()
            assert bot.proc is not None
            bot.proc.kill()
            ended = hooks.wait_for("agent.disconnected", since=since, leg_id=b_leg, timeout=30)
            assert ended["reason"] == "error" and ended["error"]
            assert b.get_leg(b_leg)["state"] == "connected"  # type: ignore[index]
            message = b.api("POST", f"/legs/{b_leg}/agent/message", {"message": "anyone?"})
            assert message.status_code == 404
        finally:
            bot.stop()
        # A new bot: a new agent attaches to the same leg.
        with tone_bot() as bot2:
            since = hooks.mark()
            response = b.api("POST", f"/legs/{b_leg}/agent/pipecat", {"websocket_url": bot2.url()})
            assert response.status_code == 200, response.text
            hooks.wait_for("agent.connected", since=since, leg_id=b_leg)
            t2 = time.monotonic()
            caller.say(burst(440.0))
            heard = caller.listen(3.0, start=t2)
            assert reply_spans(heard), "the second bot was not heard"
            assert b.api("DELETE", f"/legs/{b_leg}/agent").status_code == 200
    finally:
        caller.close()
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200


def test_room_agent_is_a_participant_and_leg_agent_speaks_into_the_room(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    """Room "conf" on B holds the call's leg and two WebSocket participants. A room agent
    hears the mix and everyone hears it, the caller too; a leg agent hears its leg alone and
    its voice goes into the room's mix."""
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    a_leg, b_leg, caller = call_with_caller(a, b, hooks, "pc-room")
    assert b.api("POST", "/rooms", {"id": "conf"}).status_code in (200, 201)
    assert b.api("POST", "/rooms/conf/legs", {"leg_id": b_leg}).status_code == 200
    alice, bob = RoomEar(b, "conf"), RoomEar(b, "conf")
    try:
        with tone_bot() as bot:
            since = hooks.mark()
            response = b.api("POST", "/rooms/conf/agent/pipecat", {"websocket_url": bot.url()})
            assert response.status_code == 200, response.text
            assert response.json()["room_id"] == "conf"
            hooks.wait_for("agent.connected", since=since, room_id="conf")
            t0 = time.monotonic()
            alice.say(burst(880.0))  # a participant of the room speaks: the room agent hears it
            assert (
                hooks.wait_for("agent.user_transcript", since=since, room_id="conf")["text"]
                == "tone 880"
            )
            for ear in (caller, bob):
                heard = ear.listen(3.0, start=t0)
                spans = reply_spans(heard)
                assert spans, "the room agent was not heard by everyone"
                start, end = spans[-1]
                body = heard[int((start + 0.1) * RATE) : int((end - 0.1) * RATE)]
                assert dominant_frequency(body, RATE) == pytest.approx(REPLY_HZ, abs=5)
            since = hooks.mark()
            assert b.api("DELETE", "/rooms/conf/agent").status_code == 200
            assert (
                hooks.wait_for("agent.disconnected", since=since, room_id="conf")["reason"]
                == "stopped"
            )

        with tone_bot() as bot:
            since = hooks.mark()
            response = b.api("POST", f"/legs/{b_leg}/agent/pipecat", {"websocket_url": bot.url()})
            assert response.status_code == 200, response.text
            hooks.wait_for("agent.connected", since=since, leg_id=b_leg)
            alice.say(burst(880.0)).join()  # not the leg's own audio: the leg agent ignores it
            time.sleep(0.8)
            assert not hooks.events("agent.user_transcript", since=since)
            t1 = time.monotonic()
            caller.say(burst(440.0))
            assert (
                hooks.wait_for("agent.user_transcript", since=since, leg_id=b_leg)["text"]
                == "tone 440"
            )
            for ear in (caller, alice, bob):  # its voice is in the room's mix
                heard = ear.listen(3.0, start=t1)
                assert reply_spans(heard), "the leg agent's voice did not reach everyone"
            # The leg leaves the room: its agent goes on speaking to the leg.
            since = hooks.mark()
            assert b.api("DELETE", f"/rooms/conf/legs/{b_leg}").status_code == 200
            t2 = time.monotonic()
            caller.say(burst(440.0))
            heard = caller.listen(3.0, start=t2)
            assert reply_spans(heard), "the leg agent fell silent when its leg left the room"
            assert not hooks.events("agent.disconnected", since=since, leg_id=b_leg)
    finally:
        for ear in (caller, alice, bob):
            ear.close()
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
