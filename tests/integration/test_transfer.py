"""Transfers across three instances: X transfers its call with Y to Z. Y runs with
SIP_REFER_AUTO_DIAL=true, so it dials Z itself and its new leg takes the referred leg's place;
an attended transfer's INVITE carries a Replaces that Z honours. Audio is checked on the final
pair: a room member on Y and one on Z hear each other's tones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.audio import band_energy_db, tone
from tests.helpers.room_ear import RoomEar
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect, disconnected, module_hooks

TARGET_TIMEOUT = 4  # Y's TRANSFER_TIMEOUT: how long the target may ring

hooks = module_hooks()


@pytest.fixture(scope="module")
def trio(
    tmp_path_factory: pytest.TempPathFactory,
    hooks: WebhookReceiver,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[ServerProcess, ServerProcess, ServerProcess]]:
    """X (the referrer's side), Y (the transferee, auto-dial on), Z (the target)."""
    factory = ServerFactory(Path(tmp_path_factory.mktemp("transfer")))
    failures = request.session.testsfailed
    x = factory(WEBHOOK_URL=hooks.url)
    y = factory(
        WEBHOOK_URL=hooks.url, SIP_REFER_AUTO_DIAL="true", TRANSFER_TIMEOUT=str(TARGET_TIMEOUT)
    )
    z = factory(WEBHOOK_URL=hooks.url)
    yield x, y, z
    factory.close(failed=request.session.testsfailed > failures)


def _into_room(server: ServerProcess, room_id: str, leg_id: str) -> None:
    if server.api("GET", f"/rooms/{room_id}").status_code == 404:
        assert server.api("POST", "/rooms", json={"id": room_id}).status_code == 201
    added = server.api("POST", f"/rooms/{room_id}/legs", json={"leg_id": leg_id})
    assert added.status_code == 200, added.text


def _transfer_ringing(
    trio: tuple[ServerProcess, ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> tuple[str, str, str]:
    """X calls Y and transfers the call to Z; (X's leg, Y's referred leg, Z's ringing leg)."""
    x, y, z = trio
    x_leg, y_leg = connect(x, y, hooks)
    since = hooks.mark()
    assert x.api("POST", f"/legs/{x_leg}/transfer", json={"target": z.sip_uri()}).status_code == 202
    z_leg = hooks.wait_for("leg.ringing", since=since, instance_id=z.instance_id)["leg_id"]
    return x_leg, y_leg, z_leg


def _assert_pair_hears_each_other(
    y: ServerProcess, y_room: str, z: ServerProcess, z_room: str
) -> None:
    """A member of Y's room and one of Z's hear each other's tone: the transferred call
    carries audio both ways."""
    y_ear, z_ear = RoomEar(y, y_room), RoomEar(z, z_room)
    try:
        for speaker, listener, freq in ((z_ear, y_ear, 1100.0), (y_ear, z_ear, 700.0)):
            start = time.monotonic()
            speaker.say(tone(freq, 1500, rate=16000, dbfs=-12)).join()
            heard = listener.heard(start + 0.4, start + 1.6)
            level = band_energy_db(heard, 16000, freq, 60.0)
            assert level > -35, f"{freq:.0f} Hz not heard across the transferred call ({level:.1f})"
    finally:
        y_ear.close()
        z_ear.close()


def test_a_blind_transfer_connects_the_transferee_to_the_target(
    trio: tuple[ServerProcess, ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    x, y, z = trio
    x_leg, y_leg = connect(x, y, hooks)
    _into_room(y, "blind-y", y_leg)
    since = hooks.mark()
    body = {"target": z.sip_uri("carol")}
    assert x.api("POST", f"/legs/{x_leg}/transfer", json=body).status_code == 202

    z_leg = hooks.wait_for("leg.ringing", since=since, instance_id=z.instance_id)["leg_id"]
    _into_room(z, "blind-z", z_leg)  # answers it
    requested = hooks.wait_for("leg.transfer_requested", leg_id=y_leg)
    assert requested["declined"] is False and requested["kind"] == "blind"
    new_leg = requested["target_leg_id"]

    completed = hooks.wait_for("leg.transfer_completed", leg_id=x_leg)
    assert completed["status_code"] == 200
    x_progress = [e["status_code"] for e in hooks.events("leg.transfer_progress", leg_id=x_leg)]
    assert x_progress == [100, 180, 200]
    assert disconnected(hooks, x_leg)["cdr"]["reason"] == "transfer_completed"
    assert disconnected(hooks, y_leg)["cdr"]["reason"] == "transfer_completed"
    hooks.wait_for("leg.transfer_completed", leg_id=y_leg)
    assert hooks.wait_for("leg.joined_room", leg_id=new_leg)["room_id"] == "blind-y"

    _assert_pair_hears_each_other(y, "blind-y", z, "blind-z")
    assert z.api("DELETE", f"/legs/{z_leg}").status_code == 200
    assert disconnected(hooks, new_leg)["cdr"]["reason"] == "remote_bye"


def test_an_attended_transfer_replaces_the_targets_call(
    trio: tuple[ServerProcess, ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    """X talks to Y and to Z; it transfers Y to Z replacing its own call with Z: Z answers
    Y's INVITE with Replaces by itself, the new leg takes the old one's room and flags."""
    x, y, z = trio
    x_a, y_leg = connect(x, y, hooks)
    x_b, z_old = connect(x, z, hooks)
    _into_room(y, "att-y", y_leg)
    _into_room(z, "att-z", z_old)
    assert z.api("POST", f"/legs/{z_old}/dtmf/reject").status_code == 200
    since = hooks.mark()
    body = {"target": z.sip_uri("carol"), "replaces_leg_id": x_b}
    assert x.api("POST", f"/legs/{x_a}/transfer", json=body).status_code == 202

    ringing = hooks.wait_for("leg.ringing", since=since, instance_id=z.instance_id)
    z_new = ringing["leg_id"]
    assert ringing["replaces_leg_id"] == z_old
    hooks.wait_for("leg.transfer_completed", leg_id=x_a)
    requested = hooks.wait_for("leg.transfer_requested", leg_id=y_leg)
    assert requested["kind"] == "attended" and requested["replaces_call_id"]
    new_leg = requested["target_leg_id"]
    for leg in (x_a, y_leg, z_old):
        assert disconnected(hooks, leg)["cdr"]["reason"] == "transfer_completed", leg
    # X's replaced leg ends either way: hung up by X, or by Z's BYE when Z was first.
    assert disconnected(hooks, x_b)["cdr"]["reason"] in ("transfer_completed", "remote_bye")
    assert hooks.wait_for("leg.joined_room", leg_id=z_new)["room_id"] == "att-z"
    taken = z.get_leg(z_new)
    assert taken is not None and taken["state"] == "connected"
    assert taken["accept_dtmf"] is False  # the replaced leg's setting came along

    _assert_pair_hears_each_other(y, "att-y", z, "att-z")
    assert y.api("DELETE", f"/legs/{new_leg}").status_code == 200
    assert disconnected(hooks, z_new)["cdr"]["reason"] == "remote_bye"


def test_a_target_that_rejects_fails_the_transfer_and_the_call_goes_on(
    trio: tuple[ServerProcess, ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    x, y, z = trio
    x_leg, y_leg, z_leg = _transfer_ringing(trio, hooks)
    assert z.api("DELETE", f"/legs/{z_leg}", json={"reason": "busy"}).status_code == 200

    failed = hooks.wait_for("leg.transfer_failed", leg_id=x_leg)
    assert failed["status_code"] == 486 and failed["reason"] == "Busy Here"
    new_leg = hooks.wait_for("leg.transfer_requested", leg_id=y_leg)["target_leg_id"]
    assert disconnected(hooks, new_leg)["cdr"]["reason"] == "transfer_originate_failed"
    assert hooks.wait_for("leg.transfer_failed", leg_id=y_leg)["status_code"] == 486
    for server, leg in ((x, x_leg), (y, y_leg)):
        state = server.get_leg(leg)
        assert state is not None and state["state"] == "connected"
    assert x.api("DELETE", f"/legs/{x_leg}").status_code == 200
    assert disconnected(hooks, y_leg)["cdr"]["reason"] == "remote_bye"


def test_a_target_that_never_answers_fails_after_the_transfer_timeout(
    trio: tuple[ServerProcess, ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    x, y, _ = trio
    x_leg, y_leg, z_leg = _transfer_ringing(trio, hooks)
    started = time.monotonic()
    failed = hooks.wait_for("leg.transfer_failed", timeout=TARGET_TIMEOUT + 6, leg_id=x_leg)
    waited = time.monotonic() - started
    assert failed["status_code"] == 408
    assert TARGET_TIMEOUT - 1 < waited < TARGET_TIMEOUT + 3
    new_leg = hooks.wait_for("leg.transfer_requested", leg_id=y_leg)["target_leg_id"]
    assert disconnected(hooks, new_leg)["cdr"]["reason"] == "transfer_originate_failed"
    assert disconnected(hooks, z_leg)["cdr"]["reason"] == "caller_cancel"
    state = x.get_leg(x_leg)
    assert state is not None and state["state"] == "connected"
    assert y.api("DELETE", f"/legs/{y_leg}").status_code == 200
    assert disconnected(hooks, x_leg)["cdr"]["reason"] == "remote_bye"


@pytest.mark.parametrize("room_kept", [True, False])
def test_the_target_takes_the_place_even_after_the_referrer_hung_up(
    trio: tuple[ServerProcess, ServerProcess, ServerProcess],
    hooks: WebhookReceiver,
    room_kept: bool,
) -> None:
    """X hangs up right after its REFER was accepted (as some phones do). Y's call to Z goes
    on and, once answered, joins the room Y's referred leg was in; if that room was deleted
    meanwhile, the answered leg ends with transfer_connect_failed."""
    x, y, z = trio
    room = f"early-{room_kept}"
    x_leg, y_leg = connect(x, y, hooks)
    _into_room(y, room, y_leg)
    ear = RoomEar(y, room)  # keeps the room populated once the referred leg is gone
    try:
        since = hooks.mark()
        body = {"target": z.sip_uri("carol")}
        assert x.api("POST", f"/legs/{x_leg}/transfer", json=body).status_code == 202
        z_leg = hooks.wait_for("leg.ringing", since=since, instance_id=z.instance_id)["leg_id"]
        new_leg = hooks.wait_for("leg.transfer_requested", leg_id=y_leg)["target_leg_id"]
        assert x.api("DELETE", f"/legs/{x_leg}").status_code == 200
        assert disconnected(hooks, y_leg)["cdr"]["reason"] == "remote_bye"
        if not room_kept:
            assert y.api("DELETE", f"/rooms/{room}").status_code == 200
        assert z.api("POST", f"/legs/{z_leg}/answer").status_code == 200
        if room_kept:
            assert hooks.wait_for("leg.joined_room", leg_id=new_leg)["room_id"] == room
            assert y.api("DELETE", f"/legs/{new_leg}").status_code == 200
            reason = "api_hangup"
        else:
            reason = "transfer_connect_failed"
        assert disconnected(hooks, new_leg)["cdr"]["reason"] == reason
        assert disconnected(hooks, z_leg)["cdr"]["reason"] == "remote_bye"
    finally:
        ear.close()
