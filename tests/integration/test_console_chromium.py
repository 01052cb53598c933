"""The browser console in headless Chromium: the page joins a room that has a SIP phone in it
from a (fake) microphone playing a tone; the phone hears the browser, the page's WebAudio
analyser hears the phone, the participants list shows both, and a screenshot of it is kept
as a test artifact."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers.audio import band_energy_db, tone, write_wav
from tests.helpers.baresip import BaresipFactory
from tests.helpers.chromium import Chromium
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver

BROWSER_HZ = 700
PHONE_HZ = 1100
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", Path(__file__).parents[2] / "test-artifacts"))


def test_console_joins_a_room_with_a_phone_and_both_hear_each_other(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    hooks = webhook_receiver
    phone = baresip_factory("phone", sine_hz=PHONE_HZ, codecs=["PCMU"]).start()
    sip_leg = originate(hooked_server, phone.uri, room_id="console-room")["id"]
    hooks.wait_for("leg.joined_room", leg_id=sip_leg, room_id="console-room")
    microphone = write_wav(tmp_path / "mic.wav", 48000, tone(BROWSER_HZ, 10_000, 48000, -12.0))

    with Chromium(tmp_path, fake_audio=microphone) as browser:
        browser.open(f"{hooked_server.http}/console/?room=console-room")
        assert browser.evaluate("document.title") == "Callboard console"
        browser.evaluate("document.getElementById('join').click()")
        leg = browser.wait_for("window.callboardConsole.state.legId", timeout=15)
        connected = hooks.wait_for("leg.connected", leg_id=leg, timeout=15)
        assert connected["leg_type"] == "webrtc" and connected["app_id"] == "console"
        hooks.wait_for("leg.joined_room", leg_id=leg, room_id="console-room")
        joined_at = time.monotonic()
        # The participants list, kept live over VSI, shows the phone and the browser.
        browser.wait_for("document.querySelectorAll('#participants li[data-leg-id]').length == 2")
        time.sleep(2.5)

        levels = browser.evaluate(f"window.callboardConsole.levels([{BROWSER_HZ}, {PHONE_HZ}])")
        assert levels is not None, "the page has no remote audio"
        own, phone_level = levels
        assert phone_level > -60, f"the browser does not hear the phone: {levels} dB"
        assert phone_level - own > 20, f"the browser hears itself: {levels} dB"
        shot = browser.screenshot(ARTIFACTS / "console-two-participants.png")
        assert shot.stat().st_size > 10_000

        answered = hooks.wait_for("leg.connected", leg_id=sip_leg).request.monotonic
        rate, piece = phone.heard_window(answered, joined_at + 0.5, 1.5)
        bands = {f: band_energy_db(piece, rate, f, 60.0) for f in (BROWSER_HZ, PHONE_HZ)}
        assert bands[BROWSER_HZ] > -35, f"the phone does not hear the browser: {bands}"
        assert bands[BROWSER_HZ] - bands[PHONE_HZ] > 20, f"the phone hears itself: {bands}"

        # DTMF from the keypad (RTCDTMFSender) reaches the server.
        browser.evaluate(
            "[...document.querySelectorAll('#keypad button')].find(b => b.textContent == '5')"
            ".click()"
        )
        assert hooks.wait_for("dtmf.received", leg_id=leg)["digit"] == "5"

        # The room's controls, each through its button.
        def click(button: str) -> None:
            browser.evaluate(f"document.getElementById('{button}').click()")

        click("mute")
        hooks.wait_for("leg.muted", leg_id=leg)
        click("deaf")
        hooks.wait_for("leg.deaf", leg_id=leg)
        browser.wait_for("document.getElementById('deaf').textContent == 'Undeafen'")
        click("record")
        hooks.wait_for("recording.started", room_id="console-room")
        click("play-tone")
        hooks.wait_for("playback.started", room_id="console-room")
        click("speak")
        hooks.wait_for("tts.started", room_id="console-room", timeout=30)
        callee = baresip_factory("callee", sine_hz=500, codecs=["PCMU"]).start()
        browser.evaluate(f"document.getElementById('dial-uri').value = '{callee.uri}'")
        click("dial")
        dialed = hooks.wait_for(
            lambda e: e["type"] == "leg.joined_room" and e["leg_id"] not in (leg, sip_leg),
            timeout=15,
        )
        assert dialed["room_id"] == "console-room"
        browser.wait_for("document.querySelectorAll('#participants li[data-leg-id]').length == 3")
        click("record")
        hooks.wait_for("recording.finished", room_id="console-room", timeout=15)

        browser.evaluate("document.getElementById('hangup').click()")
        ended = hooks.wait_for("leg.disconnected", leg_id=leg)
        assert ended["cdr"]["reason"] == "api_hangup"
        assert ended["quality"]["rtp_packets_received"] > 100
    hooked_server.api("DELETE", f"/legs/{sip_leg}")
    hooked_server.api("DELETE", f"/legs/{dialed['leg_id']}")


def test_the_console_asks_for_the_key_of_a_server_that_requires_one(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """API_KEYS set: the page shows its key field at once; with the key typed in, its REST
    calls and its VSI WebSocket (key as `token`) are let in."""
    server = server_factory(API_KEYS="console-key-1")
    with Chromium(tmp_path) as browser:
        browser.open(f"{server.http}/console/?room=keyed")
        browser.wait_for("!document.getElementById('key-row').hidden", timeout=10)
        assert "API key" in browser.evaluate("document.getElementById('status').textContent")
        browser.evaluate(
            "const k = document.getElementById('api-key'); k.value = 'console-key-1';"
            "k.dispatchEvent(new Event('change')); window.keyedRooms = null;"
            "callboardConsole.api('GET', '/v1/rooms').then((r) => { window.keyedRooms = r; });"
        )
        assert browser.wait_for("Array.isArray(window.keyedRooms)", timeout=10)
        assert browser.evaluate("sessionStorage.getItem('callboard-key')") == "console-key-1"
