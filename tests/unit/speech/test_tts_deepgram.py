"""The Deepgram Aura client against the Deepgram stand-in: the audio it yields is the stand-in's
signal, headerless, and every failure becomes the right TtsError."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from callboard.config import Settings
from callboard.speech.tts.base import SAMPLE_RATE, TtsError, TtsRequest
from callboard.speech.tts.cloud_http import HttpTimeouts
from callboard.speech.tts.deepgram import DeepgramTts
from tests.helpers.standins import start_standin
from tests.helpers.standins.common import signal_samples
from tests.helpers.standins.deepgram import DEFAULT_KEY, DeepgramStandin
from tests.unit.media.audio_analysis import peak_frequency

THALIA = "aura-2-thalia-en"  # 520 Hz in the stand-in
TEXT = "Thank you for calling, how can I help you today?"  # 2.45 s of signal
FAST = HttpTimeouts(connect=1.0, first_byte=0.4, between_chunks=0.4)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[DeepgramStandin, str]]:
    standin = DeepgramStandin()
    base_url, stop = start_standin(standin)
    yield standin, base_url
    stop()


@pytest.fixture
def standin(server: tuple[DeepgramStandin, str]) -> DeepgramStandin:
    server[0].knobs.reset()
    return server[0]


def make(
    server: tuple[DeepgramStandin, str],
    key: str | None = DEFAULT_KEY,
    timeouts: HttpTimeouts | None = None,
) -> DeepgramTts:
    settings = Settings(instance_id="t", deepgram_api_key=key, deepgram_base_url=server[1])
    return DeepgramTts(settings, timeouts=timeouts)


async def collect(provider: DeepgramTts, request: TtsRequest) -> list[bytes]:
    try:
        return [chunk async for chunk in provider.synthesize(request)]
    finally:
        await provider.aclose()


async def failure(provider: DeepgramTts, request: TtsRequest) -> TtsError:
    with pytest.raises(TtsError) as caught:
        await collect(provider, request)
    return caught.value


def pcm(chunks: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(chunks), dtype="<i2")


async def test_audio_is_the_model_signal_at_16k_without_header(
    server: tuple[DeepgramStandin, str], standin: DeepgramStandin
) -> None:
    chunks = await collect(make(server), TtsRequest(TEXT, voice=THALIA))

    samples = pcm(chunks)
    assert not b"".join(chunks).startswith(b"RIFF")
    assert len(samples) == signal_samples(TEXT, SAMPLE_RATE)
    assert peak_frequency(samples, SAMPLE_RATE) == pytest.approx(520.0, abs=1.0)
    assert np.abs(samples).max() > 9000
    assert len(chunks) > 10
    assert all(len(c) % 2 == 0 for c in chunks)

    sent = standin.knobs.last("/v1/speak")
    assert sent.method == "POST"
    assert sent.query == {
        "model": THALIA,
        "encoding": "linear16",
        "sample_rate": "16000",
        "container": "none",
    }
    assert sent.headers["authorization"] == f"Token {DEFAULT_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {"text": TEXT}


async def test_voice_chooses_the_model(
    server: tuple[DeepgramStandin, str], standin: DeepgramStandin
) -> None:
    samples = pcm(await collect(make(server), TtsRequest("Hola.", voice="aura-2-celeste-es")))

    assert len(samples) == SAMPLE_RATE  # the stand-in's 1 s minimum
    assert peak_frequency(samples, SAMPLE_RATE) == pytest.approx(600.0, abs=1.0)


async def test_unknown_model_surfaces_the_provider_message(
    server: tuple[DeepgramStandin, str],
) -> None:
    error = await failure(make(server), TtsRequest(TEXT, voice="aura-2-nobody-xx"))

    assert not error.transient
    assert str(error) == (
        "deepgram HTTP 400: Bad Request: No such model/language/tier combination found."
    )


async def test_bad_key_is_final_with_the_provider_message(
    server: tuple[DeepgramStandin, str],
) -> None:
    error = await failure(make(server, key="wrong"), TtsRequest(TEXT, voice=THALIA))

    assert not error.transient
    assert str(error) == "deepgram HTTP 401: Invalid credentials."


async def test_request_key_overrides_the_setting(server: tuple[DeepgramStandin, str]) -> None:
    request = TtsRequest(TEXT, voice=THALIA, api_key=DEFAULT_KEY)
    assert pcm(await collect(make(server, key="wrong"), request)).size > 0


def test_configured_by_setting_or_request(server: tuple[DeepgramStandin, str]) -> None:
    assert make(server).configured(TtsRequest("x"))
    assert not make(server, key=None).configured(TtsRequest("x"))
    assert make(server, key=None).configured(TtsRequest("x", api_key="k"))
    assert DeepgramTts.needs_voice


async def test_provider_error_bodies_surface(
    server: tuple[DeepgramStandin, str], standin: DeepgramStandin
) -> None:
    error = await failure(make(server), TtsRequest("a" * 2001, voice=THALIA))
    assert not error.transient
    assert str(error) == ("deepgram HTTP 413: Input text exceeds the maximum of 2000 characters.")

    # The newer generic shape.
    newer = {"category": "INVALID_JSON", "message": "Invalid JSON.", "details": "line 1"}
    standin.knobs.fail_next(400, body=newer)
    error = await failure(make(server), TtsRequest(TEXT, voice=THALIA))
    assert str(error) == "deepgram HTTP 400: Invalid JSON.: line 1"

    standin.knobs.fail_next(402, body={"err_code": "ASR_PAYMENT_REQUIRED", "err_msg": ""})
    error = await failure(make(server), TtsRequest(TEXT, voice=THALIA))
    assert str(error) == "deepgram HTTP 402: ASR_PAYMENT_REQUIRED"


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limit_and_server_errors_are_transient(
    server: tuple[DeepgramStandin, str], standin: DeepgramStandin, status: int
) -> None:
    standin.knobs.fail_next(status)
    error = await failure(make(server), TtsRequest(TEXT, voice=THALIA))

    assert error.transient
    assert str(error).startswith(f"deepgram HTTP {status}: ")
    assert pcm(await collect(make(server), TtsRequest(TEXT, voice=THALIA))).size > 0


async def test_dropped_connection_mid_stream_is_transient(
    server: tuple[DeepgramStandin, str], standin: DeepgramStandin
) -> None:
    standin.knobs.drop_next(after_bytes=7777)
    provider = make(server)
    received: list[bytes] = []
    with pytest.raises(TtsError) as caught:
        try:
            async for chunk in provider.synthesize(TtsRequest(TEXT, voice=THALIA)):
                received.append(chunk)
        finally:
            await provider.aclose()

    assert caught.value.transient
    assert "connection broken" in str(caught.value)
    assert len(b"".join(received)) == 7776  # whole samples of what came before the cut


@pytest.mark.parametrize("after_headers", [False, True], ids=["no-headers", "headers-only"])
async def test_slow_first_byte_is_transient(
    server: tuple[DeepgramStandin, str], standin: DeepgramStandin, after_headers: bool
) -> None:
    standin.knobs.first_byte_delay = 1.5
    standin.knobs.delay_after_headers = after_headers
    started = time.monotonic()
    error = await failure(make(server, timeouts=FAST), TtsRequest(TEXT, voice=THALIA))

    assert error.transient
    assert str(error) == "deepgram: no audio within 0.4 s"
    assert time.monotonic() - started < 1.2


async def test_stalled_stream_is_transient(
    server: tuple[DeepgramStandin, str], standin: DeepgramStandin
) -> None:
    standin.knobs.stall_next(1.5)
    error = await failure(make(server, timeouts=FAST), TtsRequest(TEXT, voice=THALIA))

    assert error.transient
    assert "stalled for 0.4 s" in str(error)


async def test_the_standin_rejects_what_the_service_rejects(
    server: tuple[DeepgramStandin, str],
) -> None:
    url = f"{server[1]}/v1/speak"
    auth = {"Authorization": f"token {DEFAULT_KEY}"}  # the scheme is case-insensitive
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, json={"text": "hi"})
        assert answer.status_code == 401
        assert answer.json()["err_code"] == "INVALID_AUTH"

        answer = await client.post(
            url,
            params={"encoding": "mulaw", "sample_rate": "24000"},
            headers=auth,
            json={"text": "hi"},
        )
        assert answer.status_code == 400
        assert answer.json()["err_code"] == "INVALID_QUERY_PARAMETER"
        assert (
            "sample_rate must be one of 8000, 16000 when encoding=mulaw"
            in (answer.json()["err_msg"])
        )

        answer = await client.post(
            url, params={"encoding": "pcm"}, headers=auth, json={"text": "hi"}
        )
        assert answer.json()["err_code"] == "INVALID_QUERY_PARAMETER"

        answer = await client.post(url, headers=auth, json={"text": "hi", "url": "http://x"})
        assert answer.status_code == 400
        assert answer.json()["err_code"] == "PAYLOAD_ERROR"

        answer = await client.post(
            url, headers={**auth, "Content-Type": "application/xml"}, content=b"<x/>"
        )
        assert answer.status_code == 415

        # No container: a WAV header precedes the samples (24 kHz linear16 by default).
        answer = await client.post(url, headers=auth, json={"text": "hi"})
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "audio/wav"
        assert answer.content[:4] == b"RIFF"
        assert len(answer.content) == 44 + 24000 * 2
        assert answer.headers["dg-model-name"] == "aura-asteria-en"
        assert answer.headers["dg-char-count"] == "2"

        answer = await client.post(
            url,
            params={"encoding": "mulaw", "sample_rate": "8000", "container": "none"},
            headers={**auth, "Content-Type": "text/plain"},
            content=b"hi",
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "audio/mulaw;rate=8000"
        assert len(answer.content) == 8000
