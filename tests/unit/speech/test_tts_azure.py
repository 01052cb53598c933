"""The Azure Speech TTS client against the Azure stand-in: well-formed SSML with the text
escaped, the language from the voice name, the audio is the stand-in's signal, and every failure
becomes the right TtsError."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from callboard.config import Settings
from callboard.speech.tts.azure import AzureTts, language_of, ssml
from callboard.speech.tts.base import SAMPLE_RATE, TtsError, TtsRequest
from callboard.speech.tts.cloud_http import HttpTimeouts
from tests.helpers.standins import start_standin
from tests.helpers.standins.azure_tts import (
    DEFAULT_KEY,
    PATH,
    AzureTtsStandin,
    signal,
    voice_frequency,
)
from tests.helpers.standins.common import signal_seconds
from tests.unit.media.audio_analysis import peak_frequency

VOICE = "en-US-AvaNeural"
TEXT = "Please hold while we connect your call."  # 1.95 s of signal
FAST = HttpTimeouts(connect=1.0, first_byte=0.4, between_chunks=0.4)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[AzureTtsStandin, str]]:
    standin = AzureTtsStandin()
    base_url, stop = start_standin(standin)
    yield standin, base_url
    stop()


@pytest.fixture
def standin(server: tuple[AzureTtsStandin, str]) -> AzureTtsStandin:
    server[0].knobs.reset()
    server[0].spoken.clear()
    return server[0]


def make(
    server: tuple[AzureTtsStandin, str],
    key: str | None = DEFAULT_KEY,
    timeouts: HttpTimeouts | None = None,
) -> AzureTts:
    settings = Settings(instance_id="t", azure_speech_key=key, azure_tts_base_url=server[1])
    return AzureTts(settings, timeouts=timeouts)


async def collect(provider: AzureTts, request: TtsRequest) -> list[bytes]:
    try:
        return [chunk async for chunk in provider.synthesize(request)]
    finally:
        await provider.aclose()


def assert_signal(pcm: bytes, voice: str, text: str) -> None:
    samples = np.frombuffer(pcm, "<i2")
    assert len(samples) / SAMPLE_RATE == pytest.approx(signal_seconds(text), abs=1e-4)
    assert peak_frequency(samples, SAMPLE_RATE) == pytest.approx(voice_frequency(voice), abs=1)
    assert pcm == signal(voice, text)


async def test_audio_is_the_voice_signal_in_sample_aligned_chunks(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    chunks = await collect(make(server), TtsRequest(TEXT, voice=VOICE))
    assert len(chunks) > 1  # streamed, not collected whole
    assert all(len(c) % 2 == 0 for c in chunks)  # the stand-in's odd-sized chunks realigned
    assert_signal(b"".join(chunks), VOICE, TEXT)
    sent = standin.knobs.last(PATH)
    assert sent.headers["ocp-apim-subscription-key"] == DEFAULT_KEY
    assert sent.headers["content-type"] == "application/ssml+xml"
    assert sent.headers["x-microsoft-outputformat"] == "raw-16khz-16bit-mono-pcm"
    assert sent.headers["user-agent"]
    assert standin.spoken == [(VOICE, "en-US", TEXT)]


async def test_language_from_the_voice_name_or_the_request(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    voice = "de-DE-KatjaNeural"
    pcm = b"".join(await collect(make(server), TtsRequest("Guten Tag", voice=voice)))
    assert_signal(pcm, voice, "Guten Tag")
    multilingual = TtsRequest("Bonjour", voice="en-US-AvaMultilingualNeural", language="fr-FR")
    await collect(make(server), multilingual)
    assert [s[1] for s in standin.spoken] == ["de-DE", "fr-FR"]
    assert language_of("AvaNeural", None) == "en-US"  # no locale in the name: the default


async def test_markup_in_the_text_is_escaped(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    text = """Say <b> & "q" it's > 'this' </voice>"""
    pcm = b"".join(await collect(make(server), TtsRequest(text, voice=VOICE)))
    assert standin.spoken[-1][2] == text  # spoken as written, not read as markup
    assert_signal(pcm, VOICE, text)
    document = ssml("a\x00b\x1fc & d", VOICE, "en-US")  # characters XML cannot carry at all
    assert "".join(ET.fromstring(document).itertext()) == "abc & d"


