"""Cloud text-to-speech end to end: a server pointed at a provider's stand-in (by its base URL,
as a user would point it at a regional endpoint) speaks into a call; what the far end hears is
the stand-in's signal (each voice is a sine of its own frequency). Errors, retries and the
disk cache across a restart are checked through the server's events and the stand-in's
request count."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.audio import active_spans, dominant_frequency
from tests.helpers.room_ear import RATE, RoomEar
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.standins import start_standin
from tests.helpers.standins.common import signal_seconds
from tests.helpers.standins.deepgram import DEFAULT_KEY as DG_KEY
from tests.helpers.standins.deepgram import DeepgramStandin
from tests.helpers.standins.elevenlabs import DEFAULT_KEY, ElevenLabsStandin
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect

TEXT = "Your table for two is ready now."


@pytest.fixture
def elevenlabs() -> Iterator[tuple[ElevenLabsStandin, str]]:
    standin = ElevenLabsStandin()
    base, stop = start_standin(standin)
    yield standin, base
    stop()


def call_with_ear(
    a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver, room: str
) -> tuple[str, RoomEar]:
    """A calls B; B's leg sits in a room with a listening participant: what A sends is heard."""
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")})
    assert response.status_code == 201, response.text
    a_leg = response.json()["id"]
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
    assert b.api("POST", f"/rooms/{room}/legs", {"leg_id": b_leg}).status_code == 200
    return a_leg, RoomEar(b, room)


def speak(server: ServerProcess, leg: str, **body: object) -> str:
    response = server.api("POST", f"/legs/{leg}/tts", body)
    assert response.status_code == 200, response.text
    return str(response.json()["tts_id"])


def test_elevenlabs_voice_by_name_is_heard_and_cached_across_a_restart(
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    elevenlabs: tuple[ElevenLabsStandin, str],
    tmp_path: Path,
) -> None:
    hooks = webhook_receiver
    standin, base = elevenlabs
    env = {
        "WEBHOOK_URL": hooks.url,
        "ELEVENLABS_BASE_URL": base,
        "ELEVENLABS_API_KEY": DEFAULT_KEY,
        "TTS_CACHE_ENABLED": "true",
        "TTS_CACHE_DIR": str(tmp_path / "cache"),
    }
    a = server_factory(**env)
    b = server_factory(WEBHOOK_URL=hooks.url)
    a_leg, ear = call_with_ear(a, b, hooks, "cloud")
    try:
        since = hooks.mark()
        t0 = time.monotonic()
        tts_id = speak(a, a_leg, text=TEXT, voice="Rachel")  # elevenlabs: the default now
        hooks.wait_for("tts.started", since=since, tts_id=tts_id)
        finished = hooks.wait_for("tts.finished", timeout=15, since=since, tts_id=tts_id)
        assert finished["reason"] == "completed"
        heard = ear.listen(finished.request.monotonic - t0 + 0.3, start=t0)
        spans = active_spans(heard, RATE, threshold_dbfs=-30)
        start, end = spans[0][0], spans[-1][1]
        assert end - start == pytest.approx(signal_seconds(TEXT), abs=0.12)
        body = heard[int((start + 0.1) * RATE) : int((end - 0.1) * RATE)]
        assert dominant_frequency(body, RATE) == pytest.approx(440, abs=3)  # Rachel's sine
        assert standin.knobs.count("/v1/text-to-speech") == 1
    finally:
        ear.close()
    # A restart: a new instance over the same cache directory answers without the provider.
    a.stop()
    a2 = server_factory(**env)
    a_leg2, ear2 = call_with_ear(a2, b, hooks, "cloud2")
    try:
        since = hooks.mark()
        t0 = time.monotonic()
        tts_id = speak(a2, a_leg2, text=TEXT, voice="Rachel")
        finished = hooks.wait_for("tts.finished", timeout=15, since=since, tts_id=tts_id)
        assert hooks.events("tts.started", since=since)
        heard = ear2.listen(finished.request.monotonic - t0 + 0.3, start=t0)
        spans = active_spans(heard, RATE, threshold_dbfs=-30)
        assert spans[-1][1] - spans[0][0] == pytest.approx(signal_seconds(TEXT), abs=0.12)
        # The voice name is resolved (one lookup), but nothing is synthesised again.
        assert standin.knobs.count("/v1/text-to-speech") == 1
    finally:
        ear2.close()


