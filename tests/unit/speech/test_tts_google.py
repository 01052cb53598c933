"""The Google Cloud TTS client against the Google stand-in: the audio it yields is the
stand-in's signal with the WAV header gone, the language comes from the voice name, Gemini
short names need `language`, and every failure becomes the right TtsError."""

from __future__ import annotations

import struct
import sys
import types
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from callboard.config import Settings
from callboard.speech.tts import google as google_module
from callboard.speech.tts.base import SAMPLE_RATE, TtsError, TtsRequest
from callboard.speech.tts.cloud_http import HttpTimeouts
from callboard.speech.tts.google import GoogleTts, language_of, wav_pcm
from tests.helpers.standins import start_standin
from tests.helpers.standins.common import signal_seconds
from tests.helpers.standins.google_tts import (
    DEFAULT_KEY,
    DEFAULT_TOKEN,
    PATH,
    GoogleTtsStandin,
    signal,
    voice_frequency,
    wav,
)
from tests.unit.media.audio_analysis import peak_frequency

VOICE = "en-US-Neural2-F"
TEXT = "Thank you for calling, how may I help?"  # 1.9 s of signal
FAST = HttpTimeouts(connect=1.0, first_byte=0.4, between_chunks=0.4)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[GoogleTtsStandin, str]]:
    standin = GoogleTtsStandin()
    base_url, stop = start_standin(standin)
    yield standin, base_url
    stop()


@pytest.fixture
def standin(server: tuple[GoogleTtsStandin, str]) -> GoogleTtsStandin:
    server[0].knobs.reset()
    return server[0]


def make(
    server: tuple[GoogleTtsStandin, str],
    key: str | None = DEFAULT_KEY,
    timeouts: HttpTimeouts | None = None,
) -> GoogleTts:
    settings = Settings(instance_id="t", google_api_key=key, google_tts_base_url=server[1])
    return GoogleTts(settings, timeouts=timeouts)


async def collect(provider: GoogleTts, request: TtsRequest) -> bytes:
    try:
        return b"".join([chunk async for chunk in provider.synthesize(request)])
    finally:
        await provider.aclose()


def assert_signal(pcm: bytes, voice: str, text: str) -> None:
    """`pcm` is the stand-in's answer for (voice, text): its frequency and duration, and
    sample for sample (no header bytes left in, none lost)."""
    samples = np.frombuffer(pcm, "<i2")
    assert len(samples) / SAMPLE_RATE == pytest.approx(signal_seconds(text), abs=1e-4)
    assert peak_frequency(samples, SAMPLE_RATE) == pytest.approx(voice_frequency(voice), abs=1)
    assert pcm == signal(voice, text, SAMPLE_RATE)


