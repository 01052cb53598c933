"""The rooms REST API, its events, webhooks, VSI commands and metrics, end to end.

Two server instances call each other over loopback SIP: B's inbound legs (and A's outbound
ones) are put into rooms. The last test puts real baresip phones in a room to check that the
AddLegRequest flags hold from the very first mixed frame and that a held leg or a leg playing
its own audio keeps the room running.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest

from tests.helpers.audio import band_energy_db
from tests.helpers.baresip import Baresip, BaresipFactory
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.vsi import VsiClient, VsiError
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import disconnected, pair

LEG_FIELDS = {"id", "type", "state", "room_id", "muted", "deaf", "accept_dtmf", "held"}


# -- helpers ------------------------------------------------------------------------------


def active_rooms(server: ServerProcess) -> float:
    for line in server.api("GET", "/metrics").text.splitlines():
        if line.startswith("callboard_active_rooms "):
            return float(line.split()[1])
    pytest.fail("no callboard_active_rooms in /metrics")


def call_in(
    a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver, **body: Any
) -> tuple[str, str]:
    """A calls B; returns (A's outbound leg, B's inbound leg, still ringing)."""
    mark = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob"), **body})
    assert response.status_code == 201, response.text
    ringing = hooks.wait_for("leg.ringing", since=mark, instance_id=b.instance_id)
    return response.json()["id"], ringing["leg_id"]


def add(server: ServerProcess, room_id: str, leg_id: str, **flags: Any) -> dict[str, Any]:
    response = server.api("POST", f"/rooms/{room_id}/legs", {"leg_id": leg_id, **flags})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def room(server: ServerProcess, room_id: str) -> dict[str, Any]:
    response = server.api("GET", f"/rooms/{room_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def member_ids(server: ServerProcess, room_id: str) -> set[str]:
    return {p["id"] for p in room(server, room_id)["participants"]}


def error_of(response: Any, status: int) -> str:
    """Assert an error answer (status, instance_id, a non-empty message) and return it."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body = response.json()
    assert isinstance(body.get("instance_id"), str) and body["instance_id"]
    assert isinstance(body.get("error"), str) and body["error"], body
    return str(body["error"])


def wait_until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# -- CRUD, errors, room events, metrics, VSI ------------------------------------------------


def test_create_list_get_delete_and_errors(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    vsi_client_factory: Callable[..., VsiClient],
) -> None:
    server, hooks = hooked_server, webhook_receiver
    tenant = vsi_client_factory(server, app_id="^tenant-1$")
    assert tenant.recv()["type"] == "connected"
    assert active_rooms(server) == 0

    # Without a body and with an empty one: a UUID id.
    response = server.api("POST", "/rooms")
    assert response.status_code == 201, response.text
    auto = response.json()
    assert auto["instance_id"] == server.instance_id
    assert str(uuid.UUID(auto["id"])) == auto["id"]
    assert auto["participants"] == []
    response = server.api("POST", "/rooms", {})
    assert response.status_code == 201, response.text
    other = response.json()
    assert other["id"] != auto["id"]

    response = server.api("POST", "/rooms", {"id": "sales", "app_id": "tenant-1"})
    assert response.status_code == 201, response.text
    sales = response.json()
    assert sales["id"] == "sales" and sales["participants"] == []
    assert sales["instance_id"] == server.instance_id

    assert "sales" in error_of(server.api("POST", "/rooms", {"id": "sales"}), 409)
    assert room(server, "sales")["participants"] == []  # the duplicate changed nothing
    for bad in ({"id": ""}, {"id": "a/b"}, {"id": 42}, {"id": "x" * 5000}, {"id": ["r"]}):
        error_of(server.api("POST", "/rooms", bad), 400)
    error_of(server.api("POST", "/rooms", {"id": "w", "webhook_url": "ftp://x/y"}), 400)
    error_of(server.api("POST", "/rooms", content=b"{not json"), 400)
    assert server.api("GET", "/rooms/w").status_code == 404  # nothing half-created

    listed = server.api("GET", "/rooms").json()
    assert sorted(r["id"] for r in listed) == sorted([auto["id"], other["id"], "sales"])
    assert all(r["instance_id"] == server.instance_id for r in listed)
    assert room(server, "sales") == sales
    assert room(server, auto["id"]) == auto
    assert active_rooms(server) == 3

    # Unknown room, unknown leg, malformed AddLegRequest.
    assert "nope" in error_of(server.api("GET", "/rooms/nope"), 404)
    error_of(server.api("DELETE", "/rooms/nope"), 404)
    error_of(server.api("DELETE", "/rooms/sales/legs/no-such-leg"), 404)
    assert "no-such-leg" in error_of(
        server.api("POST", "/rooms/sales/legs", {"leg_id": "no-such-leg"}), 404
    )
    for bad in ({}, {"leg_id": 5}, {"leg_id": ""}, {"leg_id": "x", "mute": "yes"}):
        error_of(server.api("POST", "/rooms/sales/legs", bad), 400)
    assert server.api("GET", "/rooms/no-such-leg").status_code == 404

    created = {e["room_id"]: e for e in hooks.wait_for_count(3, "room.created")}
    assert set(created) == {auto["id"], other["id"], "sales"}
    assert created["sales"]["app_id"] == "tenant-1"
    assert created["sales"]["instance_id"] == server.instance_id
    assert "app_id" not in created[auto["id"]]

    response = server.api("DELETE", "/rooms/sales")
    assert response.status_code == 200, response.text
    assert response.json() == {"instance_id": server.instance_id, "status": "deleted"}
    deleted = hooks.wait_for("room.deleted", room_id="sales")
    assert deleted["app_id"] == "tenant-1"
    assert server.api("GET", "/rooms/sales").status_code == 404
    error_of(server.api("DELETE", "/rooms/sales"), 404)
    assert active_rooms(server) == 2
    # The id is free again.
    assert server.api("POST", "/rooms", {"id": "sales"}).status_code == 201
    assert server.api("DELETE", "/rooms/sales").status_code == 200

    # The VSI filtered on app_id saw this room's events and no other room's.
    seen = [tenant.wait_for("room.created", room_id="sales"), tenant.wait_for("room.deleted")]
    assert [e["app_id"] for e in seen] == ["tenant-1", "tenant-1"]
    with pytest.raises(TimeoutError):
        while True:
            message = tenant.recv(timeout=0.3)
            assert message.get("app_id") == "tenant-1", message


