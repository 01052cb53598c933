"""The server against baresip: baresip as caller and as callee, and audio proof per codec."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.helpers.audio import band_energy_db, dominant_frequency, level_dbfs
from tests.helpers.baresip import BaresipFactory
from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver


def test_baresip_calls_server_and_sends_dtmf(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
) -> None:
    hooks = webhook_receiver
    phone = baresip_factory("alice", answermode="manual")
    phone.start(dial=hooked_server.sip_uri("support"))
    ringing = hooks.wait_for("leg.ringing")
    leg_id = ringing["leg_id"]
    assert ringing["from"].startswith("sip:alice@")
    hooked_server.api("POST", f"/legs/{leg_id}/answer")
    phone.wait_established()
    hooks.wait_for("leg.connected", leg_id=leg_id)
    phone.send_dtmf("42#")
    got = hooks.wait_for_count(3, "dtmf.received", leg_id=leg_id)
    assert [e["digit"] for e in got] == ["4", "2", "#"]
    phone.hangup()
    end = hooks.wait_for("leg.disconnected", leg_id=leg_id)
    assert end["cdr"]["reason"] == "remote_bye"
    assert end["quality"]["rtp_packets_received"] >= 20


def test_server_calls_baresip_and_hangs_up(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
) -> None:
    phone = baresip_factory("bob").start()
    leg = originate(hooked_server, phone.uri)
    webhook_receiver.wait_for("leg.connected", leg_id=leg["id"])
    phone.wait_established()
    hooked_server.api("POST", f"/legs/{leg['id']}/dtmf", {"digits": "7"})
    event = phone.wait_for_event("CALL_DTMF_START")
    assert "7" in str(event)
    hooked_server.api("DELETE", f"/legs/{leg['id']}")
    phone.wait_closed()
    end = webhook_receiver.wait_for("leg.disconnected", leg_id=leg["id"])
    assert end["cdr"]["reason"] == "api_hangup"


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "G722", "opus"])
def test_tone_reaches_baresip_at_right_frequency_and_level(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    codec: str,
) -> None:
    """A 425 Hz tone at -13 dBFS (de_dial) sent by the server is heard by baresip as such."""
    phone = baresip_factory(f"bob-{codec.lower()}", codecs=[codec]).start()
    leg = originate(hooked_server, phone.uri, codecs=[codec])
    webhook_receiver.wait_for("leg.connected", leg_id=leg["id"])
    phone.wait_established()
    response = hooked_server.api("POST", f"/legs/{leg['id']}/play", {"tone": "de_dial"})
    assert response.status_code == 200, response.text
    time.sleep(2.5)
    hooked_server.api("DELETE", f"/legs/{leg['id']}")
    phone.wait_closed()
    rate, heard = phone.heard()
    assert rate in (8000, 16000, 48000)
    # The tone section: the last 1.5 s before the hang-up, trimmed of edges.
    active = np.flatnonzero(np.abs(heard) > 0.01)
    assert active.size > rate, "baresip heard no tone"
    tone = heard[active[0] + rate // 4 : active[-1] - rate // 10]
    assert tone.size > rate
    assert dominant_frequency(tone, rate) == pytest.approx(425.0, abs=3.0)
    assert level_dbfs(tone) == pytest.approx(-13.0, abs=1.5)
    # A clean tone: nothing else near the level of the tone's own band.
    assert band_energy_db(tone, rate, 425.0, 40.0) - level_dbfs(tone) > -0.5
