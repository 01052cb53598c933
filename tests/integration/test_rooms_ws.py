"""WebSocket room participants (``GET /v1/rooms/{id}/ws``) with real phones in the room.

A WebSocket peer here is a real client (the ``websockets`` package) that sends a sine in
20 ms frames paced in real time and keeps every frame it receives with its arrival time, so
what it heard can be analysed like a recording. Misbehaving clients (one that stops reading,
one whose TCP connection dies) are raw sockets.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.helpers.baresip import Baresip, BaresipFactory
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver

RATE = 16000
FRAME_SAMPLES = 320
FRAME_BYTES = 640
FRAME_S = 0.02
PREBUFFER = 3  # frames sent ahead, so that scheduling jitter never starves the room


# -- a WebSocket participant ------------------------------------------------------------


class WsPeer:
    """One room participant over WebSocket: records what it hears, optionally sends a sine."""

    def __init__(self, server: ServerProcess, room_id: str, tone_hz: float | None = None) -> None:
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(f"{server.ws}/v1/rooms/{room_id}/ws", proxy=None, open_timeout=5)
        )
        self.hello: dict[str, Any] = json.loads(self.ws.recv(timeout=5))
        self.frames: list[tuple[float, bytes]] = []  # (arrival, raw payload)
        self.messages: list[dict[str, Any]] = []  # everything that is not audio
        self.closed = threading.Event()
        self.tone_hz = tone_hz
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._read, daemon=True)]
        if tone_hz is not None:
            self._threads.append(threading.Thread(target=self._talk, daemon=True))
        for thread in self._threads:
            thread.start()

    @property
    def id(self) -> str:
        return str(self.hello.get("participant_id"))

    def _read(self) -> None:
        try:
            while True:
                raw = self.ws.recv()
                now = time.monotonic()
                message = json.loads(raw)
                if "audio" in message:
                    with self._lock:
                        self.frames.append((now, base64.b64decode(message["audio"])))
                    continue
                with self._lock:
                    self.messages.append(message)
                if message.get("type") == "ping":
                    self.send({"type": "pong", "event_id": message.get("event_id")})
        except (ConnectionClosed, OSError):
            pass
        finally:
            self.closed.set()

    def _talk(self) -> None:
        assert self.tone_hz is not None
        start = time.monotonic()
        n = np.arange(FRAME_SAMPLES)
        k = 0
        while not self._stop.is_set():
            samples = 0.3 * np.sin(2 * np.pi * self.tone_hz * (k * FRAME_SAMPLES + n) / RATE)
            pcm = np.round(samples * 32767).astype("<i2").tobytes()
            try:
                self.send({"audio": base64.b64encode(pcm).decode()})
            except (ConnectionClosed, OSError):
                return
            k += 1
            delay = start + (k - PREBUFFER) * FRAME_S - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def send(self, message: dict[str, Any] | str) -> None:
        self.ws.send(message if isinstance(message, str) else json.dumps(message))

    def heard(self) -> tuple[np.ndarray, np.ndarray]:
        """(arrival times, frames as a float array of shape (n, 320))."""
        with self._lock:
            frames = list(self.frames)
        assert frames, "the WebSocket peer received no audio"
        assert all(len(raw) == FRAME_BYTES for _, raw in frames), "a frame was not 640 bytes"
        times = np.array([t for t, _ in frames])
        pcm = np.frombuffer(b"".join(raw for _, raw in frames), dtype="<i2")
        return times, pcm.reshape(-1, FRAME_SAMPLES).astype(np.float64) / 32768.0

    def stop_talking(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self._stack.close()
        for thread in self._threads:
            thread.join(timeout=3)


@pytest.fixture
def ws_peer() -> Iterator[Callable[..., WsPeer]]:
    peers: list[WsPeer] = []

    def make(server: ServerProcess, room_id: str, tone_hz: float | None = None) -> WsPeer:
        peer = WsPeer(server, room_id, tone_hz)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


# -- raw clients that misbehave -----------------------------------------------------------


def raw_ws(server: ServerProcess, room_id: str, rcvbuf: int | None = None) -> socket.socket:
    """A WebSocket handshake over a plain socket, which then reads nothing more."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.http_port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/rooms/{room_id}/ws HTTP/1.1\r\nHost: 127.0.0.1:{server.http_port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    sock.settimeout(5)
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "connection closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def ws_ids(server: ServerProcess, room_id: str) -> set[str]:
    response = server.api("GET", f"/rooms/{room_id}")
    assert response.status_code == 200, response.text
    return set(response.json()["ws_participants"])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> float:
    """Poll until ``check()``; returns how long it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


# -- analysis ---------------------------------------------------------------------------


def db(amplitude: float) -> float:
    return 20 * math.log10(max(float(amplitude), 1e-9))


def amplitude(frames: np.ndarray, rate: int, freq: float) -> np.ndarray:
    """Hann-windowed amplitude of ``freq`` in each row of ``frames``."""
    n = frames.shape[1]
    window = np.hanning(n)
    basis = window * np.exp(-2j * np.pi * freq * np.arange(n) / rate)
    result: np.ndarray = 2.0 * np.abs(frames @ basis) / window.sum()
    return result


def phone_track(phone: Baresip, freq: float) -> np.ndarray:
    """Amplitude of ``freq`` in each 20 ms of what the phone heard."""
    rate, heard = phone.heard()
    n = int(rate * FRAME_S)
    return amplitude(heard[: heard.size - heard.size % n].reshape(-1, n), rate, freq)


def tick_times(arrivals: np.ndarray) -> np.ndarray:
    """The media tick each of a WebSocket peer's frames came from, on the test's clock.

    One frame per 20 ms tick: frame k left at start + k * 20 ms; the start is the median of
    the arrival times minus k * 20 ms, which takes the arrival jitter out.
    """
    k = np.arange(arrivals.size) * FRAME_S
    assert np.ptp(arrivals - k) < 0.5, "the peer did not get one frame per tick"
    result: np.ndarray = np.median(arrivals - k) + k
    return result


def longest_gap_ms(track: np.ndarray, floor: float = 0.1) -> float:
    longest = run = 0
    for value in track:
        run = run + 1 if value < floor else 0
        longest = max(longest, run)
    return longest * FRAME_S * 1000


def connected_phone(
    server: ServerProcess,
    hooks: WebhookReceiver,
    factory: BaresipFactory,
    user: str,
    hz: int,
    room_id: str,
) -> tuple[Baresip, str, float]:
    """A baresip phone playing ``hz``, called into ``room_id``: (phone, leg id, answer time)."""
    phone = factory(user, sine_hz=hz, codecs=["PCMU"]).start()
    response = server.api("POST", "/legs", {"type": "sip", "uri": phone.uri, "room_id": room_id})
    assert response.status_code == 201, response.text
    leg = response.json()["id"]
    answered = hooks.wait_for("leg.connected", leg_id=leg).request.monotonic
    hooks.wait_for("leg.joined_room", leg_id=leg, room_id=room_id)
    return phone, leg, answered


# -- tests ------------------------------------------------------------------------------


@pytest.mark.media_timing
def test_ws_participant_hears_and_is_heard(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    ws_peer: Callable[..., WsPeer],
) -> None:
    server = hooked_server
    assert server.api("POST", "/rooms", {"id": "mix"}).status_code == 201
    phone, leg, answered = connected_phone(
        server, webhook_receiver, baresip_factory, "ph", 1100, "mix"
    )
    peer = ws_peer(server, "mix", tone_hz=700)
    assert peer.hello["type"] == "connected"
    assert peer.id.startswith("ws-") and len(peer.id) > 3
    assert {k: v for k, v in peer.hello.items() if k != "participant_id"} == {
        "type": "connected",
        "sample_rate": 16000,
        "format": "pcm_s16le",
    }
    room = server.api("GET", "/rooms/mix").json()
    assert room["ws_participants"] == [peer.id]
    assert [p["id"] for p in room["participants"]] == [leg]
    t_join = time.monotonic()
    time.sleep(2.0)
    t_stop = time.monotonic()
    peer.send({"type": "stop"})
    assert peer.closed.wait(3), "the server did not close the socket after stop"
    wait_until(lambda: not ws_ids(server, "mix"), "the participant to leave")
    assert [p["id"] for p in server.api("GET", "/rooms/mix").json()["participants"]] == [leg]
    server.api("DELETE", "/rooms/mix")
    phone.wait_closed()

    times, frames = peer.heard()
    # One frame per 20 ms, each 640 bytes.
    span_s = times[-1] - times[0]
    assert abs(len(frames) - (span_s / FRAME_S + 1)) < 10, (len(frames), span_s)
    steady = frames[(times > t_join + 0.4) & (times < t_stop)]
    assert len(steady) > 60
    hears_phone = amplitude(steady, RATE, 1100)
    hears_self = amplitude(steady, RATE, 700)
    assert db(hears_phone.min()) > -20, "the WebSocket peer should hear the phone"
    assert db(hears_self.max()) < -50, "the WebSocket peer hears itself"
    # The phone hears the peer's 700 Hz (and has nothing else to hear).
    track = phone_track(phone, 700)
    piece = track[int((t_join - answered + 0.4) / FRAME_S) : int((t_stop - answered) / FRAME_S)]
    assert piece.size > 60
    assert longest_gap_ms(piece) <= 20, "the phone should hear the WebSocket peer throughout"
    assert db(phone_track(phone, 1100).max()) < -50, "the phone hears itself"


def test_ws_unknown_room_is_404_before_upgrade(server: ServerProcess) -> None:
    with pytest.raises(InvalidStatus) as caught:
        connect(f"{server.ws}/v1/rooms/no-such-room/ws", proxy=None, open_timeout=5)
    response = caught.value.response
    assert response.status_code == 404
    body = json.loads(bytes(response.body or b"{}"))
    assert body.get("instance_id") == server.instance_id and body.get("error")
    assert server.api("GET", "/rooms").json() == []  # no room made on the way


def test_ws_bad_frames_and_ping_pong(
    server_factory: ServerFactory, ws_peer: Callable[..., WsPeer]
) -> None:
    server = server_factory(VSI_PING_INTERVAL="0.3")
    assert server.api("POST", "/rooms", {"id": "p"}).status_code == 201
    peer = ws_peer(server, "p")
    for bad in (
        {"audio": "@@@ not base64 @@@"},
        {"audio": base64.b64encode(b"\x00" * 100).decode()},
        {"audio": base64.b64encode(b"\x00" * 641).decode()},
        "this is not JSON",
    ):
        peer.send(bad if isinstance(bad, str) else json.dumps(bad))
    time.sleep(1.0)
    errors = [m for m in peer.messages if m.get("type") == "error"]
    assert len(errors) == 4, peer.messages
    assert all(isinstance(m.get("error"), str) and m["error"] for m in errors)
    # Still connected, still in the room, still receiving and accepted as sending.
    assert not peer.closed.is_set()
    assert ws_ids(server, "p") == {peer.id}
    count = len(peer.frames)
    silence = base64.b64encode(b"\x00" * FRAME_BYTES).decode()
    for _ in range(5):
        peer.send({"audio": silence})
    time.sleep(0.3)
    assert len(peer.frames) > count + 5
    assert len([m for m in peer.messages if m.get("type") == "error"]) == 4
    # Pings every 0.3 s, numbered, answered with pongs (the peer does that) without trouble.
    pings = [m for m in peer.messages if m.get("type") == "ping"]
    assert len(pings) >= 3, peer.messages
    assert [m["event_id"] for m in pings] == list(
        range(pings[0]["event_id"], pings[-1]["event_id"] + 1)
    )
    assert all(isinstance(m["event_id"], int) for m in pings)
    assert not peer.closed.is_set()
    peer.send({"type": "stop"})
    assert peer.closed.wait(3)
    wait_until(lambda: not ws_ids(server, "p"), "the participant to leave")
    assert server.api("GET", "/rooms/p").status_code == 200  # an explicit room stays


@pytest.mark.media_timing
def test_slow_ws_client_is_dropped_without_disturbing_the_room(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    ws_peer: Callable[..., WsPeer],
) -> None:
    server = hooked_server
    assert server.api("POST", "/rooms", {"id": "slow"}).status_code == 201
    phone, _, answered = connected_phone(
        server, webhook_receiver, baresip_factory, "ph", 1100, "slow"
    )
    talker = ws_peer(server, "slow", tone_hz=700)
    time.sleep(0.5)
    t_slow = time.monotonic()
    sluggard = raw_ws(server, "slow", rcvbuf=4096)  # never reads again
    wait_until(lambda: len(ws_ids(server, "slow")) == 2, "the slow client to join")
    took = wait_until(lambda: ws_ids(server, "slow") == {talker.id}, "the drop", timeout=8)
    print(f"slow client dropped after {took:.1f}s")
    time.sleep(0.5)
    t_end = time.monotonic()
    sluggard.close()
    assert not talker.closed.is_set()
    times, frames = talker.heard()
    server.api("DELETE", "/rooms/slow")
    phone.wait_closed()

    # The phone heard the WebSocket talker without a gap all along.
    track = phone_track(phone, 700)
    piece = track[int((t_slow - answered) / FRAME_S) : int((t_end - answered) / FRAME_S)]
    assert piece.size > 100
    assert longest_gap_ms(piece) <= 20, "the room was disturbed by the slow client"
    # And so did the talker hear the phone.
    during = frames[(times > t_slow) & (times < t_end)]
    assert longest_gap_ms(amplitude(during, RATE, 1100)) <= 20


def test_dead_ws_client_is_removed(server: ServerProcess, ws_peer: Callable[..., WsPeer]) -> None:
    assert server.api("POST", "/rooms", {"id": "dead"}).status_code == 201
    alive = ws_peer(server, "dead")
    doomed = raw_ws(server, "dead")
    wait_until(lambda: len(ws_ids(server, "dead")) == 2, "both to join")
    # Reset the connection: no close frame, no FIN.
    doomed.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    doomed.close()
    wait_until(lambda: ws_ids(server, "dead") == {alive.id}, "the dead client to be removed")
    count = len(alive.frames)
    time.sleep(0.3)
    assert len(alive.frames) >= count + 10, "the room stopped for the others"
    assert not alive.closed.is_set()
    # Deleting the room closes the sockets of its WebSocket participants.
    assert server.api("DELETE", "/rooms/dead").status_code == 200
    assert alive.closed.wait(3), "the participant's socket stayed open after the room went"


def test_move_keeps_audio_flowing(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    ws_peer: Callable[..., WsPeer],
) -> None:
    """A phone moved from room one (with a 500 Hz WebSocket talker) to room two (1300 Hz).

    Each WebSocket peer gets one frame per media tick; its frames' arrival times on the test's
    clock, smoothed over the whole stream, date each frame's tick. The last frame of the moved
    phone in room one and its first in room two are at most one lost frame apart.
    """
    server, hooks = hooked_server, webhook_receiver
    for room_id in ("one", "two"):
        assert server.api("POST", "/rooms", {"id": room_id}).status_code == 201
    one = ws_peer(server, "one", tone_hz=500)
    two = ws_peer(server, "two", tone_hz=1300)
    phone, leg, answered = connected_phone(server, hooks, baresip_factory, "mover", 900, "one")
    time.sleep(1.2)
    mark = hooks.mark()
    t_move = time.monotonic()
    response = server.api("POST", "/rooms/two/legs", {"leg_id": leg})
    t_moved = time.monotonic()
    assert response.json() == {
        "instance_id": server.instance_id,
        "status": "moved",
        "from": "one",
        "to": "two",
    }
    time.sleep(1.2)
    t_end = time.monotonic()
    server.api("DELETE", f"/legs/{leg}")
    phone.wait_closed()
    types = [(e.type, e.get("room_id")) for e in hooks.events(leg_id=leg, since=mark)]
    assert types[:2] == [("leg.left_room", "one"), ("leg.joined_room", "two")]

    # What the others heard of the phone.
    t1, f1 = one.heard()
    t2, f2 = two.heard()
    in_one = amplitude(f1, RATE, 900) > 0.1
    in_two = amplitude(f2, RATE, 900) > 0.1
    assert in_one[(t1 > t_move - 1.0) & (t1 < t_move)].all(), "room one did not hear the phone"
    assert in_two[(t2 > t_moved + 0.1) & (t2 < t_end)].all(), "room two lost the phone"
    assert not in_one[t1 > t_moved + 0.1].any(), "room one still hears the moved phone"
    assert not in_two[t2 < t_move].any()
    ticks1, ticks2 = tick_times(t1), tick_times(t2)
    last_in_one = ticks1[in_one].max()
    first_in_two = ticks2[in_two].min()
    gap_ms = (first_in_two - last_in_one - FRAME_S) * 1000
    print(f"moved: {gap_ms:.1f} ms between the last frame in room one and the first in two")
    assert gap_ms < 30, f"the move lost {gap_ms:.0f} ms of the phone's audio (over one frame)"
    assert t_move - 0.05 < first_in_two < t_moved + 0.1

    # What the moved phone heard: room one's tone, then room two's, within ~100 ms.
    old, new = phone_track(phone, 500) > 0.1, phone_track(phone, 1300) > 0.1
    last_old = int(np.flatnonzero(old).max())
    first_new = int(np.flatnonzero(new).min())
    assert (first_new - last_old - 1) * FRAME_S * 1000 <= 40, (last_old, first_new)
    assert not old[first_new + 1 :].any() and not new[:last_old].any()
    switch_s = first_new * FRAME_S
    assert t_move - answered - 0.05 < switch_s < t_moved - answered + 0.25, (
        f"the phone heard the new room {switch_s - (t_move - answered):.2f}s after the move"
    )
    after = new[first_new : int((t_end - answered - 0.1) / FRAME_S)]
    assert after.size > 40 and after.all(), "the phone did not keep hearing room two"