async def test_audio_is_the_voice_signal_with_the_wav_header_stripped(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    pcm = await collect(make(server), TtsRequest(TEXT, voice=VOICE))
    assert_signal(pcm, VOICE, TEXT)
    sent = standin.knobs.last(PATH)
    assert sent.query["key"] == DEFAULT_KEY
    assert sent.json == {
        "input": {"text": TEXT},
        "voice": {"languageCode": "en-US", "name": VOICE},
        "audioConfig": {"audioEncoding": "LINEAR16", "sampleRateHertz": 16000},
    }


async def test_language_comes_from_a_full_voice_name(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    voice = "en-GB-Wavenet-B"
    pcm = await collect(make(server), TtsRequest("Mind the gap.", voice=voice))
    assert_signal(pcm, voice, "Mind the gap.")
    assert standin.knobs.last(PATH).json["voice"]["languageCode"] == "en-GB"
    assert language_of("cmn-CN-Chirp3-HD-Kore", None) == "cmn-CN"
    assert language_of("en-US-Neural2-F", "en-us") == "en-us"  # the request's wins


async def test_gemini_short_name_without_language_fails_before_any_call(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    with pytest.raises(TtsError, match="language") as info:
        await collect(make(server), TtsRequest(TEXT, voice="Kore"))
    assert not info.value.transient
    assert standin.knobs.count() == 0


async def test_gemini_voice_takes_language_model_and_prompt(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    request = TtsRequest(
        TEXT,
        voice="Kore",
        language="en-US",
        model_id="gemini-2.5-flash-tts",
        prompt="Say this warmly",
    )
    pcm = await collect(make(server), request)
    assert_signal(pcm, "Kore", TEXT)
    body = standin.knobs.last(PATH).json
    assert body["input"] == {"text": TEXT, "prompt": "Say this warmly"}
    assert body["voice"] == {
        "languageCode": "en-US",
        "name": "Kore",
        "modelName": "gemini-2.5-flash-tts",
    }


def test_wav_header_is_walked_not_assumed() -> None:
    pcm = signal(VOICE, "x", 16000)
    with_list = wav(pcm, 16000)
    assert len(with_list) - len(pcm) != 44  # the stand-in's header is not the classic one
    assert wav_pcm(with_list) == pcm
    assert wav_pcm(pcm) == pcm  # headerless (the PCM encoding) passes through
    # A streamed WAV may give 0 as the data size: the rest of the file is the audio.
    streamed = with_list[: -len(pcm) - 4] + struct.pack("<I", 0) + pcm
    assert wav_pcm(streamed) == pcm
    with pytest.raises(TtsError, match="24000 Hz"):
        wav_pcm(wav(pcm, 24000))
    with pytest.raises(TtsError, match="no data chunk"):
        wav_pcm(with_list[:36])


async def test_request_key_overrides_the_setting(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    pcm = await collect(
        make(server, key="stale"), TtsRequest(TEXT, voice=VOICE, api_key=DEFAULT_KEY)
    )
    assert_signal(pcm, VOICE, TEXT)
    assert standin.knobs.last(PATH).query["key"] == DEFAULT_KEY


async def test_bad_key_is_final_with_the_provider_message(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    with pytest.raises(TtsError) as info:
        await collect(make(server, key="wrong"), TtsRequest(TEXT, voice=VOICE))
    assert "INVALID_ARGUMENT: API key not valid" in str(info.value)
    assert "wrong" not in str(info.value)  # the key is not in the message
    assert not info.value.transient


async def test_provider_error_body_surfaces(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    # A full name in another language than the one asked for: no such voice at Google.
    with pytest.raises(TtsError, match="Voice 'en-US-Neural2-F' does not exist") as info:
        await collect(make(server), TtsRequest(TEXT, voice=VOICE, language="de-DE"))
    assert not info.value.transient
    standin.knobs.fail_next(403, body="Cloud Text-to-Speech API has not been used in project 42")
    with pytest.raises(TtsError, match="PERMISSION_DENIED: Cloud Text-to-Speech API") as info:
        await collect(make(server), TtsRequest(TEXT, voice=VOICE))
    assert not info.value.transient


@pytest.mark.parametrize(("status", "name"), [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL")])
async def test_rate_limit_and_server_errors_are_transient(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin, status: int, name: str
) -> None:
    standin.knobs.fail_next(status)
    with pytest.raises(TtsError, match=name) as info:
        await collect(make(server), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient
    # The failure was for that request only.
    assert_signal(await collect(make(server), TtsRequest(TEXT, voice=VOICE)), VOICE, TEXT)


async def test_dropped_connection_is_transient(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    standin.knobs.drop_next(after_bytes=5000)
    with pytest.raises(TtsError, match="connection broken") as info:
        await collect(make(server), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient


async def test_slow_first_byte_is_transient(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    standin.knobs.first_byte_delay = 1.5
    with pytest.raises(TtsError, match=r"no answer within 0\.4 s") as info:
        await collect(make(server, timeouts=FAST), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient


async def test_stalled_answer_is_transient(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    standin.knobs.stall_next(1.5, after_bytes=5000)
    with pytest.raises(TtsError, match="stalled") as info:
        await collect(make(server, timeouts=FAST), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient


async def test_connection_refused_is_transient() -> None:
    settings = Settings(
        instance_id="t", google_api_key="k", google_tts_base_url="http://127.0.0.1:9"
    )
    with pytest.raises(TtsError, match="cannot connect") as info:
        await collect(GoogleTts(settings, timeouts=FAST), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient


async def test_without_any_credential_the_error_is_clear(
    server: tuple[GoogleTtsStandin, str],
    standin: GoogleTtsStandin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(google_module, "_adc_available", lambda: False)
    provider = make(server, key=None)
    assert provider.configured(TtsRequest(TEXT, voice=VOICE))  # google never answers 503
    assert not provider.has_credentials(TtsRequest(TEXT, voice=VOICE))
    assert provider.has_credentials(TtsRequest(TEXT, voice=VOICE, api_key="k"))
    with pytest.raises(TtsError, match="no credentials") as info:
        await collect(provider, TtsRequest(TEXT, voice=VOICE))
    assert not info.value.transient
    assert standin.knobs.count() == 0


def _fake_google_auth(monkeypatch: pytest.MonkeyPatch, token: str) -> dict[str, int]:
    """A stand-in `google.auth` package whose default credentials hold `token`."""
    calls = {"default": 0, "refresh": 0}

    class GoogleAuthError(Exception):
        pass

    class TransportError(GoogleAuthError):
        pass

    class Credentials:
        token: str | None = None
        quota_project_id = "billing-project"

        @property
        def valid(self) -> bool:
            return self.token is not None

        def refresh(self, request: Any) -> None:
            calls["refresh"] += 1
            self.token = token

    def default(scopes: list[str]) -> tuple[Credentials, str]:
        assert scopes == ["https://www.googleapis.com/auth/cloud-platform"]
        calls["default"] += 1
        return Credentials(), "project"

    google = types.ModuleType("google")
    auth = types.ModuleType("google.auth")
    exceptions = types.ModuleType("google.auth.exceptions")
    transport = types.ModuleType("google.auth.transport")
    requests = types.ModuleType("google.auth.transport.requests")
    exceptions.GoogleAuthError = GoogleAuthError  # type: ignore[attr-defined]
    exceptions.TransportError = TransportError  # type: ignore[attr-defined]
    requests.Request = object  # type: ignore[attr-defined]
    auth.default = default  # type: ignore[attr-defined]
    auth.exceptions = exceptions  # type: ignore[attr-defined]
    auth.transport = transport  # type: ignore[attr-defined]
    transport.requests = requests  # type: ignore[attr-defined]
    google.auth = auth  # type: ignore[attr-defined]
    for name, module in [
        ("google", google),
        ("google.auth", auth),
        ("google.auth.exceptions", exceptions),
        ("google.auth.transport", transport),
        ("google.auth.transport.requests", requests),
    ]:
        monkeypatch.setitem(sys.modules, name, module)
    return calls


async def test_application_default_credentials_without_a_key(
    server: tuple[GoogleTtsStandin, str],
    standin: GoogleTtsStandin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _fake_google_auth(monkeypatch, DEFAULT_TOKEN)
    provider = make(server, key=None)
    assert provider.has_credentials(TtsRequest(TEXT, voice=VOICE))
    try:
        for _ in range(2):
            pcm = b"".join([c async for c in provider.synthesize(TtsRequest(TEXT, voice=VOICE))])
            assert_signal(pcm, VOICE, TEXT)
    finally:
        await provider.aclose()
    sent = standin.knobs.last(PATH)
    assert sent.headers["authorization"] == f"Bearer {DEFAULT_TOKEN}"
    assert sent.headers["x-goog-user-project"] == "billing-project"
    assert "key" not in sent.query
    assert calls == {"default": 1, "refresh": 1}  # loaded once, reused while valid


async def test_bad_token_is_final(
    server: tuple[GoogleTtsStandin, str],
    standin: GoogleTtsStandin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_google_auth(monkeypatch, "expired-token")
    with pytest.raises(TtsError, match="UNAUTHENTICATED") as info:
        await collect(make(server, key=None), TtsRequest(TEXT, voice=VOICE))
    assert not info.value.transient


async def test_the_standin_rejects_what_the_service_rejects(
    server: tuple[GoogleTtsStandin, str], standin: GoogleTtsStandin
) -> None:
    url = server[1] + PATH
    good = {
        "input": {"text": "hi"},
        "voice": {"language_code": "en-US", "name": VOICE},  # snake_case is accepted
        "audio_config": {"audio_encoding": "PCM", "sample_rate_hertz": 8000},
    }
    async with httpx.AsyncClient() as client:

        async def post(body: Any, **kw: Any) -> httpx.Response:
            kw.setdefault("headers", {"X-Goog-Api-Key": DEFAULT_KEY})
            return await client.post(url, json=body, **kw)

        answer = await post(good)
        assert answer.status_code == 200
        assert answer.json()["audioContent"]
        unauthenticated = await client.post(url, json=good)
        assert unauthenticated.status_code == 403
        assert unauthenticated.json()["error"]["status"] == "PERMISSION_DENIED"
        for bad in [
            {**good, "input": {"text": "hi", "ssml": "<speak>hi</speak>"}},
            {**good, "input": {}},
            {**good, "voice": {"name": VOICE}},
            {**good, "voice": {"languageCode": "en-US", "name": "Nobody"}},
            {**good, "audioConfig": {"audioEncoding": "AUDIO_ENCODING_UNSPECIFIED"}},
            {**good, "audio_config": {"audio_encoding": "LINEAR16", "sample_rate_hertz": 12345}},
            {**good, "input": {"text": "x" * 5001}},
        ]:
            answer = await post(bad)
            assert answer.status_code == 400, bad
            assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