def test_configured_needs_a_key_and_a_region_or_base_url() -> None:
    request, keyed = TtsRequest(TEXT, voice=VOICE), TtsRequest(TEXT, voice=VOICE, api_key="k")

    def provider(**kw: str) -> AzureTts:
        return AzureTts(Settings(instance_id="t", **kw))  # type: ignore[arg-type]

    assert provider(azure_speech_key="k", azure_speech_region="westus").configured(request)
    assert provider(azure_speech_key="k", azure_tts_base_url="http://x").configured(request)
    assert not provider(azure_speech_key="k").configured(request)
    assert not provider(azure_speech_region="westus").configured(request)
    assert provider(azure_speech_region="westus").configured(keyed)
    assert provider(azure_speech_region="westus")._url() == (
        "https://westus.tts.speech.microsoft.com/cognitiveservices/v1"
    )


async def test_bad_key_is_final_with_the_provider_message(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    with pytest.raises(
        TtsError, match="401: Access denied due to invalid subscription key"
    ) as info:
        await collect(make(server, key="wrong"), TtsRequest(TEXT, voice=VOICE))
    assert not info.value.transient


async def test_request_key_overrides_the_setting(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    request = TtsRequest(TEXT, voice=VOICE, api_key=DEFAULT_KEY)
    assert_signal(b"".join(await collect(make(server, key="stale"), request)), VOICE, TEXT)


async def test_provider_error_body_surfaces(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    with pytest.raises(TtsError, match="400: Unsupported voice name 'Nobody'") as info:
        await collect(make(server), TtsRequest(TEXT, voice="Nobody"))
    assert not info.value.transient
    standin.knobs.fail_next(400, body="The text is too long")
    with pytest.raises(TtsError, match="The text is too long") as info:
        await collect(make(server), TtsRequest(TEXT, voice=VOICE))
    assert not info.value.transient


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_rate_limit_and_server_errors_are_transient(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin, status: int
) -> None:
    standin.knobs.fail_next(status)
    with pytest.raises(TtsError, match=f"azure HTTP {status}") as info:
        await collect(make(server), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient


async def test_dropped_connection_is_transient(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    standin.knobs.drop_next(after_bytes=8000)
    with pytest.raises(TtsError, match="connection broken") as info:
        await collect(make(server), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient


async def test_slow_first_byte_is_transient(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    standin.knobs.first_byte_delay = 1.5
    with pytest.raises(TtsError, match=r"no audio within 0\.4 s") as info:
        await collect(make(server, timeouts=FAST), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient


async def test_stalled_stream_is_transient(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    standin.knobs.stall_next(1.5, after_bytes=8000)
    with pytest.raises(TtsError, match="stalled") as info:
        await collect(make(server, timeouts=FAST), TtsRequest(TEXT, voice=VOICE))
    assert info.value.transient


async def test_the_standin_rejects_what_the_service_rejects(
    server: tuple[AzureTtsStandin, str], standin: AzureTtsStandin
) -> None:
    headers = {
        "Ocp-Apim-Subscription-Key": DEFAULT_KEY,
        "Content-Type": "application/ssml+xml",
        "X-Microsoft-OutputFormat": "raw-16khz-16bit-mono-pcm",
        "User-Agent": "test",
    }
    good = ssml("hello", VOICE, "en-US").encode()
    async with httpx.AsyncClient(base_url=server[1]) as client:
        assert (await client.post(PATH, content=good, headers=headers)).status_code == 200
        unclosed = b"<speak version='1.0' xml:lang='en-US'><voice name='en-US-AvaNeural'>a & b"
        no_lang = b"<speak version='1.0'><voice name='en-US-AvaNeural'>hi</voice></speak>"
        no_voice = b"<speak version='1.0' xml:lang='en-US'>hi</speak>"
        no_speak = b"<voice name='en-US-AvaNeural'>hi</voice>"
        for change, body, status in [
            ({"Ocp-Apim-Subscription-Key": "nope"}, good, 401),
            ({"Content-Type": "text/plain"}, good, 415),
            ({"X-Microsoft-OutputFormat": "raw-16khz-24bit-mono-pcm"}, good, 400),
            ({}, unclosed, 400),
            ({}, no_lang, 400),
            ({}, no_voice, 400),
            ({}, no_speak, 400),
        ]:
            answer = await client.post(PATH, content=body, headers={**headers, **change})
            assert answer.status_code == status, (change, body)
