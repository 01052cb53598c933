"""DTMF broadcast in rooms: digits received on one leg are re-sent (RFC 4733) to every other
leg of its room that accepts DTMF; ``dtmf.received`` is emitted for the sending leg only.

Two instances: A calls B three times and B puts its three inbound legs in a room. Digits A
sends on one call arrive on B's leg; what B re-sends to the other legs arrives back on A's
legs as their own ``dtmf.received``. A second test does the same with real phones (baresip).
"""

from __future__ import annotations

from typing import Any

from tests.helpers.baresip import BaresipFactory
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import pair


def call_in(
    a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver, **body: Any
) -> tuple[str, str]:
    """A calls B; returns (A's outbound leg, B's inbound leg, still ringing)."""
    mark = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob"), **body})
    assert response.status_code == 201, response.text
    ringing = hooks.wait_for("leg.ringing", since=mark, instance_id=b.instance_id)
    return response.json()["id"], ringing["leg_id"]


def digits(hooks: WebhookReceiver, leg: str) -> str:
    return "".join(e["digit"] for e in hooks.events("dtmf.received", leg_id=leg))


def test_dtmf_broadcast_to_accepting_legs_switched_live(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    (a1, b1), (a2, b2), (a3, b3) = (call_in(a, b, hooks) for _ in range(3))
    for leg, flags in ((b1, {}), (b2, {}), (b3, {"accept_dtmf": False})):
        response = b.api("POST", "/rooms/d/legs", {"leg_id": leg, **flags})
        assert response.json()["status"] == "added", response.text
    for leg in (b1, b2, b3):
        hooks.wait_for("leg.joined_room", leg_id=leg, room_id="d")
    for leg in (a1, a2, a3):
        hooks.wait_for("leg.connected", leg_id=leg)
    views = {p["id"]: p["accept_dtmf"] for p in b.api("GET", "/rooms/d").json()["participants"]}
    assert views == {b1: True, b2: True, b3: False}

    # b3 rejects: only b2 gets the digit re-sent (seen arriving on A's a2).
    assert a.api("POST", f"/legs/{a1}/dtmf", {"digits": "1"}).status_code == 200
    received = hooks.wait_for("dtmf.received", leg_id=a2)
    assert (received["digit"], received["seq"]) == ("1", 1)
    first = hooks.wait_for("dtmf.received", leg_id=b1)
    assert (first["digit"], first["seq"], first["instance_id"]) == ("1", 1, b.instance_id)
    hooks.assert_no_event("dtmf.received", within=0.6, leg_id=a3)

    # Switched live: b3 accepts now, b2 rejects.
    response = b.api("POST", f"/legs/{b3}/dtmf/accept")
    assert response.json() == {"instance_id": b.instance_id, "status": "accepted"}
    response = b.api("POST", f"/legs/{b2}/dtmf/reject")
    assert response.json() == {"instance_id": b.instance_id, "status": "rejected"}
    assert b.get_leg(b3)["accept_dtmf"] is True  # type: ignore[index]
    assert b.get_leg(b2)["accept_dtmf"] is False  # type: ignore[index]
    assert a.api("POST", f"/legs/{a1}/dtmf", {"digits": "2#"}).status_code == 200
    got = hooks.wait_for_count(2, "dtmf.received", leg_id=a3)
    assert [(e["digit"], e["seq"]) for e in got] == [("2", 1), ("#", 2)]

    # Digits from another leg of the room go to the accepting others (b1), not to b2.
    assert a.api("POST", f"/legs/{a3}/dtmf", {"digits": "9"}).status_code == 200
    assert hooks.wait_for("dtmf.received", leg_id=a1)["digit"] == "9"
    hooks.assert_no_event("dtmf.received", within=0.6, leg_id=a2, digit="9")

    # dtmf.received only for the leg each digit came in on; nothing echoed anywhere else.
    assert digits(hooks, b1) == "12#"
    assert [e["seq"] for e in hooks.events("dtmf.received", leg_id=b1)] == [1, 2, 3]
    assert digits(hooks, b3) == "9"
    assert digits(hooks, b2) == ""
    assert (digits(hooks, a1), digits(hooks, a2), digits(hooks, a3)) == ("9", "1", "2#")


def test_dtmf_broadcast_between_phones(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
) -> None:
    server, hooks = hooked_server, webhook_receiver
    phones = [baresip_factory(f"d{i}", sine_hz=600 + 200 * i).start() for i in range(3)]
    legs = []
    for i, phone in enumerate(phones):
        body: dict[str, Any] = {"type": "sip", "uri": phone.uri, "room_id": "keys"}
        if i == 2:
            body["accept_dtmf"] = False  # CreateLegRequest.accept_dtmf
        response = server.api("POST", "/legs", body)
        assert response.status_code == 201, response.text
        legs.append(response.json()["id"])
    for leg in legs:
        hooks.wait_for("leg.joined_room", leg_id=leg, room_id="keys")
    for phone in phones:
        phone.wait_for_event("CALL_RTPESTAB")
    sender, listener, refuser = phones

    sender.send_dtmf("5")
    assert hooks.wait_for("dtmf.received", leg_id=legs[0])["digit"] == "5"
    assert listener.wait_for_event("CALL_DTMF_START", timeout=5)["param"] == "5"
    hooks.assert_no_event("dtmf.received", within=0.5, leg_id=legs[1])
    assert not [e for e in refuser.events if e.get("type") == "CALL_DTMF_START"]

    assert server.api("POST", f"/legs/{legs[2]}/dtmf/accept").status_code == 200
    sender.send_dtmf("7")
    assert refuser.wait_for_event("CALL_DTMF_START", timeout=5)["param"] == "7"
    listener.wait_for_event("CALL_DTMF_START", timeout=5, param="7")
    for phone, expected in ((listener, ["5", "7"]), (refuser, ["7"]), (sender, [])):
        starts = [e["param"] for e in phone.events if e.get("type") == "CALL_DTMF_START"]
        assert starts == expected, (phone.user, starts)
    assert [e["digit"] for e in hooks.events("dtmf.received")] == ["5", "7"]
    assert {e["leg_id"] for e in hooks.events("dtmf.received")} == {legs[0]}
