"""Agents when things go wrong: bad requests, refused keys, a provider that closes
mid-sentence, sends garbage, stops answering or stops reading. The call always goes on, the
session ends with one agent.disconnected that says why, and a new agent can be attached."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tests.helpers.agent_calls import (
    CLOUD_PROVIDERS,
    burst,
    call_with_caller,
    cloud_agent,
    reply_spans,
)
from tests.helpers.room_ear import RoomEar
from tests.helpers.server import ServerFactory
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect, dial, disconnected

REFUSAL = {
    "elevenlabs": "Invalid API key",
    "deepgram": "Invalid credentials",
    "vapi": "Invalid Key",
}


def test_bad_requests_get_clear_4xx(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    a_leg, ringing = dial(a, b, hooks)
    cases = [
        ("elevenlabs", {}, 400, "agent_id"),
        ("elevenlabs", {"agent_id": "x", "dynamic_variables": {"a": [1]}}, 400, "dynamic"),
        ("vapi", {"first_message": "hi"}, 400, "assistant_id"),
        ("pipecat", {"websocket_url": "http://bot:8765"}, 400, "websocket_url"),
        ("pipecat", {}, 400, "websocket_url"),
        ("deepgram", {"settings": "nope"}, 400, "settings"),
    ]
    for provider, body, status, word in cases:
        response = b.api("POST", f"/legs/{ringing}/agent/{provider}", body)
        assert response.status_code == status, (provider, body, response.text)
        assert word in response.json()["error"], response.text
    # Unknown leg and room; a leg that is not connected yet; no key.
    good = {"websocket_url": "ws://127.0.0.1:9"}
    assert b.api("POST", "/legs/nope/agent/pipecat", good).status_code == 404
    assert b.api("POST", "/rooms/nope/agent/pipecat", good).status_code == 404
    not_yet = b.api("POST", f"/legs/{ringing}/agent/pipecat", good)
    assert not_yet.status_code == 409 and "connected" in not_yet.json()["error"]
    assert b.api("POST", f"/legs/{ringing}/answer").status_code == 200
    hooks.wait_for("leg.connected", leg_id=a_leg)
    no_key = b.api("POST", f"/legs/{ringing}/agent/elevenlabs", {"agent_id": "x"})
    assert no_key.status_code == 503
    assert no_key.json()["error"] == "no elevenlabs API key provided"
    assert b.api("POST", f"/legs/{ringing}/agent/vapi", {"assistant_id": "x"}).status_code == 503
    assert b.api("POST", f"/legs/{ringing}/agent/deepgram", {}).status_code == 503
    # No agent: message and DELETE are 404; an empty room takes none.
    message = b.api("POST", f"/legs/{ringing}/agent/message", {"message": "hi"})
    assert message.status_code == 404
    assert b.api("POST", f"/legs/{ringing}/agent/message", {}).status_code == 400
    assert b.api("DELETE", f"/legs/{ringing}/agent").status_code == 404
    assert b.api("POST", "/rooms", {"id": "empty"}).status_code in (200, 201)
    empty = b.api("POST", "/rooms/empty/agent/pipecat", good)
    assert empty.status_code == 409 and "no participants" in empty.json()["error"]
    # A bot that is not there: 200, then agent.disconnected with the reason.
    since = hooks.mark()
    assert b.api("POST", f"/legs/{ringing}/agent/pipecat", good).status_code == 200
    ended = hooks.wait_for("agent.disconnected", since=since, leg_id=ringing)
    assert ended["reason"] == "error" and "cannot connect" in ended["error"]
    assert not hooks.events("agent.connected", since=since)


@pytest.mark.parametrize("provider", CLOUD_PROVIDERS)
def test_refused_key_closed_mid_sentence_and_garbage(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, provider: str
) -> None:
    hooks = webhook_receiver
    with cloud_agent(provider) as agent:
        a = server_factory(WEBHOOK_URL=hooks.url)
        b = server_factory(WEBHOOK_URL=hooks.url, **agent.env)
        a_leg, b_leg, caller = call_with_caller(a, b, hooks, f"faults-{provider}")
        try:
            # The provider refuses the key: the provider's own words in the event.
            agent.knobs.refuse_keys = True
            since = hooks.mark()
            assert b.api("POST", f"/legs/{b_leg}/agent/{provider}", agent.body).status_code == 200
            ended = hooks.wait_for("agent.disconnected", since=since, leg_id=b_leg)
            assert ended["reason"] == "error" and REFUSAL[provider] in ended["error"], ended
            assert not hooks.events("agent.connected", since=since)
            agent.knobs.refuse_keys = False

            # Garbage right after the handshake is skipped; the conversation goes on.
            agent.knobs.garbage_after_connect = True
            agent.knobs.close_after_chunks = 3
            since = hooks.mark()
            assert b.api("POST", f"/legs/{b_leg}/agent/{provider}", agent.body).status_code == 200
            hooks.wait_for("agent.connected", since=since, leg_id=b_leg)
            # The provider closes mid-sentence (after three chunks of its answer).
            caller.say(burst(440.0))
            hooks.wait_for("agent.user_transcript", since=since, leg_id=b_leg)
            ended = hooks.wait_for("agent.disconnected", since=since, leg_id=b_leg)
            assert ended["reason"] == "error" and "1011" in ended["error"], ended
            assert b.get_leg(b_leg)["state"] == "connected"  # type: ignore[index]

            # Attach again: works.
            agent.knobs.garbage_after_connect = False
            agent.knobs.close_after_chunks = None
            since = hooks.mark()
            assert b.api("POST", f"/legs/{b_leg}/agent/{provider}", agent.body).status_code == 200
            hooks.wait_for("agent.connected", since=since, leg_id=b_leg)
            t0 = time.monotonic()
            caller.say(burst(440.0))
            assert reply_spans(caller.listen(3.0, start=t0)), "the new session was not heard"

            # A provider that falls silent never holds up a hang-up.
            agent.knobs.silent = True
            since = hooks.mark()
            t1 = time.monotonic()
            assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
            ended = hooks.wait_for("agent.disconnected", since=since, leg_id=b_leg)
            assert ended["reason"] == "hangup"
            assert ended.request.monotonic - t1 < 5.0
            disconnected(hooks, b_leg)
        finally:
            caller.close()


@contextlib.contextmanager
def stuck_websocket_server() -> Iterator[str]:
    """Accepts a WebSocket handshake, then never reads or answers again (a hung process)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                held.append(conn)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(4096)
                key = next(
                    line.split(b":", 1)[1].strip()
                    for line in request.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                magic = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
                accept = base64.b64encode(hashlib.sha1(key + magic).digest())
                conn.sendall(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
                )
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_a_bot_that_stops_reading_and_answering_is_dropped(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    """No pong, no reads: the session fails on its own (ping timeout or write deadline)
    while the call goes on."""
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    a_leg, b_leg = connect(a, b, hooks)
    with stuck_websocket_server() as url:
        since = hooks.mark()
        t0 = time.monotonic()
        assert (
            b.api("POST", f"/legs/{b_leg}/agent/pipecat", {"websocket_url": url}).status_code == 200
        )
        hooks.wait_for("agent.connected", since=since, leg_id=b_leg)
        ended = hooks.wait_for("agent.disconnected", since=since, leg_id=b_leg, timeout=30)
        assert ended["reason"] == "error", ended
        assert ended.request.monotonic - t0 < 25
        assert b.get_leg(b_leg)["state"] == "connected"  # type: ignore[index]
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200


def test_a_room_agent_ends_when_its_room_empties_or_goes(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    with cloud_agent("deepgram") as agent:
        a = server_factory(WEBHOOK_URL=hooks.url)
        b = server_factory(WEBHOOK_URL=hooks.url, **agent.env)
        for room, ending, reason in (
            ("kept", "hangup", "room_empty"),
            ("gone", "delete", "room_deleted"),
        ):
            since = hooks.mark()
            a_leg = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")}).json()["id"]
            b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
            assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
            hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
            assert b.api("POST", "/rooms", {"id": room}).status_code in (200, 201)
            assert b.api("POST", f"/rooms/{room}/legs", {"leg_id": b_leg}).status_code == 200
            since = hooks.mark()
            assert b.api("POST", f"/rooms/{room}/agent/deepgram", {}).status_code == 200
            hooks.wait_for("agent.connected", since=since, room_id=room)
            if ending == "hangup":
                assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
            else:
                assert b.api("DELETE", f"/rooms/{room}").status_code == 200
            ended = hooks.wait_for("agent.disconnected", since=since, room_id=room)
            assert ended["reason"] == reason
            disconnected(hooks, b_leg)
            assert len(hooks.events("agent.disconnected", since=since)) == 1


def test_a_room_agent_ends_when_its_last_websocket_participant_leaves(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    with cloud_agent("deepgram") as agent:
        b = server_factory(WEBHOOK_URL=hooks.url, **agent.env)
        assert b.api("POST", "/rooms", {"id": "web"}).status_code in (200, 201)
        ear = RoomEar(b, "web")
        since = hooks.mark()
        assert b.api("POST", "/rooms/web/agent/deepgram", {}).status_code == 200
        hooks.wait_for("agent.connected", since=since, room_id="web")
        ear.close()
        ended = hooks.wait_for("agent.disconnected", since=since, room_id="web")
        assert ended["reason"] == "room_empty"
        assert b.api("GET", "/rooms/web").status_code == 200  # the room itself stays
