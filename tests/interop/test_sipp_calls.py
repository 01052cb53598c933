"""The server against SIPp: SIPp as caller (with RTP) and as callee, busy, digest auth."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.helpers.audio import band_energy_db, tone
from tests.helpers.room_ear import RoomEar
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.sipp import SippProcess, SippRunner
from tests.helpers.webhooks import WebhookReceiver


def test_sipp_calls_server_with_audio_and_hangs_up(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, sipp: SippRunner
) -> None:
    hooks = webhook_receiver
    caller = sipp.start("uac_pcma_audio", hooked_server.sip_target, service="ivr", timeout=30)
    ringing = hooks.wait_for("leg.ringing")
    leg_id = ringing["leg_id"]
    assert ringing["to"].startswith("sip:ivr@")
    assert ringing["from"].startswith("sip:sipp@")
    assert hooked_server.api("POST", f"/legs/{leg_id}/answer").status_code == 200
    caller.wait().assert_ok()
    end = hooks.wait_for("leg.disconnected", leg_id=leg_id)
    assert end["cdr"]["reason"] == "remote_bye"
    # 4 s of 30 ms PCMA packets from the pcap: about 130 arrive.
    assert end["quality"]["rtp_packets_received"] >= 100
    assert end["quality"]["rtp_packets_lost"] == 0


def test_sipp_sends_rfc2833_dtmf(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, sipp: SippRunner
) -> None:
    hooks = webhook_receiver
    caller = sipp.start("uac_dtmf", hooked_server.sip_target, timeout=30)
    leg_id = hooks.wait_for("leg.ringing")["leg_id"]
    hooked_server.api("POST", f"/legs/{leg_id}/answer")
    caller.wait().assert_ok()
    digits = hooks.wait_for_count(1, "dtmf.received", leg_id=leg_id)
    assert digits[0]["digit"] == "1" and digits[0]["seq"] == 1
    hooks.wait_for("leg.disconnected", leg_id=leg_id)
    assert len(hooks.events("dtmf.received", leg_id=leg_id)) == 1


def test_server_calls_sipp_and_hangs_up(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    hooks = webhook_receiver
    callee = sipp_callee("uas_answer", rtp_echo=True)
    leg = originate(hooked_server, callee.uri("bob"), codecs=["PCMA", "PCMU"])
    hooks.wait_for("leg.ringing", leg_id=leg["id"])
    hooks.wait_for("leg.connected", leg_id=leg["id"])
    time.sleep(1.0)  # our comfort silence comes back from SIPp's echo
    hooked_server.api("DELETE", f"/legs/{leg['id']}")
    callee.wait().assert_ok()
    end = hooks.wait_for("leg.disconnected", leg_id=leg["id"])
    assert end["cdr"]["reason"] == "api_hangup"
    assert end["quality"]["rtp_packets_received"] >= 40


def test_sipp_hangs_up_first(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    callee = sipp_callee("uas_hangup")
    leg = originate(hooked_server, callee.uri("bob"))
    callee.wait().assert_ok()
    end = webhook_receiver.wait_for("leg.disconnected", leg_id=leg["id"])
    assert end["cdr"]["reason"] == "remote_bye"


def test_busy_maps_to_busy(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    callee = sipp_callee("uas_busy", rtp_echo=False)
    leg = originate(hooked_server, callee.uri("bob"))
    end = webhook_receiver.wait_for("leg.disconnected", leg_id=leg["id"])
    assert end["cdr"]["reason"] == "busy"
    assert end["cdr"]["duration_answered"] == 0
    callee.wait()


def test_digest_auth_md5_against_sipp(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    callee = sipp_callee("uas_auth_md5", rtp_echo=True)
    leg = originate(
        hooked_server, callee.uri("bob"), auth={"username": "alice", "password": "s3cret"}
    )
    webhook_receiver.wait_for("leg.connected", leg_id=leg["id"])
    hooked_server.api("DELETE", f"/legs/{leg['id']}")
    callee.wait().assert_ok()


def test_digest_auth_wrong_password_is_refused(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    callee = sipp_callee("uas_auth_md5", rtp_echo=True)
    leg = originate(
        hooked_server, callee.uri("bob"), auth={"username": "alice", "password": "wrong"}
    )
    end = webhook_receiver.wait_for("leg.disconnected", leg_id=leg["id"])
    assert end["cdr"]["reason"] == "forbidden"
    callee.kill()


def test_digest_challenge_without_credentials(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    callee = sipp_callee("uas_auth_md5", rtp_echo=True)
    leg = originate(hooked_server, callee.uri("bob"))
    end = webhook_receiver.wait_for("leg.disconnected", leg_id=leg["id"])
    assert end["cdr"]["reason"] == "unauthorized"
    callee.kill()


def test_delayed_offer_invite_without_sdp(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, sipp: SippRunner
) -> None:
    """INVITE without SDP: we offer in the 200, SIPp answers in the ACK, media flows."""
    hooks = webhook_receiver
    caller = sipp.start("uac_late_offer", hooked_server.sip_target, timeout=30)
    leg_id = hooks.wait_for("leg.ringing")["leg_id"]
    assert hooked_server.api("POST", f"/legs/{leg_id}/answer").status_code == 200
    caller.wait().assert_ok()
    end = hooks.wait_for("leg.disconnected", leg_id=leg_id)
    assert end["cdr"]["reason"] == "remote_bye"
    assert end["quality"]["rtp_packets_received"] >= 80


def test_sipp_over_tcp(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, sipp: SippRunner
) -> None:
    hooks = webhook_receiver
    caller = sipp.start("uac_pcma_audio", hooked_server.sip_target, transport="t1", timeout=30)
    leg_id = hooks.wait_for("leg.ringing")["leg_id"]
    hooked_server.api("POST", f"/legs/{leg_id}/answer")
    caller.wait().assert_ok()
    end = hooks.wait_for("leg.disconnected", leg_id=leg_id)
    assert end["cdr"]["reason"] == "remote_bye"


def test_an_incoming_refer_is_declined_and_reported(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, sipp: SippRunner
) -> None:
    """SIPp, as a referrer, asks for a blind then an attended transfer: both 603 Decline
    (auto-dial is not enabled), each reported as leg.transfer_requested; the call goes on."""
    hooks = webhook_receiver
    caller = sipp.start("uac_refer_declined", hooked_server.sip_target, timeout=30)
    leg_id = hooks.wait_for("leg.ringing")["leg_id"]
    hooked_server.api("POST", f"/legs/{leg_id}/answer")
    caller.wait().assert_ok()  # it got its two 603s, then hung up
    requested = hooks.wait_for_count(2, "leg.transfer_requested", leg_id=leg_id)
    blind, attended = requested[0], requested[1]
    assert blind["kind"] == "blind" and blind["target"] == "sip:carol@198.51.100.7:5060"
    assert blind["declined"] is True and "replaces_call_id" not in blind
    assert attended["kind"] == "attended" and attended["target"] == "sip:dave@198.51.100.8:5060"
    assert attended["replaces_call_id"] == "other-call@198.51.100.8"
    assert attended["declined"] is True
    end = hooks.wait_for("leg.disconnected", leg_id=leg_id)
    assert end["cdr"]["reason"] == "remote_bye"


def test_an_incoming_refer_with_auto_dial_puts_the_target_in_the_referrers_place(
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    sipp: SippRunner,
    sipp_callee: Callable[..., SippProcess],
) -> None:
    """SIP_REFER_AUTO_DIAL=true: SIPp calls us and REFERs us to a second SIPp (an echo). We
    answer 202, dial the target, report 100/180/200 by NOTIFY, put the new leg in the
    referrer's room (a room member then hears its own tone echoed by the target) and hang
    up on the referrer with transfer_completed."""
    hooks = webhook_receiver
    server = server_factory(WEBHOOK_URL=hooks.url, SIP_REFER_AUTO_DIAL="true")
    target = sipp_callee("uas_answer", rtp_echo=True)
    target_uri = target.uri("carol")
    assert server.api("POST", "/rooms", json={"id": "desk"}).status_code == 201
    ear = RoomEar(server, "desk")
    try:
        referrer = sipp.start(
            "uac_refer_auto_dial",
            server.sip_target,
            timeout=30,
            extra_args=["-key", "target_uri", target_uri],
        )
        leg = hooks.wait_for("leg.ringing", instance_id=server.instance_id)["leg_id"]
        added = server.api("POST", "/rooms/desk/legs", json={"leg_id": leg, "mute": False})
        assert added.status_code == 200, added.text  # answers it, before SIPp's REFER
        assert server.api("POST", f"/legs/{leg}/deaf").status_code == 200
        requested = hooks.wait_for("leg.transfer_requested", leg_id=leg)
        assert requested["declined"] is False and requested["kind"] == "blind"
        assert requested["target"] == target_uri
        new_leg = requested["target_leg_id"]
        hooks.wait_for("leg.transfer_completed", leg_id=leg)
        progress = [e["status_code"] for e in hooks.events("leg.transfer_progress", leg_id=leg)]
        assert progress == [180, 200]  # 100 Trying is sent before the leg is dialled
        assert hooks.wait_for("leg.disconnected", leg_id=leg)["cdr"]["reason"] == (
            "transfer_completed"
        )
        sent = referrer.wait()
        sent.assert_ok()
        # Three NOTIFYs (100, 180, 200), the last one ending the subscription.
        assert sent.messages.count("Content-Type: message/sipfrag") == 3
        assert sent.messages.count("Subscription-State: terminated") == 1
        joined = hooks.wait_for("leg.joined_room", leg_id=new_leg)
        assert joined["room_id"] == "desk"
        state = server.api("GET", f"/legs/{new_leg}").json()
        assert state["state"] == "connected" and state["deaf"] is True  # the place's flags
        # The leg hears nothing (deaf), so undeafen it: the echo target returns our tone.
        assert server.api("DELETE", f"/legs/{new_leg}/deaf").status_code == 200
        start = time.monotonic()
        ear.say(tone(1000, 1500, rate=16000, dbfs=-12)).join()
        heard = ear.heard(start + 0.5, start + 2.0)
        assert band_energy_db(heard, 16000, 1000.0, 60.0) > -40, "no echo from the target"
    finally:
        ear.close()
    server.api("DELETE", f"/legs/{new_leg}")
    target.wait().assert_ok()
    assert hooks.wait_for("leg.disconnected", leg_id=new_leg)["cdr"]["reason"] == "api_hangup"


def test_a_blind_transfer_accepted_by_sipp_completes_and_hangs_up(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    hooks = webhook_receiver
    callee, leg = _connected_callee(
        hooked_server, hooks, sipp_callee, originate, "uas_refer_accept"
    )
    api = hooked_server.api
    assert api("POST", f"/legs/{leg}/transfer", json={"target": "sip:"}).status_code == 400
    assert api("POST", f"/legs/{leg}/transfer", json={}).status_code == 400
    assert api("POST", "/legs/nope/transfer", json={"target": "sip:a@h"}).status_code == 404
    bad = api("POST", f"/legs/{leg}/transfer", json={"target": "sip:a@h", "replaces_leg_id": "x"})
    assert bad.status_code == 409
    started = api("POST", f"/legs/{leg}/transfer", json={"target": "sip:carol@198.51.100.7"})
    assert started.status_code == 202 and started.json()["status"] == "transfer_initiated"
    initiated = hooks.wait_for("leg.transfer_initiated", leg_id=leg)
    assert initiated["kind"] == "blind" and initiated["target"] == "sip:carol@198.51.100.7"
    completed = hooks.wait_for("leg.transfer_completed", leg_id=leg)
    assert completed["status_code"] == 200
    progress = [e["status_code"] for e in hooks.events("leg.transfer_progress", leg_id=leg)]
    assert progress == [100, 200]
    end = hooks.wait_for("leg.disconnected", leg_id=leg)
    assert end["cdr"]["reason"] == "transfer_completed"
    result = callee.wait()
    result.assert_ok()
    assert "Refer-To: <sip:carol@198.51.100.7>" in result.messages
    assert not hooks.events("leg.transfer_failed", leg_id=leg)


def test_a_transfer_the_transferee_refuses_fails_and_the_call_goes_on(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    hooks = webhook_receiver
    callee, leg = _connected_callee(
        hooked_server, hooks, sipp_callee, originate, "uas_refer_reject"
    )
    started = hooked_server.api("POST", f"/legs/{leg}/transfer", json={"target": "sip:c@h"})
    assert started.status_code == 202
    failed = hooks.wait_for("leg.transfer_failed", leg_id=leg)
    assert failed["status_code"] == 603
    assert failed["error"] == "REFER rejected: 603 Decline"
    assert hooked_server.api("GET", f"/legs/{leg}").json()["state"] == "connected"
    hooked_server.api("DELETE", f"/legs/{leg}")
    callee.wait().assert_ok()
    assert hooks.wait_for("leg.disconnected", leg_id=leg)["cdr"]["reason"] == "api_hangup"


def test_an_attended_transfer_replaces_the_other_legs_dialog_and_ends_both(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    hooks = webhook_receiver
    transferee = sipp_callee("uas_refer_accept", rtp_echo=True)
    target = sipp_callee("uas_answer", rtp_echo=True)
    leg = originate(hooked_server, transferee.uri("alice"), codecs=["PCMU"])["id"]
    other = originate(hooked_server, target.uri("carol"), codecs=["PCMU"])["id"]
    for each in (leg, other):
        hooks.wait_for("leg.connected", leg_id=each)
    body = {"target": target.uri("carol"), "replaces_leg_id": other}
    assert hooked_server.api("POST", f"/legs/{leg}/transfer", json=body).status_code == 202
    initiated = hooks.wait_for("leg.transfer_initiated", leg_id=leg)
    assert initiated["kind"] == "attended" and initiated["replaces_leg_id"] == other
    hooks.wait_for("leg.transfer_completed", leg_id=leg)
    for each in (leg, other):
        end = hooks.wait_for("leg.disconnected", leg_id=each)
        assert end["cdr"]["reason"] == "transfer_completed"
    sent = transferee.wait()
    sent.assert_ok()
    target.wait().assert_ok()
    # The Replaces names the other leg's dialog as the target knows it (RFC 3891).
    refer_to = next(line for line in sent.messages.splitlines() if line.startswith("Refer-To:"))
    assert "?Replaces=" in refer_to and "%3Bto-tag%3D" in refer_to and "%3Bfrom-tag%3D" in refer_to


def test_a_transfer_whose_target_is_busy_fails_and_the_call_goes_on(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
) -> None:
    hooks = webhook_receiver
    callee, leg = _connected_callee(
        hooked_server, hooks, sipp_callee, originate, "uas_refer_target_busy"
    )
    started = hooked_server.api("POST", f"/legs/{leg}/transfer", json={"target": "sip:c@h"})
    assert started.status_code == 202
    failed = hooks.wait_for("leg.transfer_failed", leg_id=leg)
    assert failed["status_code"] == 486 and failed["reason"] == "Busy Here"
    progress = [e["status_code"] for e in hooks.events("leg.transfer_progress", leg_id=leg)]
    assert progress == [100, 486]
    assert hooked_server.api("GET", f"/legs/{leg}").json()["state"] == "connected"
    hooked_server.api("DELETE", f"/legs/{leg}")
    callee.wait().assert_ok()
    assert not hooks.events("leg.transfer_completed", leg_id=leg)


def _connected_callee(
    server: ServerProcess,
    hooks: WebhookReceiver,
    sipp_callee: Callable[..., SippProcess],
    originate: Callable[..., dict[str, Any]],
    scenario: str,
) -> tuple[SippProcess, str]:
    """A SIPp callee running `scenario`, called on PCMU and connected: (callee, leg id)."""
    callee = sipp_callee(scenario, rtp_echo=True)
    leg = str(originate(server, callee.uri("bob"), codecs=["PCMU"])["id"])
    hooks.wait_for("leg.connected", leg_id=leg)
    return callee, leg
