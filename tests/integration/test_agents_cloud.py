"""ElevenLabs, Deepgram and VAPI agents end to end: the server's production clients, pointed
at each provider's stand-in by configuration (tests/helpers/agent_calls.py), on a call and in
a room of three. The stand-ins enforce the real handshake and speak a tone agent's answers."""

from __future__ import annotations

import time

import pytest

from tests.helpers.agent_calls import (
    CLOUD_PROVIDERS,
    REPLY_HZ,
    burst,
    call_with_caller,
    cloud_agent,
    reply_spans,
)
from tests.helpers.audio import dominant_frequency
from tests.helpers.room_ear import RATE, RoomEar
from tests.helpers.server import ServerFactory
from tests.helpers.webhooks import WebhookReceiver

# What each provider is sent for POST .../agent/message.
INJECTED = {
    "elevenlabs": {"type": "contextual_update", "text": "caller is a VIP"},
    "deepgram": {"type": "InjectAgentMessage", "message": "caller is a VIP"},
    "vapi": {
        "type": "add-message",
        "message": {"role": "system", "content": "caller is a VIP"},
    },
}

CHUNK_MS = {"elevenlabs": 20, "deepgram": 1000, "vapi": 250}


@pytest.mark.parametrize("provider", CLOUD_PROVIDERS)
def test_agent_on_a_call_hears_answers_is_interrupted_and_takes_messages(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, provider: str
) -> None:
    hooks = webhook_receiver
    with cloud_agent(provider) as agent:
        # Replies in chunks from 20 ms to 1 s, sent faster than real time; ElevenLabs answers
        # in mu-law at 8 kHz, as its agent declares.
        agent.knobs.chunk_ms = CHUNK_MS[provider]
        if provider == "elevenlabs":
            agent.standin.knobs.output_format = "ulaw_8000"
        a = server_factory(WEBHOOK_URL=hooks.url)
        b = server_factory(WEBHOOK_URL=hooks.url, **agent.env)
        a_leg, b_leg, caller = call_with_caller(a, b, hooks, f"caller-{provider}")
        try:
            since = hooks.mark()
            response = b.api("POST", f"/legs/{b_leg}/agent/{provider}", agent.body)
            assert response.status_code == 200, response.text
            assert response.json() == {
                "instance_id": b.instance_id,
                "status": "agent_started",
                "leg_id": b_leg,
            }
            connected = hooks.wait_for("agent.connected", since=since, leg_id=b_leg)
            assert connected["provider"] == provider and connected["conversation_id"]

            t0 = time.monotonic()
            caller.say(burst(440.0))
            text = hooks.wait_for("agent.user_transcript", since=since, leg_id=b_leg)["text"]
            assert text == "tone 440"
            answer = hooks.wait_for("agent.agent_response", since=since, leg_id=b_leg)["text"]
            assert "tone 440" in answer
            heard = caller.listen(3.0, start=t0)
            spans = reply_spans(heard)
            assert spans, "the agent's answer was not heard"
            start, end = spans[-1]
            assert end - start == pytest.approx(1.0, abs=0.1)  # sent faster than real time
            body = heard[int((start + 0.1) * RATE) : int((end - 0.1) * RATE)]
            assert dominant_frequency(body, RATE) == pytest.approx(REPLY_HZ, abs=5)

            # Barge-in: a 4 s answer, spoken over 1 s in: the rest is never heard.
            agent.knobs.reply_seconds = 4.0
            since = hooks.mark()
            t1 = time.monotonic()
            caller.say(burst(440.0)).join()
            hooks.wait_for("agent.agent_response", since=since, leg_id=b_leg)
            time.sleep(1.0)
            barge = time.monotonic()
            caller.say(burst(550.0, seconds=0.4))
            heard = caller.listen(barge - t1 + 1.0, start=t1)
            cut = [(s, e) for s, e in reply_spans(heard) if t1 + s < barge]
            assert cut, "the first answer was not heard"
            assert t1 + cut[-1][1] - barge < 0.35, t1 + cut[-1][1] - barge
            hooks.wait_for(
                lambda e: e.type == "agent.user_transcript" and e["text"] == "tone 550",
                since=since,
            )
            agent.knobs.reply_seconds = 1.0

            # A message: the provider's own injection message.
            response = b.api("POST", f"/legs/{b_leg}/agent/message", {"message": "caller is a VIP"})
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "message_sent"
            deadline = time.monotonic() + 5
            while INJECTED[provider] not in agent.knobs.injected and time.monotonic() < deadline:
                time.sleep(0.05)
            assert INJECTED[provider] in agent.knobs.injected, agent.knobs.injected

            # DELETE: the session ends (stopped); VAPI is told the call ends.
            since = hooks.mark()
            assert b.api("DELETE", f"/legs/{b_leg}/agent").status_code == 200
            ended = hooks.wait_for("agent.disconnected", since=since, leg_id=b_leg)
            assert ended["reason"] == "stopped" and ended["provider"] == provider
            if provider == "vapi":
                call = agent.standin.last_call()
                assert {"type": "end-call"} in call.connection.received
            assert b.get_leg(b_leg)["state"] == "connected"  # type: ignore[index]
        finally:
            caller.close()
        assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200


