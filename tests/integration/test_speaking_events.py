"""speaking.started / speaking.stopped from real speech sent by a baresip phone."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.helpers.audio import read_wav_mono, white_noise, write_wav
from tests.helpers.baresip import BaresipFactory
from tests.helpers.peers import require_binary
from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver


def _speech_wav(tmp_path: Path) -> Path:
    """Two spoken phrases 2 s apart, then silence: two started/stopped pairs."""
    espeak = require_binary("espeak-ng")
    parts = []
    for i, text in enumerate(("Hello, this is a test call.", "Goodbye for now.")):
        path = tmp_path / f"phrase{i}.wav"
        subprocess.run([espeak, "-w", str(path), text], check=True, timeout=30)
        rate, mono = read_wav_mono(path)
        parts.append((rate, mono))
    rate = parts[0][0]
    gap = np.zeros(int(2.0 * rate))
    audio = np.concatenate([gap[: rate // 2], parts[0][1], gap, parts[1][1], gap, gap])
    out = tmp_path / "speech.wav"
    write_wav(out, rate, audio / max(1e-9, float(np.max(np.abs(audio)))) * 0.5)
    return out


def test_speech_gives_one_pair_per_phrase_and_room_id(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    hooks = webhook_receiver
    phone = baresip_factory("talker", source_wav=_speech_wav(tmp_path), codecs=["PCMU"]).start()
    leg = originate(hooked_server, phone.uri, codecs=["PCMU"], room_id="talk")["id"]
    hooks.wait_for("leg.connected", leg_id=leg)
    time.sleep(9.0)
    hooked_server.api("DELETE", f"/legs/{leg}")
    hooks.wait_for("leg.disconnected", leg_id=leg)
    events = [e for e in hooks.events(leg_id=leg) if e.type.startswith("speaking.")]
    assert [e.type for e in events] == ["speaking.started", "speaking.stopped"] * 2, events
    assert all(e["room_id"] == "talk" for e in events)


def test_noise_at_minus_50_dbfs_is_silence_and_muted_legs_are_quiet(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    hooks = webhook_receiver
    rate = 16000
    noise = white_noise(8000, rate, dbfs=-50.0)
    noisy = tmp_path / "noise.wav"
    write_wav(noisy, rate, noise)
    quiet = baresip_factory("hum", source_wav=noisy, codecs=["PCMU"]).start()
    leg = originate(hooked_server, quiet.uri, codecs=["PCMU"])["id"]
    hooks.wait_for("leg.connected", leg_id=leg)
    time.sleep(4.0)
    hooked_server.api("DELETE", f"/legs/{leg}")
    hooks.wait_for("leg.disconnected", leg_id=leg)
    assert not [e for e in hooks.events(leg_id=leg) if e.type.startswith("speaking.")]

    # A muted leg produces no speaking events even while its phone talks.
    phone = baresip_factory("muted", source_wav=_speech_wav(tmp_path), codecs=["PCMU"]).start()
    talker = originate(hooked_server, phone.uri, codecs=["PCMU"])["id"]
    hooks.wait_for("leg.connected", leg_id=talker)
    hooked_server.api("POST", f"/legs/{talker}/mute")
    time.sleep(5.0)
    hooked_server.api("DELETE", f"/legs/{talker}")
    hooks.wait_for("leg.disconnected", leg_id=talker)
    assert not [e for e in hooks.events(leg_id=talker) if e.type.startswith("speaking.")]
