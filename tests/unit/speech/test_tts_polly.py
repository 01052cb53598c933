"""The Polly client (botocore, SigV4, in a worker thread) against the Polly stand-in, which
checks every signature: the audio is the stand-in's signal, `ACCESS:SECRET` keys sign the
request, and every failure becomes the right TtsError."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from callboard.config import Settings
from callboard.speech.tts.base import SAMPLE_RATE, TtsError, TtsRequest
from callboard.speech.tts.cloud_http import HttpTimeouts
from callboard.speech.tts.polly import PollyTts, engine_for
from tests.helpers.standins import start_standin
from tests.helpers.standins.common import signal_seconds
from tests.helpers.standins.polly import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET,
    PATH,
    VOICES,
    PollyStandin,
    signal,
)
from tests.unit.media.audio_analysis import peak_frequency

KEY = f"{DEFAULT_ACCESS_KEY}:{DEFAULT_SECRET}"
TEXT = "Your call is important to us, please hold."  # 2.1 s of signal
FAST = HttpTimeouts(connect=1.0, first_byte=0.5, between_chunks=0.5)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[PollyStandin, str]]:
    standin = PollyStandin()
    base_url, stop = start_standin(standin)
    yield standin, base_url
    stop()


@pytest.fixture
def standin(
    server: tuple[PollyStandin, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> PollyStandin:
    """The stand-in, reset, with botocore pointed at it and no ambient AWS credentials."""
    for name in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_DEFAULT_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", server[1])
    server[0].knobs.reset()
    server[0].signed_by.clear()
    return server[0]


def make(timeouts: HttpTimeouts | None = None) -> PollyTts:
    return PollyTts(Settings(instance_id="t"), timeouts=timeouts)


async def collect(provider: PollyTts, request: TtsRequest) -> bytes:
    try:
        return b"".join([chunk async for chunk in provider.synthesize(request)])
    finally:
        await provider.aclose()


def assert_signal(pcm: bytes, voice: str, text: str) -> None:
    samples = np.frombuffer(pcm, "<i2")
    assert len(samples) / SAMPLE_RATE == pytest.approx(signal_seconds(text), abs=1e-4)
    assert peak_frequency(samples, SAMPLE_RATE) == pytest.approx(VOICES[voice][1], abs=1)
    assert pcm == signal(voice, text)


async def test_audio_is_the_voice_signal_signed_with_the_request_key(
    standin: PollyStandin,
) -> None:
    pcm = await collect(make(), TtsRequest(TEXT, voice="Joanna", api_key=KEY))
    assert_signal(pcm, "Joanna", TEXT)
    assert standin.signed_by == [DEFAULT_ACCESS_KEY]
    sent = standin.knobs.last(PATH)
    assert "/us-east-1/polly/aws4_request" in sent.headers["authorization"]
    assert sent.json == {
        "Text": TEXT,
        "TextType": "text",
        "VoiceId": "Joanna",
        "Engine": "neural",
        "OutputFormat": "pcm",
        "SampleRate": "16000",
    }


async def test_engine_and_language_are_sent(standin: PollyStandin) -> None:
    request = TtsRequest(TEXT, voice="Ruth", model_id="generative", language="en-US", api_key=KEY)
    assert_signal(await collect(make(), request), "Ruth", TEXT)
    sent = standin.knobs.last(PATH).json
    assert (sent["Engine"], sent["LanguageCode"]) == ("generative", "en-US")
    assert [engine_for(m) for m in (None, "long-form", "Standard", "eleven_v3")] == [
        "neural",
        "long-form",
        "standard",
        "neural",
    ]


async def test_default_credential_chain(
    standin: PollyStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DEFAULT_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DEFAULT_SECRET)
    provider = make()
    assert provider.configured(TtsRequest(TEXT, voice="Matthew"))
    assert_signal(await collect(provider, TtsRequest(TEXT, voice="Matthew")), "Matthew", TEXT)
    assert standin.signed_by == [DEFAULT_ACCESS_KEY]


async def test_no_credentials_is_a_final_error(standin: PollyStandin) -> None:
    provider = make()
    assert provider.configured(TtsRequest(TEXT, voice="Joanna"))  # aws never answers 503
    with pytest.raises(TtsError, match="Unable to locate credentials") as info:
        await collect(provider, TtsRequest(TEXT, voice="Joanna"))
    assert not info.value.transient
    assert standin.knobs.count() == 0


async def test_malformed_key_is_a_final_error(standin: PollyStandin) -> None:
    with pytest.raises(TtsError, match="ACCESS_KEY_ID:SECRET_ACCESS_KEY") as info:
        await collect(make(), TtsRequest(TEXT, voice="Joanna", api_key="no-colon"))
    assert not info.value.transient


@pytest.mark.parametrize(
    ("key", "code"),
    [
        (f"{DEFAULT_ACCESS_KEY}:wrong-secret", "InvalidSignatureException: The request signature"),
        ("AKIDUNKNOWN:whatever", "UnrecognizedClientException: The security token"),
    ],
)
async def test_bad_key_is_final_with_the_provider_message(
    standin: PollyStandin, key: str, code: str
) -> None:
    with pytest.raises(TtsError, match=code) as info:
        await collect(make(), TtsRequest(TEXT, voice="Joanna", api_key=key))
    assert not info.value.transient
    assert "wrong-secret" not in str(info.value)


async def test_region_comes_from_the_environment(
    standin: PollyStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")  # not the stand-in's region
    with pytest.raises(TtsError, match="scoped to a valid region, not 'eu-west-1'"):
        await collect(make(), TtsRequest(TEXT, voice="Joanna", api_key=KEY))


@pytest.mark.parametrize(
    ("voice", "model", "message"),
    [
        ("Nobody", None, "ValidationException: 1 validation error detected: Value 'Nobody'"),
        ("Brian", "generative", "EngineNotSupportedException: This voice does not support"),
    ],
)
async def test_provider_error_body_surfaces(
    standin: PollyStandin, voice: str, model: str | None, message: str
) -> None:
    with pytest.raises(TtsError, match=message) as info:
        await collect(make(), TtsRequest(TEXT, voice=voice, model_id=model, api_key=KEY))
    assert not info.value.transient


@pytest.mark.parametrize(
    ("status", "code"), [(429, "ThrottlingException"), (500, "ServiceFailureException")]
)
async def test_throttling_and_server_errors_are_transient(
    standin: PollyStandin, status: int, code: str
) -> None:
    standin.knobs.fail_next(status)
    with pytest.raises(TtsError, match=code) as info:
        await collect(make(), TtsRequest(TEXT, voice="Joanna", api_key=KEY))
    assert info.value.transient
    assert standin.knobs.count(PATH) == 1  # botocore's own retries are off: ours do it


async def test_dropped_connection_is_transient(standin: PollyStandin) -> None:
    standin.knobs.drop_next(after_bytes=20_000)
    provider = make()
    got = bytearray()
    with pytest.raises(TtsError) as info:
        try:
            async for chunk in provider.synthesize(TtsRequest(TEXT, voice="Joanna", api_key=KEY)):
                got += chunk
        finally:
            await provider.aclose()
    assert info.value.transient
    assert 0 < len(got) <= 20_000


async def test_slow_first_byte_is_transient(standin: PollyStandin) -> None:
    provider = make(FAST)
    request = TtsRequest(TEXT, voice="Joanna", api_key=KEY)
    try:
        # Warm the client first: creating it loads botocore's models, which is not the
        # provider being slow (on a loaded machine that alone can pass 0.5 s: try again).
        for attempt in range(3):
            try:
                audio = b"".join([c async for c in provider.synthesize(request)])
                break
            except TtsError:
                if attempt == 2:
                    raise
        assert_signal(audio, "Joanna", TEXT)
        standin.knobs.first_byte_delay = 1.5
        with pytest.raises(TtsError, match=r"no audio within 0\.5 s") as info:
            _ = [c async for c in provider.synthesize(request)]
        assert info.value.transient
    finally:
        await provider.aclose()


async def test_stalled_stream_is_transient(standin: PollyStandin) -> None:
    standin.knobs.stall_next(1.5, after_bytes=8000)
    with pytest.raises(TtsError, match="stalled") as info:
        await collect(make(FAST), TtsRequest(TEXT, voice="Joanna", api_key=KEY))
    assert info.value.transient


async def test_connection_refused_is_transient(
    standin: PollyStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_POLLY", "http://127.0.0.1:9")
    with pytest.raises(TtsError, match="connection failed") as info:
        await collect(make(FAST), TtsRequest(TEXT, voice="Joanna", api_key=KEY))
    assert info.value.transient


async def test_stopping_early_frees_the_worker(standin: PollyStandin) -> None:
    standin.knobs.chunk_bytes, standin.knobs.chunk_interval = 1000, 0.01  # about 3 s of body

    def workers() -> list[asyncio.Task[Any]]:
        return [
            t
            for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "to_thread"
        ]

    provider = make()
    stream = provider.synthesize(TtsRequest("x" * 200, voice="Amy", api_key=KEY))
    assert await anext(stream)
    assert len(workers()) == 1
    started = asyncio.get_running_loop().time()
    await stream.aclose()  # type: ignore[attr-defined]
    await provider.aclose()
    # The worker notices at its next read, long before the body would have ended.
    while workers():
        assert asyncio.get_running_loop().time() - started < 1.0, "the worker kept reading"
        await asyncio.sleep(0.02)
    assert standin.knobs.count(PATH) == 1


def _signed_headers(url: str, service: str, region: str, body: bytes) -> dict[str, str]:
    request = AWSRequest("POST", url, data=body, headers={"Content-Type": "application/json"})
    creds = Credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET)
    SigV4Auth(creds, service, region).add_auth(request)
    return dict(request.headers.items())


async def test_the_standin_verifies_sigv4(
    server: tuple[PollyStandin, str], standin: PollyStandin
) -> None:
    url = server[1] + PATH
    body = b'{"Text":"hi","VoiceId":"Joanna","OutputFormat":"pcm","Engine":"neural"}'
    async with httpx.AsyncClient() as client:

        async def post(headers: dict[str, str], data: bytes = body) -> httpx.Response:
            return await client.post(url, content=data, headers=headers)

        good = await post(_signed_headers(url, "polly", "us-east-1", body))
        assert good.status_code == 200
        assert good.headers["content-type"] == "audio/pcm"
        cases = [
            ({"Content-Type": "application/json"}, body, "MissingAuthenticationTokenException"),
            (_signed_headers(url, "s3", "us-east-1", body), body, "InvalidSignatureException"),
            (_signed_headers(url, "polly", "us-west-2", body), body, "InvalidSignatureException"),
            (  # signed, then the body changed
                _signed_headers(url, "polly", "us-east-1", body),
                body.replace(b"hi", b"ho"),
                "InvalidSignatureException",
            ),
            (
                {"Authorization": "AWS4-HMAC-SHA256 Credential=nonsense"},
                body,
                "IncompleteSignatureException",
            ),
        ]
        for headers, data, code in cases:
            answer = await post(headers, data)
            assert answer.status_code == 403, code
            assert answer.headers["x-amzn-errortype"] == code
            assert answer.json()["message"]
        long_text = b'{"Text":"' + b"x" * 6001 + b'","VoiceId":"Joanna","OutputFormat":"pcm"}'
        for bad, code in [
            (b'{"Text":"hi","VoiceId":"Joanna"}', "ValidationException"),
            (
                b'{"Text":"hi","VoiceId":"Joanna","OutputFormat":"pcm","SampleRate":"22050"}',
                "InvalidSampleRateException",
            ),
            (long_text, "TextLengthExceededException"),
        ]:
            answer = await post(_signed_headers(url, "polly", "us-east-1", bad), bad)
            assert (answer.status_code, answer.headers["x-amzn-errortype"]) == (400, code)
