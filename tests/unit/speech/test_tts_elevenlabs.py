"""The ElevenLabs client against the ElevenLabs stand-in: the audio it yields is the stand-in's
signal, voices resolve by name, and every failure becomes the right TtsError."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import numpy as np
import pytest

from callboard.config import Settings
from callboard.speech.tts.base import SAMPLE_RATE, TtsError, TtsRequest
from callboard.speech.tts.cloud_http import HttpTimeouts
from callboard.speech.tts.elevenlabs import DEFAULT_MODEL, ElevenLabsTts
from tests.helpers.standins import start_standin
from tests.helpers.standins.common import signal_samples
from tests.helpers.standins.elevenlabs import DEFAULT_KEY, ElevenLabsStandin
from tests.unit.media.audio_analysis import peak_frequency

TTS_PATH = "/v1/text-to-speech/"
RACHEL = "21m00Tcm4TlvDq8ikWAM"  # 440 Hz in the stand-in
GEORGE = "JBFqnCBsd6RMkjVDRZzb"  # 660 Hz
TEXT = "Your call is important to us, please hold."  # 2.1 s of signal
FAST = HttpTimeouts(connect=1.0, first_byte=0.4, between_chunks=0.4)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ElevenLabsStandin, str]]:
    standin = ElevenLabsStandin()
    base_url, stop = start_standin(standin)
    yield standin, base_url
    stop()


@pytest.fixture
def standin(server: tuple[ElevenLabsStandin, str]) -> ElevenLabsStandin:
    server[0].knobs.reset()
    return server[0]


def make(
    server: tuple[ElevenLabsStandin, str],
    key: str | None = DEFAULT_KEY,
    timeouts: HttpTimeouts | None = None,
) -> ElevenLabsTts:
    settings = Settings(instance_id="t", elevenlabs_api_key=key, elevenlabs_base_url=server[1])
    return ElevenLabsTts(settings, timeouts=timeouts)


async def collect(provider: ElevenLabsTts, request: TtsRequest) -> list[bytes]:
    try:
        return [chunk async for chunk in provider.synthesize(request)]
    finally:
        await provider.aclose()


async def failure(provider: ElevenLabsTts, request: TtsRequest) -> TtsError:
    with pytest.raises(TtsError) as caught:
        await collect(provider, request)
    return caught.value


def pcm(chunks: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(chunks), dtype="<i2")


async def test_audio_is_the_voice_signal_at_16k(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    chunks = await collect(make(server), TtsRequest(TEXT, voice=RACHEL))

    samples = pcm(chunks)
    assert len(samples) == signal_samples(TEXT, SAMPLE_RATE)  # 16 kHz: 2.1 s, to the sample
    assert peak_frequency(samples, SAMPLE_RATE) == pytest.approx(440.0, abs=1.0)
    assert np.abs(samples).max() > 9000  # the stand-in's level, not noise
    assert len(chunks) > 10  # streamed as it came, not gathered into one
    assert all(len(c) % 2 == 0 for c in chunks)  # the stand-in's 1001-byte chunks re-aligned

    sent = standin.knobs.last(TTS_PATH)
    assert sent.method == "POST"
    assert sent.path == f"/v1/text-to-speech/{RACHEL}/stream"
    assert sent.query == {"output_format": "pcm_16000"}
    assert sent.headers["xi-api-key"] == DEFAULT_KEY
    assert sent.json == {"text": TEXT, "model_id": DEFAULT_MODEL}


async def test_model_and_language_are_sent(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    request = TtsRequest("Hola.", voice=GEORGE, model_id="eleven_flash_v2_5", language="es-ES")
    samples = pcm(await collect(make(server), request))

    assert len(samples) == SAMPLE_RATE  # the stand-in's 1 s minimum
    assert peak_frequency(samples, SAMPLE_RATE) == pytest.approx(660.0, abs=1.0)
    assert standin.knobs.last(TTS_PATH).json == {
        "text": "Hola.",
        "model_id": "eleven_flash_v2_5",
        "language_code": "es",  # ISO 639-1, as the API takes it
    }


async def test_voice_by_name_is_resolved_once_per_key(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    provider = make(server)
    try:
        # The search for "rachel" also finds Domi (her description mentions Rachel) first.
        first = pcm([c async for c in provider.synthesize(TtsRequest(TEXT, voice="rachel"))])
        again = pcm([c async for c in provider.synthesize(TtsRequest(TEXT, voice="Rachel"))])
    finally:
        await provider.aclose()

    assert peak_frequency(first, SAMPLE_RATE) == pytest.approx(440.0, abs=1.0)
    assert peak_frequency(again, SAMPLE_RATE) == pytest.approx(440.0, abs=1.0)
    assert standin.knobs.count("/v2/voices") == 1  # the second name came from the cache
    lookup = standin.knobs.last("/v2/voices")
    assert lookup.query["search"] == "rachel"
    assert lookup.headers["xi-api-key"] == DEFAULT_KEY
    assert standin.knobs.last(TTS_PATH).path == f"/v1/text-to-speech/{RACHEL}/stream"


async def test_voice_search_follows_pages(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    saved = dict(standin.voices)
    try:
        # A search for "Crowd" finds 120 voices; the one named exactly that is the last.
        for i in range(120):
            name = "Crowd" if i == 119 else f"Crowd {i}"
            standin.add_voice(f"crowd{i:015d}", name, 300.0 + i)
        samples = pcm(await collect(make(server), TtsRequest("Hi.", voice="Crowd")))
    finally:
        standin.voices = saved

    assert peak_frequency(samples, SAMPLE_RATE) == pytest.approx(419.0, abs=1.0)
    assert standin.knobs.count("/v2/voices") == 2


async def test_unknown_voice_name_is_a_final_error(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    error = await failure(make(server), TtsRequest(TEXT, voice="Nobody"))

    assert not error.transient
    assert "no voice named 'Nobody'" in str(error)
    assert standin.knobs.count(TTS_PATH) == 0


async def test_unknown_voice_id_surfaces_the_provider_message(
    server: tuple[ElevenLabsStandin, str],
) -> None:
    error = await failure(make(server), TtsRequest(TEXT, voice="X" * 20))

    assert not error.transient
    assert str(error) == (
        "elevenlabs HTTP 404: A voice with the voice_id XXXXXXXXXXXXXXXXXXXX was not found."
    )


async def test_bad_key_is_final_with_the_provider_message(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    error = await failure(make(server, key="wrong"), TtsRequest(TEXT, voice=RACHEL))
    assert not error.transient
    assert str(error) == "elevenlabs HTTP 401: Invalid API key"

    # Also when the bad key is needed for a voice lookup first.
    error = await failure(make(server, key="wrong"), TtsRequest(TEXT, voice="Rachel"))
    assert not error.transient
    assert "Invalid API key" in str(error)


async def test_request_key_overrides_the_setting(server: tuple[ElevenLabsStandin, str]) -> None:
    request = TtsRequest(TEXT, voice=RACHEL, api_key=DEFAULT_KEY)
    assert pcm(await collect(make(server, key="wrong"), request)).size > 0

    error = await failure(make(server), replace(request, api_key="wrong"))
    assert "Invalid API key" in str(error)


def test_configured_by_setting_or_request(server: tuple[ElevenLabsStandin, str]) -> None:
    assert make(server).configured(TtsRequest("x"))
    assert not make(server, key=None).configured(TtsRequest("x"))
    assert make(server, key=None).configured(TtsRequest("x", api_key="k"))
    assert ElevenLabsTts.needs_voice


async def test_provider_error_bodies_surface(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    error = await failure(make(server), TtsRequest("a" * 10_001, voice=RACHEL))
    assert not error.transient
    assert "Text is too long: 10001 characters" in str(error)

    error = await failure(make(server), TtsRequest(TEXT, voice=RACHEL, model_id="eleven_v9"))
    assert str(error) == "elevenlabs HTTP 400: A model with model ID eleven_v9 does not exist."

    # The legacy shape and FastAPI's validation list.
    legacy = {"detail": {"status": "quota_exceeded", "message": "You have 3 credits left."}}
    standin.knobs.fail_next(401, body=legacy)
    error = await failure(make(server), TtsRequest(TEXT, voice=RACHEL))
    assert str(error) == "elevenlabs HTTP 401: You have 3 credits left."

    listed = {"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "x"}]}
    standin.knobs.fail_next(422, body=listed)
    error = await failure(make(server), TtsRequest(TEXT, voice=RACHEL))
    assert str(error) == "elevenlabs HTTP 422: body.text: field required"


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_rate_limit_and_server_errors_are_transient(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin, status: int
) -> None:
    standin.knobs.fail_next(status)
    error = await failure(make(server), TtsRequest(TEXT, voice=RACHEL))

    assert error.transient
    assert str(error).startswith(f"elevenlabs HTTP {status}: ")
    # The failure was one-shot: the retry a caller makes succeeds.
    assert pcm(await collect(make(server), TtsRequest(TEXT, voice=RACHEL))).size > 0


async def test_dropped_connection_mid_stream_is_transient(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    standin.knobs.drop_next(after_bytes=5001)
    provider = make(server)
    received: list[bytes] = []
    with pytest.raises(TtsError) as caught:
        try:
            async for chunk in provider.synthesize(TtsRequest(TEXT, voice=RACHEL)):
                received.append(chunk)
        finally:
            await provider.aclose()

    assert caught.value.transient
    assert "connection broken" in str(caught.value)
    assert len(b"".join(received)) == 5000  # what came before the cut, whole samples only


@pytest.mark.parametrize("after_headers", [False, True], ids=["no-headers", "headers-only"])
async def test_slow_first_byte_is_transient(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin, after_headers: bool
) -> None:
    standin.knobs.first_byte_delay = 1.5
    standin.knobs.delay_after_headers = after_headers
    started = time.monotonic()
    error = await failure(make(server, timeouts=FAST), TtsRequest(TEXT, voice=RACHEL))

    assert error.transient
    assert str(error) == "elevenlabs: no audio within 0.4 s"
    assert time.monotonic() - started < 1.2


async def test_stalled_stream_is_transient(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    standin.knobs.stall_next(1.5)
    error = await failure(make(server, timeouts=FAST), TtsRequest(TEXT, voice=RACHEL))

    assert error.transient
    assert "stalled for 0.4 s" in str(error)


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(
        instance_id="t", elevenlabs_api_key="k", elevenlabs_base_url=f"http://127.0.0.1:{port}"
    )
    error = await failure(ElevenLabsTts(settings), TtsRequest(TEXT, voice=RACHEL))

    assert error.transient
    assert "cannot connect" in str(error)


async def test_stopping_early_closes_the_stream(
    server: tuple[ElevenLabsStandin, str], standin: ElevenLabsStandin
) -> None:
    provider = make(server)
    stream = provider.synthesize(TtsRequest(TEXT, voice=RACHEL))
    first = await anext(stream)
    await stream.aclose()  # as a stopped job does
    await provider.aclose()
    assert len(first) % 2 == 0 and first


async def test_the_standin_rejects_what_the_service_rejects(
    server: tuple[ElevenLabsStandin, str],
) -> None:
    url = f"{server[1]}/v1/text-to-speech/{RACHEL}/stream"
    headers = {"xi-api-key": DEFAULT_KEY}
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, json={"text": "hi"})
        assert answer.status_code == 401
        assert answer.json()["detail"]["status"] == "invalid_api_key"

        answer = await client.post(
            url, params={"output_format": "pcm_11025"}, headers=headers, json={"text": "hi"}
        )
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["query", "output_format"]

        answer = await client.post(
            url,
            params={"output_format": "pcm_16000"},
            headers=headers,
            json={"model_id": DEFAULT_MODEL},
        )
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "text"]

        answer = await client.post(
            url, params={"output_format": "ulaw_8000"}, headers=headers, json={"text": "hi"}
        )
        assert answer.status_code == 200
        assert len(answer.content) == 8000  # 1 s of 8 kHz G.711, one byte a sample
