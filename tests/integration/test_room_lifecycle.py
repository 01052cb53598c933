"""Room membership and event order at the edges: a ringing leg added to a room, a room deleted
while it records, a leg hung up mid-sentence."""

from __future__ import annotations

import time
from typing import Any

from tests.helpers.audio import band_energy_db
from tests.helpers.room_ear import RoomEar
from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import module_fixtures

hooks, servers = module_fixtures("room_lifecycle")


def _call(a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver) -> tuple[str, str]:
    """A calls B; (A's outbound leg, B's inbound leg), both still ringing."""
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")})
    assert response.status_code == 201, response.text
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    return response.json()["id"], b_leg


def _answered(a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver) -> tuple[str, str]:
    """A calls B and B answers; both leg ids once A's is connected."""
    a_leg, b_leg = _call(a, b, hooks)
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", leg_id=a_leg)
    return a_leg, b_leg


def _participants(server: ServerProcess, room_id: str) -> dict[str, dict[str, Any]]:
    response = server.api("GET", f"/rooms/{room_id}")
    assert response.status_code == 200, response.text
    return {p["id"]: p for p in response.json()["participants"]}


def test_a_ringing_outbound_leg_is_a_pending_member_that_can_be_removed(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    a, b = servers
    a_leg, b_leg = _call(a, b, hooks)
    added = a.api("POST", "/rooms/pending/legs", {"leg_id": a_leg})
    assert added.json()["status"] == "added", added.text
    leg = a.get_leg(a_leg)
    assert leg is not None and leg["state"] == "ringing" and leg["room_id"] == "pending"
    assert _participants(a, "pending")[a_leg]["state"] == "ringing"

    # Removed before it connects; the auto-created room goes with it, the call rings on.
    since = hooks.mark()
    removed = a.api("DELETE", f"/rooms/pending/legs/{a_leg}")
    assert removed.status_code == 200 and removed.json()["status"] == "removed", removed.text
    hooks.wait_for("leg.left_room", since=since, leg_id=a_leg, room_id="pending")
    hooks.wait_for("room.deleted", since=since, room_id="pending")
    leg = a.get_leg(a_leg)
    assert leg is not None and leg["state"] == "ringing" and leg["room_id"] == ""

    # Added again, it enters the mix when its media comes up: a listener hears B's tone.
    assert a.api("POST", "/rooms/ringing/legs", {"leg_id": a_leg}).status_code == 200
    ear = RoomEar(a, "ringing")
    try:
        assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
        hooks.wait_for("leg.connected", leg_id=a_leg)
        assert b.api("POST", f"/legs/{b_leg}/play", {"tone": "us_dial"}).status_code == 200
        heard = ear.listen(1.0, start=time.monotonic() + 0.5)
        assert band_energy_db(heard, 16000, 440.0, 40.0) > -35, "the leg's audio is not in the mix"
        assert _participants(a, "ringing")[a_leg]["state"] == "connected"
    finally:
        ear.close()
        a.api("DELETE", "/rooms/ringing")
    hooks.wait_for("leg.disconnected", leg_id=b_leg)


def test_room_deleted_comes_after_its_recording_finished(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    a, b = servers
    a_leg, b_leg = _answered(a, b, hooks)
    assert a.api("POST", "/rooms", {"id": "taped"}).status_code == 201
    assert a.api("POST", "/rooms/taped/legs", {"leg_id": a_leg}).status_code == 200
    started = a.api("POST", "/rooms/taped/record", {"multi_channel": True})
    assert started.status_code == 200, started.text
    time.sleep(0.5)
    assert a.api("DELETE", "/rooms/taped").status_code == 200
    hooks.wait_for("room.deleted", room_id="taped")
    order = [e.type for e in hooks.events(room_id="taped")]
    assert order.index("recording.finished") < order.index("room.deleted"), order
    assert order[-1] == "room.deleted", order
    # Once its last event is out, the id is free again.
    assert a.api("POST", "/rooms", {"id": "taped"}).status_code == 201
    assert a.api("DELETE", "/rooms/taped").status_code == 200
    hooks.wait_for("leg.disconnected", leg_id=b_leg)


def test_a_leg_hung_up_while_speaking_gets_speaking_stopped(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    a, b = servers
    a_leg, b_leg = _answered(a, b, hooks)
    assert a.api("POST", "/rooms/talk/legs", {"leg_id": a_leg}).status_code == 200
    # B's tone is what A's leg "says": A detects it as speech.
    assert b.api("POST", f"/legs/{b_leg}/play", {"tone": "us_dial"}).status_code == 200
    hooks.wait_for("speaking.started", leg_id=a_leg, timeout=5)
    assert b.api("DELETE", f"/legs/{b_leg}").status_code == 200
    hooks.wait_for("leg.disconnected", leg_id=a_leg)
    events = [e for e in hooks.events(leg_id=a_leg) if e.type.startswith(("speaking.", "leg.d"))]
    assert [e.type for e in events] == [
        "speaking.started",
        "speaking.stopped",
        "leg.disconnected",
    ], events
    assert events[1]["room_id"] == "talk"
