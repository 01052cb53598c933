"""The VSI WebSocket end to end: the event stream, its app_id filter, commands, a slow client."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.vsi import VsiClient, VsiError, vsi_url
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect, disconnected, pair

Originate = Callable[..., dict[str, Any]]
VsiFactory = Callable[..., VsiClient]


class RawWebSocket:
    """A bare RFC 6455 client on a plain socket, so that a test decides when (if) it reads.

    ``rcvbuf`` shrinks the kernel receive buffer before connecting, so a client that stops
    reading makes the server's writes back up quickly.
    """

    def __init__(self, port: int, path: str, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(5.0)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self._buffer = b""
        while b"\r\n\r\n" not in self._buffer:
            self._fill()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        self.status = int(head.split(b" ", 2)[1])

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the server")
        self._buffer += chunk

    def _take(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def recv_text(self, timeout: float = 5.0) -> str:
        """The next text message; raises ConnectionError on a close frame or EOF."""
        self.sock.settimeout(timeout)
        parts: list[bytes] = []
        while True:
            first, second = self._take(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", self._take(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._take(8))
            payload = self._take(length)  # server frames are not masked
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError(f"close frame {payload[:2].hex()} {payload[2:]!r}")
            if opcode == 0x9:
                self._send(0xA, payload)
                continue
            if opcode in (0x1, 0x0):
                parts.append(payload)
                if first & 0x80:
                    return b"".join(parts).decode()

    def recv_json(self, timeout: float = 5.0) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(self.recv_text(timeout))
        return message

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def close(self) -> None:
        self.sock.close()


def raw_vsi(server: ServerProcess, query: str = "", **kw: Any) -> RawWebSocket:
    return RawWebSocket(server.http_port, "/v1/vsi" + query, **kw)


def ringing_leg(server: ServerProcess) -> str:
    return str(server.wait_for_legs(1, state="ringing")[0]["id"])


def call(
    a: ServerProcess, b: ServerProcess, originate: Originate, **fields: Any
) -> tuple[str, str]:
    """A calls B, B answers: (A's leg, B's leg), both connected."""
    a_leg = originate(a, b.sip_uri("bob"), **fields)["id"]
    b_leg = ringing_leg(b)
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    a.wait_for_leg_state(a_leg, "connected")
    return a_leg, b_leg


def drain(client: VsiClient, quiet: float = 0.3) -> list[dict[str, Any]]:
    """Every message until none arrives for ``quiet`` seconds."""
    messages = []
    while True:
        try:
            messages.append(client.recv(timeout=quiet))
        except TimeoutError:
            return messages


# -- the stream ---------------------------------------------------------------------------


def test_connected_first_then_events_identical_to_webhook_bodies(
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    vsi_client_factory: VsiFactory,
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    stream = vsi_client_factory(a)
    assert stream.recv() == {"type": "connected"}
    a_leg, b_leg = connect(a, b, hooks)
    assert a.api("POST", f"/legs/{a_leg}/mute").status_code == 200
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
    disconnected(hooks, a_leg)
    disconnected(hooks, b_leg)

    events = [stream.recv() for _ in range(4)]
    assert [e["type"] for e in events] == [
        "leg.ringing",
        "leg.connected",
        "leg.muted",
        "leg.disconnected",
    ]
    # The same JSON as the webhook bodies, field for field (timestamps included).
    assert events == [dict(e) for e in hooks.events(leg_id=a_leg)]
    assert drain(stream) == []  # only A's events on A's stream


def test_app_id_filter(
    server_factory: ServerFactory,
    vsi_client_factory: VsiFactory,
    originate: Originate,
) -> None:
    a, b = server_factory(), server_factory()
    only_a = vsi_client_factory(a, "^tenant-a$")
    any_tenant = vsi_client_factory(a, "tenant")
    everything = vsi_client_factory(a)
    b_only_a = vsi_client_factory(b, "^tenant-a$")
    for client in (only_a, any_tenant, everything, b_only_a):
        assert client.recv() == {"type": "connected"}

    # The inbound side takes its tenant from the X-App-ID header.
    leg_a = originate(a, b.sip_uri("a"), app_id="tenant-a", headers={"X-App-ID": "tenant-a"})
    everything.wait_for("leg.ringing", leg_id=leg_a["id"])
    leg_b = originate(a, b.sip_uri("b"), app_id="tenant-b", headers={"X-App-ID": "tenant-b"})
    everything.wait_for("leg.ringing", leg_id=leg_b["id"])
    plain = originate(a, b.sip_uri("c"))
    everything.wait_for("leg.ringing", leg_id=plain["id"])
    for leg in (leg_b, plain, leg_a):  # leg_a last: its event closes the sequence
        assert a.api("POST", f"/legs/{leg['id']}/mute").status_code == 200
    everything.wait_for("leg.muted", leg_id=leg_a["id"])
    b.wait_for_legs(3, state="ringing")

    seen = drain(only_a)
    assert [(e["type"], e["leg_id"]) for e in seen] == [
        ("leg.ringing", leg_a["id"]),
        ("leg.muted", leg_a["id"]),
    ]
    assert all(e["app_id"] == "tenant-a" for e in seen)
    tenants = drain(any_tenant)
    assert {e["leg_id"] for e in tenants} == {leg_a["id"], leg_b["id"]}
    assert len(tenants) == 4
    inbound = drain(b_only_a)
    assert [e["type"] for e in inbound] == ["leg.ringing"]
    assert inbound[0]["app_id"] == "tenant-a" and inbound[0]["instance_id"] == b.instance_id
    assert inbound[0]["sip_headers"] == {"X-App-ID": "tenant-a"}


@pytest.mark.parametrize("pattern", ["(unclosed", "[z-a]", "x" * 201])
def test_invalid_app_id_pattern_is_refused(server: ServerProcess, pattern: str) -> None:
    with pytest.raises(Exception) as refused:
        VsiClient(vsi_url(server.http, pattern), timeout=3)
    assert "403" in str(refused.value) or "1008" in str(refused.value), refused.value
    raw = raw_vsi(server, "?app_id=" + pattern.replace("(", "%28").replace("[", "%5B"))
    try:
        assert raw.status != 101
    finally:
        raw.close()
    # The server is fine and still accepts good clients.
    with VsiClient(vsi_url(server.http, "^ok$")) as good:
        assert good.recv() == {"type": "connected"}


# -- commands -----------------------------------------------------------------------------


def test_leg_commands_match_rest_and_produce_events(
    server_factory: ServerFactory, vsi_client_factory: VsiFactory, originate: Originate
) -> None:
    a, b = server_factory(), server_factory()
    vsi = vsi_client_factory(a)
    b_events = vsi_client_factory(b)
    assert vsi.recv() == {"type": "connected"}
    a_leg, b_leg = call(a, b, originate)
    vsi.wait_for("leg.connected", leg_id=a_leg)

    assert vsi.command("list_legs") == a.api("GET", "/legs").json()
    assert [leg["id"] for leg in vsi.command("list_legs")] == [a_leg]
    assert vsi.command("get_leg", {"leg_id": a_leg}) == a.api("GET", f"/legs/{a_leg}").json()
    assert vsi.command("get_leg", {"id": a_leg})["state"] == "connected"

    reply = vsi.command_raw("mute_leg", {"leg_id": a_leg})
    assert reply["type"] == "mute_leg.result" and reply["request_id"]
    assert reply["data"] == {"instance_id": a.instance_id, "status": "muted"}
    muted = vsi.wait_for("leg.muted", leg_id=a_leg)
    assert muted["instance_id"] == a.instance_id
    assert a.get_leg(a_leg)["muted"] is True  # type: ignore[index]
    assert vsi.command("unmute_leg", {"leg_id": a_leg})["status"] == "unmuted"
    vsi.wait_for("leg.unmuted", leg_id=a_leg)

    assert vsi.command("hold_leg", {"leg_id": a_leg})["status"] == "held"
    vsi.wait_for("leg.hold", leg_id=a_leg)
    b_events.wait_for("leg.hold", leg_id=b_leg)
    with pytest.raises(VsiError) as again:
        vsi.command("hold_leg", {"leg_id": a_leg})
    assert again.value.code == 409
    assert vsi.command("unhold_leg", {"leg_id": a_leg})["status"] == "resumed"
    vsi.wait_for("leg.unhold", leg_id=a_leg)
    b_events.wait_for("leg.unhold", leg_id=b_leg)

    assert vsi.command("send_leg_dtmf", {"leg_id": a_leg, "digits": "7#"})["status"] == "sent"
    assert b_events.wait_for("dtmf.received", leg_id=b_leg)["digit"] == "7"
    assert b_events.wait_for("dtmf.received", leg_id=b_leg)["digit"] == "#"
    with pytest.raises(VsiError) as bad_digits:
        vsi.command("send_leg_dtmf", {"leg_id": a_leg, "digits": "x"})
    assert bad_digits.value.code == 400

    assert vsi.command("reject_leg_dtmf", {"leg_id": a_leg})["status"] == "rejected"
    assert a.get_leg(a_leg)["accept_dtmf"] is False  # type: ignore[index]
    assert vsi.command("accept_leg_dtmf", {"leg_id": a_leg})["status"] == "accepted"
    assert a.get_leg(a_leg)["accept_dtmf"] is True  # type: ignore[index]

    assert vsi.command("delete_leg", {"leg_id": a_leg})["status"] == "hung_up"
    end = vsi.wait_for("leg.disconnected", leg_id=a_leg)
    assert end["cdr"]["reason"] == "api_hangup"
    assert b_events.wait_for("leg.disconnected", leg_id=b_leg)["cdr"]["reason"] == "remote_bye"
    assert vsi.command("list_legs") == [] == a.api("GET", "/legs").json()


def test_command_errors_keep_the_socket_open(
    server: ServerProcess, vsi_client_factory: VsiFactory
) -> None:
    vsi = vsi_client_factory(server)
    assert vsi.recv() == {"type": "connected"}

    unknown_leg = vsi.command_raw("get_leg", {"leg_id": "no-such-leg"})
    assert unknown_leg["type"] == "error"
    assert unknown_leg["request_id"]  # echoed: command_raw matched it to this request
    assert unknown_leg["data"]["code"] == 404 and "no-such-leg" in unknown_leg["data"]["message"]
    for command in ("mute_leg", "delete_leg", "hold_leg"):
        assert vsi.command_raw(command, {"leg_id": "nope"})["data"]["code"] == 404
    assert vsi.command_raw("get_leg", {})["data"]["code"] == 400  # no leg_id

    unknown = vsi.command_raw("make_coffee", {})
    assert unknown["type"] == "error" and unknown["data"]["code"] == 400
    assert "make_coffee" in unknown["data"]["message"]

    # Room commands report the same errors as REST: unknown room 404, unknown leg 404.
    for room_command in ("get_room", "delete_room", "remove_leg_from_room"):
        reply = vsi.command_raw(room_command, {"room_id": "r1", "leg_id": "l1"})
        assert reply["type"] == "error" and reply["data"]["code"] == 404, reply
    reply = vsi.command_raw("add_leg_to_room", {"room_id": "r1", "leg_id": "l1"})
    assert reply["type"] == "error" and reply["data"]["code"] == 404, reply
    reply = vsi.command_raw("add_leg_to_room", {"room_id": "r1"})
    assert reply["type"] == "error" and reply["data"]["code"] == 400, reply

    # Malformed JSON: an error, and the connection keeps working.
    raw = raw_vsi(server)
    try:
        assert raw.recv_json() == {"type": "connected"}
        raw.send_text("{not json")
        error = raw.recv_json()
        assert error["type"] == "error" and error["data"]["code"] == 400
        assert error.get("request_id") is None
        raw.send_text("[1, 2]")
        assert raw.recv_json()["type"] == "error"
        raw._send(0x2, b"\x00\x01binary")  # a binary frame: told so, not disconnected
        error = raw.recv_json()
        assert error["type"] == "error" and "binary" in error["data"]["message"]
        raw.send_text(json.dumps({"type": "list_legs", "request_id": "after", "payload": {}}))
        assert raw.recv_json() == {"type": "list_legs.result", "request_id": "after", "data": []}
        # stop: the server closes the socket.
        raw.send_text(json.dumps({"type": "stop"}))
        with pytest.raises(ConnectionError):
            raw.recv_text(timeout=3)
    finally:
        raw.close()
    assert vsi.command("list_legs") == []  # the other client was never disturbed


# -- a slow client ------------------------------------------------------------------------

SLOW_EVENT_BYTES = 20_000
SLOW_ROUNDS = 600  # two events each: about 24 MB, well past the server's 256-event buffer


def test_slow_client_gets_a_drop_notice_and_stalls_nothing(
    server_factory: ServerFactory, vsi_client_factory: VsiFactory, originate: Originate
) -> None:
    a, b = server_factory(), server_factory()
    fast = vsi_client_factory(a)
    assert fast.recv() == {"type": "connected"}
    # Every event of this leg carries its app_id, so a long one makes big events: the kernel
    # send buffer on loopback grows to megabytes, and this fills it with a few hundred events.
    a_leg, _ = call(a, b, originate, app_id="t" * SLOW_EVENT_BYTES)
    fast.wait_for("leg.connected", leg_id=a_leg)
    slow = raw_vsi(a, rcvbuf=2048)
    try:
        assert slow.recv_json() == {"type": "connected"}
        # From here on the slow client reads nothing. Every event below is unique (its
        # playback_id), so the order the slow client finally sees can be checked exactly.
        produced: list[tuple[str, str]] = []
        latencies: list[float] = []
        for _ in range(SLOW_ROUNDS):
            started = time.perf_counter()
            response = a.api("POST", f"/legs/{a_leg}/play", {"tone": "us_dial"})
            playback = response.json()["playback_id"]
            a.api("DELETE", f"/legs/{a_leg}/play/{playback}")
            latencies.append(time.perf_counter() - started)
            produced += [("playback.started", playback), ("playback.finished", playback)]
        assert max(latencies) < 0.5, f"API stalled: {max(latencies):.2f}s"

        # The other client got every event in order, and no drop notice.
        fast_seen = [(m["type"], m.get("playback_id")) for m in drain(fast)]
        assert fast_seen == produced

        # Now the slow client reads its backlog.
        messages: list[dict[str, Any]] = []
        accounted = 0
        while accounted < len(produced):
            message = slow.recv_json()
            messages.append(message)
            accounted += message["count"] if message["type"] == "events_dropped" else 1
        notices = [m for m in messages if m["type"] == "events_dropped"]
        assert notices, "the slow client lost nothing: make it slower"
        dropped = sum(n["count"] for n in notices)
        assert dropped > 0 and accounted == len(produced)
        # Replay the stream: the events that did arrive come in the order they were produced,
        # every gap was announced no later than the first event after it, and the counts are
        # exact.
        index_of = {event: n for n, event in enumerate(produced)}
        announced = skipped = 0
        expected_next = 0
        for i, message in enumerate(messages):
            if message["type"] == "events_dropped":
                # A notice stands where its gap is: before the next event, or last when the
                # flood ended with drops; never two in a row.
                assert i + 1 == len(messages) or messages[i + 1]["type"] != "events_dropped"
                announced += message["count"]
                continue
            index = index_of[(message["type"], message["playback_id"])]
            assert index >= expected_next, f"message {i}: event #{index} out of order"
            skipped += index - expected_next
            assert skipped <= announced, f"message {i}: events lost without a notice"
            expected_next = index + 1
        skipped += len(produced) - expected_next
        assert skipped == announced == dropped
        # The slow client's connection still works after the flood.
        slow.send_text(json.dumps({"type": "list_legs", "request_id": "x", "payload": {}}))
        assert slow.recv_json()["type"] == "list_legs.result"
    finally:
        slow.close()
    assert a.api("GET", "/legs").status_code == 200


def test_server_pings_with_increasing_event_ids(
    server_factory: ServerFactory, vsi_client_factory: Callable[..., VsiClient]
) -> None:
    server = server_factory(VSI_PING_INTERVAL="0.3")
    client = vsi_client_factory(server, keep_pings=True)
    assert client.recv()["type"] == "connected"
    pings = [client.wait_for("ping", timeout=3) for _ in range(3)]
    assert [p["event_id"] for p in pings] == [1, 2, 3]
    # The client answered each ping (the helper sends pong); the socket is still open.
    assert not client.is_closed


@pytest.mark.media_timing
def test_the_first_connections_do_not_hold_up_the_media_clock(server: ServerProcess) -> None:
    """FastAPI builds each router's routes the first time it matches a request of each kind
    against them; unwarmed, the first VSI connection held the clock 47-68 ms (measured). The
    server's warm-up walks every route for HTTP and WebSocket before the clock starts."""
    time.sleep(0.5)
    with VsiClient(vsi_url(server.http)):
        assert server.api("GET", "/rooms").status_code == 200
        assert server.api("GET", "/legs/nope").status_code == 404
        time.sleep(0.5)
    late = [line for line in server.log_text().splitlines() if "media clock ran" in line]
    assert late == [], late