def test_provider_errors_retries_and_keys(
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    elevenlabs: tuple[ElevenLabsStandin, str],
) -> None:
    hooks = webhook_receiver
    standin, base = elevenlabs
    deepgram = DeepgramStandin()
    dg_base, dg_stop = start_standin(deepgram)
    try:
        a = server_factory(
            WEBHOOK_URL=hooks.url, ELEVENLABS_BASE_URL=base, DEEPGRAM_BASE_URL=dg_base
        )
        b = server_factory(WEBHOOK_URL=hooks.url)
        a_leg, _ = connect(a, b, hooks)
        # No key configured: an explicit cloud provider is a 503 (local stays the default).
        no_key = a.api("POST", f"/legs/{a_leg}/tts", {"text": "hi", "provider": "elevenlabs"})
        assert no_key.status_code == 503 and "no elevenlabs API key" in no_key.json()["error"]
        # A wrong key: the provider's own message, tts.error only.
        since = hooks.mark()
        bad = speak(a, a_leg, text="hi", provider="elevenlabs", voice="Rachel", api_key="nope")
        error = hooks.wait_for("tts.error", since=since, tts_id=bad)
        assert "401" in error["error"] and error["leg_id"] == a_leg
        assert not hooks.events("tts.started", since=since)
        # Two 503s, then success: retried with a back-off, heard once.
        standin.knobs.fail_next(503, count=2)
        since = hooks.mark()
        ok = speak(a, a_leg, text="hi", provider="elevenlabs", voice="Rachel", api_key=DEFAULT_KEY)
        assert hooks.wait_for("tts.finished", timeout=15, since=since, tts_id=ok)["reason"] == (
            "completed"
        )
        # Deepgram's error body reaches the event.
        since = hooks.mark()
        missing = speak(
            a,
            a_leg,
            text="hi",
            provider="deepgram",
            voice="aura-nope-en",
            api_key=DG_KEY,
        )
        error = hooks.wait_for("tts.error", since=since, tts_id=missing)
        assert "400" in error["error"]
    finally:
        dg_stop()


@dataclass
class CloudSetup:
    """One provider's stand-in, served, with what a server needs to reach it."""

    standin: Any
    voice: str
    frequency: float  # of the stand-in's sine for `voice`
    env: dict[str, str]
    synth_path: str  # the synthesis requests' path prefix at the stand-in