@pytest.mark.parametrize("provider", CLOUD_PROVIDERS)
def test_room_agent_with_three_participants(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, provider: str
) -> None:
    """Room "conf" on B: the call's leg and two WebSocket participants. The agent hears the
    mix (a participant speaks) and all three hear its answer; deleting the room ends it."""
    hooks = webhook_receiver
    with cloud_agent(provider) as agent:
        if provider == "elevenlabs":  # formats the agent declares: 8 kHz in, 44.1 kHz out
            agent.standin.knobs.input_format = "pcm_8000"
            agent.standin.knobs.output_format = "pcm_44100"
        a = server_factory(WEBHOOK_URL=hooks.url)
        b = server_factory(WEBHOOK_URL=hooks.url, **agent.env)
        a_leg, b_leg, caller = call_with_caller(a, b, hooks, f"room-{provider}")
        assert b.api("POST", "/rooms", {"id": "conf"}).status_code in (200, 201)
        assert b.api("POST", "/rooms/conf/legs", {"leg_id": b_leg}).status_code == 200
        alice, bob = RoomEar(b, "conf"), RoomEar(b, "conf")
        try:
            since = hooks.mark()
            response = b.api("POST", f"/rooms/conf/agent/{provider}", agent.body)
            assert response.status_code == 200, response.text
            assert response.json()["room_id"] == "conf"
            hooks.wait_for("agent.connected", since=since, room_id="conf")
            assert b.api("POST", f"/rooms/conf/agent/{provider}", agent.body).status_code == 409
            t0 = time.monotonic()
            alice.say(burst(880.0))
            heard_text = hooks.wait_for("agent.user_transcript", since=since, room_id="conf")
            assert heard_text["text"] == "tone 880"
            for ear in (caller, alice, bob):
                heard = ear.listen(3.0, start=t0)
                spans = reply_spans(heard)
                assert spans, "the room agent was not heard by every participant"
                start, end = spans[-1]
                body = heard[int((start + 0.1) * RATE) : int((end - 0.1) * RATE)]
                assert dominant_frequency(body, RATE) == pytest.approx(REPLY_HZ, abs=5)
            since = hooks.mark()
            assert b.api("DELETE", "/rooms/conf").status_code == 200
            ended = hooks.wait_for("agent.disconnected", since=since, room_id="conf")
            assert ended["reason"] == "room_deleted"
        finally:
            for ear in (caller, alice, bob):
                ear.close()
        assert a.api("DELETE", f"/legs/{a_leg}").status_code in (200, 404)