def test_vsi_room_commands_equal_rest(
    server: ServerProcess, vsi_client_factory: Callable[..., VsiClient]
) -> None:
    vsi = vsi_client_factory(server)
    assert vsi.recv()["type"] == "connected"
    made = vsi.command("create_room", {"id": "vsi-room"})
    assert made == {
        "instance_id": server.instance_id,
        "id": "vsi-room",
        "sample_rate": 16000,
        "participants": [],
        **({"ws_participants": []} if "ws_participants" in made else {}),
    }
    assert made == room(server, "vsi-room")
    plain = vsi.command("create_room", {})
    assert str(uuid.UUID(plain["id"])) == plain["id"]
    assert sorted(vsi.command("list_rooms"), key=lambda r: r["id"]) == sorted(
        server.api("GET", "/rooms").json(), key=lambda r: r["id"]
    )
    assert vsi.command("get_room", {"room_id": plain["id"]}) == room(server, plain["id"])
    for command, payload, code in (
        ("get_room", {"room_id": "missing"}, 404),
        ("delete_room", {"room_id": "missing"}, 404),
        ("create_room", {"id": "vsi-room"}, 409),
        ("create_room", {"id": "a/b"}, 400),
        ("add_leg_to_room", {"room_id": "vsi-room", "leg_id": "missing"}, 404),
        ("add_leg_to_room", {"room_id": "vsi-room"}, 400),
        ("remove_leg_from_room", {"room_id": "vsi-room", "leg_id": "missing"}, 404),
    ):
        with pytest.raises(VsiError) as caught:
            vsi.command(command, payload)
        assert caught.value.code == code, (command, caught.value.reply)
        assert caught.value.message
    assert active_rooms(server) == 2
    assert vsi.command("delete_room", {"room_id": "vsi-room"}) == {
        "instance_id": server.instance_id,
        "status": "deleted",
    }
    assert server.api("GET", "/rooms/vsi-room").status_code == 404
    assert active_rooms(server) == 1


# -- membership with real calls ------------------------------------------------------------


