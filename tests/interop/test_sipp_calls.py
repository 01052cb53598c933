"""The server against SIPp: SIPp as caller (with RTP) and as callee, busy, digest auth."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.helpers.server import ServerProcess
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
