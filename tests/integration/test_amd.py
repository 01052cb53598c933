"""Answering-machine detection through the server, against baresip phones that answer with
a recorded WAV: a person's "Hello?", a voicemail greeting ending in a beep, and silence."""

from __future__ import annotations

import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers.baresip import BaresipFactory
from tests.helpers.server import ServerProcess
from tests.helpers.speech import espeak
from tests.helpers.webhooks import WebhookReceiver

RATE = 16000


def _speech(tmp_path: Path, text: str, speed: int) -> np.ndarray:
    audio = espeak(text, RATE, speed=speed, workdir=tmp_path)
    return audio / np.max(np.abs(audio)) * 0.3


def _wav(tmp_path: Path, name: str, *parts: np.ndarray) -> Path:
    audio = np.concatenate(parts)
    path = tmp_path / f"{name}.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes((audio * 32767).astype("<i2").tobytes())
    return path


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE))


def _beep(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return 0.25 * np.sin(2 * np.pi * hz * t)


def _order(hooks: WebhookReceiver, leg: str) -> list[str]:
    return [e["type"] for e in hooks.events(leg_id=leg)]


def test_a_person_is_human_and_only_then_joins_the_room(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    hello = _wav(tmp_path, "hello", _silence(0.5), _speech(tmp_path, "Hello?", 180))
    phone = baresip_factory("person", source_wav=hello, codecs=["PCMU"]).start()
    leg = originate(hooked_server, phone.uri, amd={}, room_id="agents")["id"]
    result = webhook_receiver.wait_for("amd.result", leg_id=leg, timeout=15)
    assert result["result"] == "human"
    assert 300 <= result["initial_silence_ms"] <= 1500
    assert 200 <= result["greeting_duration_ms"] <= 1200
    assert result["total_analysis_ms"] <= 3500
    webhook_receiver.wait_for("leg.joined_room", leg_id=leg, room_id="agents")
    order = _order(webhook_receiver, leg)
    assert order.index("leg.connected") < order.index("amd.result")
    assert order.index("amd.result") < order.index("leg.joined_room")
    hooked_server.api("DELETE", f"/legs/{leg}")


def test_a_voicemail_is_a_machine_its_beep_is_found_and_it_never_joins(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    greeting = _speech(
        tmp_path,
        "Hi, you have reached the voicemail of Jane. Please leave a message after the tone.",
        160,
    )
    wav = _wav(tmp_path, "vm", _silence(0.5), greeting, _silence(0.5), _beep(1000.0, 0.6))
    beep_end_s = 0.5 + len(greeting) / RATE + 0.5 + 0.6
    phone = baresip_factory("voicemail", source_wav=wav, codecs=["PCMU"]).start()
    leg = originate(hooked_server, phone.uri, amd={"beep_timeout": 10000}, room_id="agents")
    leg_id = leg["id"]
    result = webhook_receiver.wait_for("amd.result", leg_id=leg_id, timeout=15)
    assert result["result"] == "machine"
    assert 1400 <= result["greeting_duration_ms"] <= 1700
    beep = webhook_receiver.wait_for("amd.beep", leg_id=leg_id, timeout=15)
    assert "timeout" not in beep
    heard_end_ms = result["total_analysis_ms"] + beep["beep_ms"]
    # From the answer, give or take the phone's start-up and the line's jitter buffer.
    assert abs(heard_end_ms - beep_end_s * 1000) <= 400, (heard_end_ms, beep_end_s)
    time.sleep(0.5)
    view = hooked_server.api("GET", f"/legs/{leg_id}").json()
    assert view["state"] == "connected" and not view.get("room_id")
    assert "leg.joined_room" not in _order(webhook_receiver, leg_id)
    hooked_server.api("DELETE", f"/legs/{leg_id}")


def test_silence_is_no_speech_and_the_api_starts_and_checks_amd(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    quiet = _wav(tmp_path, "quiet", _silence(1.0))
    phone = baresip_factory("quiet", source_wav=quiet, codecs=["PCMU"]).start()
    leg = originate(hooked_server, phone.uri)["id"]
    webhook_receiver.wait_for("leg.connected", leg_id=leg, timeout=10)
    api = hooked_server.api
    bad = api("POST", f"/legs/{leg}/amd", json={"initial_silence_timeout": 6000})
    assert bad.status_code == 400 and "total_analysis_time" in bad.json()["error"]
    assert api("POST", f"/legs/{leg}/amd", json={"greeting_duration": "long"}).status_code == 400
    assert api("POST", "/legs/nope/amd", json={}).status_code == 404
    started = api("POST", f"/legs/{leg}/amd", json={"initial_silence_timeout": -1})
    assert started.status_code == 200 and started.json()["status"] == "started"
    assert api("POST", f"/legs/{leg}/amd", json={}).status_code == 409  # already running
    result = webhook_receiver.wait_for("amd.result", leg_id=leg, timeout=10)
    assert result["result"] == "no_speech"
    assert 2400 <= result["total_analysis_ms"] <= 2700  # -1 meant the default 2,500 ms
    # Again, and hang up mid-analysis: the verdict is not_sure, before leg.disconnected.
    assert api("POST", f"/legs/{leg}/amd", json={}).status_code == 200
    time.sleep(0.5)
    api("DELETE", f"/legs/{leg}")
    webhook_receiver.wait_for("leg.disconnected", leg_id=leg)
    results = webhook_receiver.events("amd.result", leg_id=leg)
    assert [r["result"] for r in results] == ["no_speech", "not_sure"]
    order = _order(webhook_receiver, leg)
    assert len(order) - 1 - order[::-1].index("amd.result") < order.index("leg.disconnected")
    assert api("POST", f"/legs/{leg}/amd", json={}).status_code == 404