def test_add_move_remove_hangup_and_delete(
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    vsi_client_factory: Callable[..., VsiClient],
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    vsi = vsi_client_factory(b)
    assert vsi.recv()["type"] == "connected"
    a1, b1 = call_in(a, b, hooks)
    a2, b2 = call_in(a, b, hooks)
    assert b.api("POST", "/rooms", {"id": "r1"}).status_code == 201
    assert active_rooms(b) == 1

    # A ringing inbound leg is answered, then joins.
    assert add(b, "r1", b1) == {"instance_id": b.instance_id, "status": "added"}
    hooks.wait_for("leg.connected", leg_id=a1)
    hooks.wait_for("leg.joined_room", leg_id=b1, room_id="r1")
    assert hooks.types(leg_id=b1) == ["leg.ringing", "leg.connected", "leg.joined_room"]
    listed = room(b, "r1")["participants"]
    assert len(listed) == 1
    assert set(listed[0]) >= LEG_FIELDS
    assert listed[0] == b.get_leg(b1)
    assert listed[0]["state"] == "connected" and listed[0]["room_id"] == "r1"
    assert listed[0]["type"] == "sip_inbound"

    assert "already" in error_of(b.api("POST", "/rooms/r1/legs", {"leg_id": b1}), 409)
    assert member_ids(b, "r1") == {b1}

    # Into a room that does not exist yet (auto-created), flags applied.
    mark = hooks.mark()
    assert add(b, "r2", b2, mute=True, deaf=True, accept_dtmf=False)["status"] == "added"
    hooks.wait_for("room.created", since=mark, room_id="r2")
    hooks.wait_for("leg.joined_room", leg_id=b2, room_id="r2")
    view = b.get_leg(b2)
    assert view is not None
    assert (view["muted"], view["deaf"], view["accept_dtmf"]) == (True, True, False)
    assert view["state"] == "connected" and view["room_id"] == "r2"
    assert active_rooms(b) == 2

    # A move: left_room then joined_room, in at most one room at any time.
    mark = hooks.mark()
    moved = add(b, "r2", b1)
    assert moved == {"instance_id": b.instance_id, "status": "moved", "from": "r1", "to": "r2"}
    hooks.wait_for("leg.joined_room", since=mark, leg_id=b1, room_id="r2")
    moves = [(e.type, e["room_id"]) for e in hooks.events(leg_id=b1, since=mark)]
    assert moves == [("leg.left_room", "r1"), ("leg.joined_room", "r2")]
    assert member_ids(b, "r1") == set()
    assert member_ids(b, "r2") == {b1, b2}
    assert b.get_leg(b1)["room_id"] == "r2"  # type: ignore[index]
    assert [r["id"] for r in b.api("GET", "/rooms").json() if b1 in str(r)] == ["r2"]
    # A leg moved without flags keeps its own; the other one's flags are untouched.
    assert b.get_leg(b1)["muted"] is False  # type: ignore[index]

    # Removing keeps the call up; removing again is a 404.
    mark = hooks.mark()
    removed = vsi.command("remove_leg_from_room", {"room_id": "r2", "leg_id": b2})
    assert removed == {"instance_id": b.instance_id, "status": "removed"}
    hooks.wait_for("leg.left_room", since=mark, leg_id=b2, room_id="r2")
    view = b.get_leg(b2)
    assert view is not None and view["state"] == "connected" and not view["room_id"]
    error_of(b.api("DELETE", f"/rooms/r2/legs/{b2}"), 404)
    # Last participant of the auto-created room leaves: the room goes; r1 (explicit) stays.
    response = b.api("DELETE", f"/rooms/r2/legs/{b1}")
    assert response.json() == {"instance_id": b.instance_id, "status": "removed"}
    hooks.wait_for("room.deleted", since=mark, room_id="r2")
    assert b.api("GET", "/rooms/r2").status_code == 404
    assert room(b, "r1")["participants"] == []
    assert active_rooms(b) == 1
    assert hooks.events("room.deleted", room_id="r1") == []
    for leg in (a1, a2, b1, b2):
        assert hooks.events("leg.disconnected", leg_id=leg) == []

    # The VSI command answers like REST.
    mark = hooks.mark()
    assert vsi.command("add_leg_to_room", {"room_id": "r1", "leg_id": b1}) == {
        "instance_id": b.instance_id,
        "status": "added",
    }
    assert add(b, "r1", b2)["status"] == "added"
    assert vsi.command("get_room", {"room_id": "r1"}) == room(b, "r1")
    assert member_ids(b, "r1") == {b1, b2}
    for leg in (b1, b2):
        hooks.wait_for("leg.joined_room", since=mark, leg_id=leg, room_id="r1")

    # The far end hangs up a leg that is in a room.
    mark = hooks.mark()
    a.api("DELETE", f"/legs/{a1}")
    assert disconnected(hooks, b1)["cdr"]["reason"] == "remote_bye"
    assert [e.type for e in hooks.events(leg_id=b1, since=mark)] == [
        "leg.left_room",
        "leg.disconnected",
    ]
    assert hooks.events("leg.left_room", leg_id=b1, since=mark)[0]["room_id"] == "r1"
    assert member_ids(b, "r1") == {b2}
    # A hung-up leg cannot be added.
    response = b.api("POST", "/rooms/r1/legs", {"leg_id": b1})
    message = error_of(response, 404 if response.status_code == 404 else 409)
    assert b1 in message
    assert member_ids(b, "r1") == {b2}

    # Deleting the room hangs up everyone in it.
    mark = hooks.mark()
    assert b.api("DELETE", "/rooms/r1").json() == {
        "instance_id": b.instance_id,
        "status": "deleted",
    }
    assert disconnected(hooks, b2)["cdr"]["reason"] == "api_hangup"
    assert disconnected(hooks, a2)["cdr"]["reason"] == "remote_bye"
    hooks.wait_for("room.deleted", since=mark, room_id="r1")
    assert b.api("GET", "/legs").json() == []
    assert b.api("GET", "/rooms").json() == []
    assert active_rooms(b) == 0


def test_room_id_on_originate_auto_creates_and_joins(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    # Joins when connected.
    a1, b1 = call_in(a, b, hooks, room_id="auto-a", app_id="t-9")
    assert a.get_leg(a1)["room_id"] == ""  # type: ignore[index]
    b.api("POST", f"/legs/{b1}/answer")
    joined = hooks.wait_for("leg.joined_room", leg_id=a1)
    assert joined["room_id"] == "auto-a" and joined["app_id"] == "t-9"
    created = hooks.wait_for("room.created", room_id="auto-a")
    assert created["instance_id"] == a.instance_id
    assert created["app_id"] == "t-9"  # an auto-created room inherits the leg's app_id
    assert hooks.types(leg_id=a1) == ["leg.ringing", "leg.connected", "leg.joined_room"]
    assert member_ids(a, "auto-a") == {a1}
    assert a.get_leg(a1)["room_id"] == "auto-a"  # type: ignore[index]

    # Joins at early media already.
    a2, b2 = call_in(a, b, hooks, room_id="auto-a")
    b.api("POST", f"/legs/{b2}/early-media")
    hooks.wait_for("leg.joined_room", leg_id=a2, room_id="auto-a")
    assert hooks.types(leg_id=a2) == ["leg.ringing", "leg.early_media", "leg.joined_room"]
    listed = {p["id"]: p for p in room(a, "auto-a")["participants"]}
    assert set(listed) == {a1, a2}
    assert listed[a2]["state"] == "early_media"

    # An explicitly created room named on originate is joined (and kept when empty).
    assert a.api("POST", "/rooms", {"id": "kept"}).status_code == 201
    a3, b3 = call_in(a, b, hooks, room_id="kept")
    b.api("POST", f"/legs/{b3}/answer")
    hooks.wait_for("leg.joined_room", leg_id=a3, room_id="kept")
    assert len(hooks.events("room.created", room_id="kept")) == 1

    # The auto-created room survives while someone is left, goes with its last participant.
    a.api("DELETE", f"/legs/{a1}")
    disconnected(hooks, a1)
    assert member_ids(a, "auto-a") == {a2}
    assert hooks.events("room.deleted", room_id="auto-a") == []
    b.api("DELETE", f"/legs/{b2}")  # still in early media: declined
    assert disconnected(hooks, a2)["cdr"]["reason"] == "declined"
    deleted = hooks.wait_for("room.deleted", room_id="auto-a")
    assert deleted["app_id"] == "t-9"
    assert a.api("GET", "/rooms/auto-a").status_code == 404
    b.api("DELETE", f"/legs/{b3}")
    disconnected(hooks, a3)
    hooks.assert_no_event("room.deleted", within=0.3, room_id="kept")
    assert room(a, "kept")["participants"] == []


def test_per_room_webhook(server_factory: ServerFactory, webhook_receiver: WebhookReceiver) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    room_url = hooks.url_for("/room")
    response = b.api(
        "POST",
        "/rooms",
        {"id": "hooked", "webhook_url": room_url, "webhook_secret": "room-secret"},
    )
    assert response.status_code == 201, response.text
    a1, b1 = call_in(a, b, hooks)  # no webhook of its own
    a2, b2 = call_in(a, b, hooks, headers={"X-Webhook-URL": hooks.url_for("/leg")})
    add(b, "hooked", b1)
    add(b, "hooked", b2)
    b.api("POST", f"/legs/{b1}/mute")
    b.api("POST", f"/legs/{b2}/mute")
    b.api("DELETE", "/rooms/hooked")
    for leg in (a1, a2):
        assert disconnected(hooks, leg)["cdr"]["reason"] == "remote_bye"
    for leg in (b1, b2):
        assert disconnected(hooks, leg)["cdr"]["reason"] == "api_hangup"
    hooks.wait_for("room.deleted", room_id="hooked")

    def on(path: str, **match: Any) -> list[tuple[str, str]]:
        events = hooks.events(instance_id=b.instance_id, **match)
        return [
            (e.type, str(e.get("leg_id") or e.get("room_id")))
            for e in events
            if e.request.path == path
        ]

    # The room's events and those of its legs without their own webhook: only to the room URL.
    expected = [
        ("room.created", "hooked"),
        ("leg.joined_room", b1),
        ("leg.muted", b1),
        ("leg.left_room", b1),
        ("leg.disconnected", b1),
        ("room.deleted", "hooked"),
    ]
    deadline = time.monotonic() + 5
    while len(on("/room")) < len(expected) and time.monotonic() < deadline:
        time.sleep(0.05)
    got = on("/room")
    assert sorted(got) == sorted(expected), got
    assert got.index(("room.created", "hooked")) == 0
    room_requests = [
        e.request for e in hooks.events(instance_id=b.instance_id) if e.request.path == "/room"
    ]
    assert all(r.signature_valid("room-secret") for r in room_requests)
    # Before it joined, b1's events went to the global webhook, and none of its room events.
    assert on("/hooks", leg_id=b1) == [("leg.ringing", b1), ("leg.connected", b1)]
    assert on("/hooks", type="room.created") == [] and on("/hooks", type="room.deleted") == []
    # A leg with its own webhook keeps it while in the room.
    assert sorted(on("/leg")) == sorted(
        [
            ("leg.ringing", b2),
            ("leg.connected", b2),
            ("leg.joined_room", b2),
            ("leg.muted", b2),
            ("leg.left_room", b2),
            ("leg.disconnected", b2),
        ]
    )
    assert on("/room", leg_id=b2) == [] and on("/hooks", leg_id=b2) == []


# -- flags before the first frame, hold and own playback, heard by real phones --------------

WINDOW_S = 0.02


def db(amplitude: float) -> float:
    return 20 * math.log10(max(amplitude, 1e-9))


def tone_track(phone: Baresip, freq: float) -> np.ndarray:
    """Amplitude of ``freq`` in each 20 ms of what the phone heard (index = 20 ms step)."""
    rate, heard = phone.heard()
    n = int(rate * WINDOW_S)
    frames = heard[: heard.size - heard.size % n].reshape(-1, n)
    # Hann-windowed, so that a tone starting mid-window does not splatter into other bands.
    window = np.hanning(n)
    basis = window * np.exp(-2j * np.pi * freq * np.arange(n) / rate)
    track: np.ndarray = 2.0 * np.abs(frames @ basis) / window.sum()
    return track


def span(track: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    piece = track[max(0, int(start_s / WINDOW_S)) : int(end_s / WINDOW_S)]
    assert piece.size >= 10, f"only {piece.size} windows between {start_s:.2f}s and {end_s:.2f}s"
    return piece


def longest_gap_ms(track: np.ndarray, floor: float) -> float:
    """The longest run of 20 ms windows where the tone is below ``floor``, in ms."""
    longest = run = 0
    for value in track:
        run = run + 1 if value < floor else 0
        longest = max(longest, run)
    return longest * WINDOW_S * 1000


@pytest.mark.media_timing
def test_flags_apply_before_the_first_frame_and_held_leg_keeps_room_running(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
) -> None:
    server, hooks = hooked_server, webhook_receiver
    talker = baresip_factory("talker", sine_hz=700, codecs=["PCMU"]).start()
    muted = baresip_factory("muted", sine_hz=1100, codecs=["PCMU"]).start()
    deaf = baresip_factory("deaf", sine_hz=1500, codecs=["PCMU"]).start()
    t_leg = originate(server, talker.uri, room_id="flags")["id"]
    m_leg = originate(server, muted.uri)["id"]
    d_leg = originate(server, deaf.uri)["id"]
    hooks.wait_for("leg.joined_room", leg_id=t_leg)
    answered = {
        leg: hooks.wait_for("leg.connected", leg_id=leg).request.monotonic
        for leg in (t_leg, m_leg, d_leg)
    }
    time.sleep(0.6)
    t_mute = time.monotonic()
    add(server, "flags", m_leg, mute=True)
    time.sleep(1.2)
    t_deaf = time.monotonic()
    add(server, "flags", d_leg, deaf=True)
    time.sleep(1.2)
    t_unmute = time.monotonic()
    assert server.api("DELETE", f"/legs/{m_leg}/mute").status_code == 200
    time.sleep(1.2)
    t_hold = time.monotonic()
    assert server.api("POST", f"/legs/{d_leg}/hold").status_code == 200
    play = server.api("POST", f"/legs/{m_leg}/play", {"tone": "de_dial"})
    assert play.status_code == 200, play.text
    hooks.wait_for("leg.hold", leg_id=d_leg)
    time.sleep(1.6)
    t_end = time.monotonic()
    server.api("DELETE", "/rooms/flags")
    for phone in (talker, muted, deaf):
        phone.wait_closed()

    def rel(phone_leg: str, moment: float) -> float:
        return moment - answered[phone_leg]

    def heard_between(phone: Baresip, leg: str, start: float, end: float) -> np.ndarray:
        rate, heard = phone.heard()
        return heard[int(rel(leg, start) * rate) : int(rel(leg, end) * rate)]

    t_1100, t_1500 = tone_track(talker, 1100), tone_track(talker, 1500)
    m_700 = tone_track(muted, 700)
    d_700, d_1100 = tone_track(deaf, 700), tone_track(deaf, 1100)
    talker_t = partial(rel, t_leg)

    # mute=true held from the first frame: the talker never heard the muted phone, not even
    # in the first frames after the join, until it was unmuted; then it did.
    # (The 1500 Hz deaf phone joins in between: the abrupt start of its tone splatters across
    # a 20 ms analysis window, so the windows right at that join are left out.)
    before = np.concatenate(
        (
            span(t_1100, 0.0, talker_t(t_deaf) - 0.1),
            span(t_1100, talker_t(t_deaf) + 0.1, talker_t(t_unmute) - 0.4),
        )
    )
    assert db(before.max()) < -50, f"the muted phone leaked into the room: {db(before.max()):.0f}"
    after = span(t_1100, talker_t(t_unmute) + 0.3, talker_t(t_end) - 0.3)
    assert db(after.min()) > -20, "unmuted, the phone should be heard"
    # Muted is not deaf: the muted phone heard the talker from its join on.
    heard = span(m_700, rel(m_leg, t_mute) + 0.3, rel(m_leg, t_end) - 0.3)
    assert longest_gap_ms(heard, 0.1) <= 20, "the muted phone should hear the talker"

    # deaf=true held from the first frame: the deaf phone heard nothing at all.
    assert len(d_700) * WINDOW_S > rel(d_leg, t_deaf) + 1.0, "the deaf phone's recording is short"
    loudest = max(db(d_700.max()), db(d_1100.max()))
    assert loudest < -50, f"the deaf phone heard the room ({loudest:.0f} dBFS)"
    # Deaf is not muted: the others heard it.
    heard = span(t_1500, talker_t(t_deaf) + 0.3, talker_t(t_hold) - 0.1)
    assert db(heard.min()) > -20, "the deaf phone should be heard"

    # One leg on hold, another playing a tone of its own: the room keeps mixing for the rest.
    hold_phase = span(t_1100, talker_t(t_hold) + 0.1, talker_t(t_end) - 0.3)
    assert longest_gap_ms(hold_phase, 0.1) <= 20, "the room stalled while a leg was held"
    own = heard_between(muted, m_leg, t_hold + 0.3, t_end - 0.3)
    assert band_energy_db(own, 8000, 425, 30) > -25, "the leg should hear its own playback"
    others = heard_between(talker, t_leg, t_hold + 0.3, t_end - 0.3)
    assert band_energy_db(others, 8000, 425, 30) < -50, "a leg's playback leaked into the room"