@contextmanager
def cloud(provider: str) -> Iterator[CloudSetup]:
    from tests.helpers.standins import azure_tts, google_tts, polly
    from tests.helpers.standins import deepgram as deepgram_tts

    standin: Any
    if provider == "elevenlabs":
        standin, voice, frequency = ElevenLabsStandin(), "21m00Tcm4TlvDq8ikWAM", 440.0
    elif provider == "deepgram":
        standin, voice, frequency = deepgram_tts.DeepgramStandin(), "aura-2-thalia-en", 520.0
    elif provider == "google":
        standin, voice = google_tts.GoogleTtsStandin(), "en-US-Neural2-F"
        frequency = google_tts.voice_frequency(voice)
    elif provider == "aws":
        standin, voice, frequency = polly.PollyStandin(), "Joanna", 440.0
    else:
        standin, voice = azure_tts.AzureTtsStandin(), "en-US-JennyNeural"
        frequency = azure_tts.voice_frequency(voice)
    base, stop = start_standin(standin)
    env = {
        "elevenlabs": {"ELEVENLABS_BASE_URL": base, "ELEVENLABS_API_KEY": DEFAULT_KEY},
        "deepgram": {"DEEPGRAM_BASE_URL": base, "DEEPGRAM_API_KEY": DG_KEY},
        "google": {"GOOGLE_TTS_BASE_URL": base, "GOOGLE_API_KEY": google_tts.DEFAULT_KEY},
        "aws": {
            "AWS_ENDPOINT_URL_POLLY": base,
            "AWS_ACCESS_KEY_ID": polly.DEFAULT_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": polly.DEFAULT_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        "azure": {"AZURE_TTS_BASE_URL": base, "AZURE_SPEECH_KEY": azure_tts.DEFAULT_KEY},
    }[provider]
    path = {
        "elevenlabs": "/v1/text-to-speech",
        "deepgram": "/v1/speak",
        "google": "/v1/text:synthesize",
        "aws": "/v1/speech",
        "azure": "/cognitiveservices/v1",
    }[provider]
    try:
        yield CloudSetup(standin, voice, frequency, env, path)
    finally:
        stop()


def heard_signal(heard: np.ndarray) -> tuple[float, float]:
    """(seconds of sound, its dominant frequency) in what a room ear heard."""
    spans = active_spans(heard, RATE, threshold_dbfs=-30)
    assert spans, "nothing was heard"
    start, end = spans[0][0], spans[-1][1]
    body = heard[int((start + 0.1) * RATE) : int((end - 0.1) * RATE)]
    return end - start, dominant_frequency(body, RATE)


@pytest.mark.parametrize("provider", ["deepgram", "google", "aws", "azure"])
def test_every_cloud_provider_is_heard_through_the_server(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, provider: str
) -> None:
    """The production client of each provider, pointed at its stand-in by configuration,
    speaks into a call: the far end hears the stand-in's sine for that voice, for as long as
    the stand-in makes it."""
    hooks = webhook_receiver
    with cloud(provider) as setup:
        a = server_factory(WEBHOOK_URL=hooks.url, **setup.env)
        b = server_factory(WEBHOOK_URL=hooks.url)
        a_leg, ear = call_with_ear(a, b, hooks, f"ear-{provider}")
        try:
            since = hooks.mark()
            t0 = time.monotonic()
            tts_id = speak(a, a_leg, text=TEXT, voice=setup.voice, provider=provider)
            finished = hooks.wait_for("tts.finished", timeout=15, since=since, tts_id=tts_id)
            assert finished["reason"] == "completed", finished
            seconds, frequency = heard_signal(
                ear.listen(finished.request.monotonic - t0 + 0.3, start=t0)
            )
            assert seconds == pytest.approx(signal_seconds(TEXT), abs=0.12)
            assert frequency == pytest.approx(setup.frequency, abs=3)
        finally:
            ear.close()


SHORT = "One moment please."


@pytest.mark.parametrize("provider", ["elevenlabs", "deepgram", "google", "aws", "azure"])
def test_slow_and_dropped_answers_through_the_server(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, provider: str
) -> None:
    """Each provider's client as the server runs it: a slow first byte only delays the
    speech; a connection cut before any audio is retried and heard once, whole; a connection
    cut once audio has played is one tts.error (replaying would repeat words), and the call
    goes on."""
    hooks = webhook_receiver
    with cloud(provider) as setup:
        a = server_factory(WEBHOOK_URL=hooks.url, **setup.env)
        b = server_factory(WEBHOOK_URL=hooks.url)
        a_leg, ear = call_with_ear(a, b, hooks, f"faults-{provider}")
        knobs = setup.standin.knobs
        try:
            # Slow (1 s before anything), cut before the first byte of audio, then slow again.
            knobs.first_byte_delay = 1.0
            knobs.drop_next(after_bytes=0)
            since = hooks.mark()
            t0 = time.monotonic()
            tts_id = speak(a, a_leg, text=SHORT, voice=setup.voice, provider=provider)
            started = hooks.wait_for("tts.started", timeout=15, since=since, tts_id=tts_id)
            # Two slow answers and the back-off between them come before the first audio.
            assert started.request.monotonic - t0 >= 2.4
            finished = hooks.wait_for("tts.finished", timeout=15, since=since, tts_id=tts_id)
            assert finished["reason"] == "completed", finished
            heard = ear.listen(finished.request.monotonic - t0 + 0.3, start=t0)
            seconds, frequency = heard_signal(heard)
            assert seconds == pytest.approx(signal_seconds(SHORT), abs=0.12)
            assert frequency == pytest.approx(setup.frequency, abs=3)
            assert knobs.count(setup.synth_path) == 2
            assert not hooks.events("tts.error", since=since)

            # Cut in the middle of the audio.
            knobs.first_byte_delay = 0.0
            knobs.drop_next(after_bytes=12_000)
            since = hooks.mark()
            t0 = time.monotonic()
            tts_id = speak(a, a_leg, text=TEXT, voice=setup.voice, provider=provider)
            if provider == "google":
                # One JSON answer: nothing plays until all of it has come, so a cut is retried.
                finished = hooks.wait_for("tts.finished", timeout=15, since=since, tts_id=tts_id)
                assert finished["reason"] == "completed"
            else:
                error = hooks.wait_for("tts.error", timeout=15, since=since, tts_id=tts_id)
                assert error["leg_id"] == a_leg and error["error"]
                assert not hooks.events("tts.finished", since=since, tts_id=tts_id)
            assert a.get_leg(a_leg)["state"] == "connected"  # type: ignore[index]
        finally:
            ear.close()


@pytest.mark.parametrize("provider", ["deepgram", "google", "aws", "azure"])
def test_a_wrong_key_is_a_tts_error_with_the_providers_message(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, provider: str
) -> None:
    """Each production client against its stand-in with a key the stand-in refuses: one
    tts.error carrying the provider's own complaint, no tts.started, the call goes on."""
    hooks = webhook_receiver
    wrong = {"deepgram": "wrong-key", "google": "bad", "aws": "AKIDWRONG:nope", "azure": "bad"}
    with cloud(provider) as setup:
        endpoint = {k: v for k, v in setup.env.items() if k.endswith(("_URL", "_URL_POLLY"))}
        a = server_factory(WEBHOOK_URL=hooks.url, **endpoint)  # the address, not the key
        b = server_factory(WEBHOOK_URL=hooks.url)
        a_leg, _ = connect(a, b, hooks)
        since = hooks.mark()
        tts_id = speak(
            a, a_leg, text=TEXT, voice=setup.voice, provider=provider, api_key=wrong[provider]
        )
        error = hooks.wait_for("tts.error", timeout=15, since=since, tts_id=tts_id)
        assert error["error"] and error["leg_id"] == a_leg
        complaint = {
            "deepgram": "401",
            "google": "400",
            "aws": "UnrecognizedClient",
            "azure": "401",
        }
        assert complaint[provider] in error["error"], error["error"]
        assert not hooks.events("tts.started", since=since)
        assert a.get_leg(a_leg)["state"] == "connected"  # type: ignore[index]
