"""The Azure Speech real-time STT client against the Azure stand-in: transcripts come from the
audio it really sent, the documented path, query, headers and message framing are used, and
failures become the right SttError without hanging."""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from callboard.config import Settings
from callboard.speech.stt.azure import AzureStt, locale, parse, wav_header
from callboard.speech.stt.base import SttError, SttRequest, Transcript
from tests.helpers.standins.azure_stt import DEFAULT_KEY, AzureSttStandin
from tests.helpers.standins.stt_common import pcm_chunks, start_ws_standin, tone_pcm

SPEECH = tone_pcm([(0, 1.1), (440, 0.6), (0, 0.6), (880, 0.6), (0, 0.5)])
FINALS = [Transcript("tone 440", True), Transcript("tone 880", True)]
CHUNK = 640  # 20 ms

Server = tuple[AzureSttStandin, str]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    standin = AzureSttStandin(api_keys={DEFAULT_KEY, "request-key"})
    base_url, stop = start_ws_standin(standin)
    yield standin, base_url
    standin.knobs.reset()
    stop()


@pytest.fixture
def standin(server: Server) -> Iterator[AzureSttStandin]:
    server[0].knobs.reset()
    yield server[0]
    server[0].knobs.reset()


def make(server: Server, key: str | None = DEFAULT_KEY, **options: float) -> AzureStt:
    base = server[1].replace("http://", "ws://")
    settings = Settings(instance_id="t", azure_speech_key=key, azure_stt_base_url=base)
    return AzureStt(settings, **options)


async def collect(
    provider: AzureStt, request: SttRequest, audio: AsyncIterator[bytes] | None = None
) -> list[Transcript]:
    stream = audio if audio is not None else pcm_chunks(SPEECH, CHUNK)
    return [t async for t in provider.transcribe(stream, request)]


async def failure(provider: AzureStt, request: SttRequest) -> SttError:
    with pytest.raises(SttError) as caught:
        await collect(provider, request)
    return caught.value


def test_locale_and_configured(server: Server) -> None:
    assert locale("en") == "en-US"
    assert locale("de") == "de-DE"
    assert locale("en-GB") == "en-GB"
    assert make(server).configured(SttRequest())
    assert not make(server, key=None).configured(SttRequest())
    assert make(server, key=None).configured(SttRequest(api_key="k"))
    regional = AzureStt(
        Settings(instance_id="t", azure_speech_key="k", azure_speech_region="westeurope")
    )
    assert regional.url(SttRequest()) == (
        "wss://westeurope.stt.speech.microsoft.com/speech/recognition/conversation/"
        "cognitiveservices/v1?language=en-US&format=simple"
    )
    assert not AzureStt(Settings(instance_id="t", azure_speech_key="k")).configured(SttRequest())


def test_parse_statuses() -> None:
    def phrase(body: str) -> str:
        return "Path: speech.phrase\r\nContent-Type: application/json\r\n\r\n" + body

    assert parse(phrase('{"RecognitionStatus": "NoMatch"}'), True) == ("speech.phrase", None)
    assert parse(phrase('{"RecognitionStatus": "InitialSilenceTimeout"}'), True)[1] is None
    assert parse(phrase('{"RecognitionStatus": "Success", "DisplayText": ""}'), True)[1] is None
    with pytest.raises(SttError) as caught:
        parse(phrase('{"RecognitionStatus": "ServiceUnavailable"}'), False)
    assert caught.value.transient


async def test_finals_come_from_the_audio_sent(server: Server, standin: AzureSttStandin) -> None:
    started = time.monotonic()
    assert await collect(make(server), SttRequest()) == FINALS
    assert time.monotonic() - started < 2.0  # returns at turn.end, not after a wait
    connection = standin.knobs.last()
    assert connection.path == "/speech/recognition/conversation/cognitiveservices/v1"
    assert connection.query == {"language": "en-US", "format": "simple"}
    assert connection.headers["ocp-apim-subscription-key"] == DEFAULT_KEY
    assert len(connection.headers["x-connectionid"]) == 32
    assert connection.audio_bytes == len(SPEECH)
    config, *audio = connection.received
    assert config["path"] == "speech.config"
    assert config["headers"]["content-type"] == "application/json"
    assert "context" in config["body"]
    assert all(m["path"] == "audio" for m in audio)
    assert audio[0]["wav"] and not any(m["wav"] for m in audio[1:])
    assert audio[0]["headers"]["content-type"] == "audio/x-wav"
    assert audio[-1]["size"] == 0  # the empty audio message ends the stream
    assert len({m["headers"]["x-requestid"] for m in connection.received}) == 1
    paths = [m["path"] for m in connection.sent]
    assert paths[0] == "turn.start" and paths[-1] == "turn.end"
    assert "speech.hypothesis" in paths  # sent, but not passed on without partial
    assert {"RecognitionStatus": "NoMatch"}.items() <= connection.sent[1]["body"].items()
    assert connection.closed_by == "client"


def test_wav_header_is_16khz_16bit_mono() -> None:
    header = wav_header()
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt " and header[36:40] == b"data"
    assert struct.unpack("<HHIIHH", header[20:36]) == (1, 1, 16000, 32000, 2, 16)


async def test_interim_results_only_with_partial(server: Server, standin: AzureSttStandin) -> None:
    results = await collect(make(server), SttRequest(partial=True))
    assert [t for t in results if t.is_final] == FINALS
    assert results[0] == Transcript("tone 440", False)
    assert Transcript("tone 880", False) in results[results.index(FINALS[0]) :]


async def test_request_key_and_language(server: Server, standin: AzureSttStandin) -> None:
    request = SttRequest(language="de", api_key="request-key")
    assert await collect(make(server, key=None), request) == FINALS
    connection = standin.knobs.last()
    assert connection.headers["ocp-apim-subscription-key"] == "request-key"
    assert connection.query["language"] == "de-DE"


async def test_bad_key_is_final(server: Server, standin: AzureSttStandin) -> None:
    error = await failure(make(server, key="not-the-key-9f3"), SttRequest())
    assert not error.transient
    assert "Access denied" in str(error) and "HTTP 401" in str(error)
    assert "not-the-key-9f3" not in str(error)
    assert standin.knobs.last().status == 401


@pytest.mark.parametrize(("status", "transient"), [(403, False), (429, True), (503, True)])
async def test_handshake_refusals(
    server: Server, standin: AzureSttStandin, status: int, transient: bool
) -> None:
    standin.knobs.reject_next(status)
    error = await failure(make(server), SttRequest())
    assert error.transient is transient
    assert f"HTTP {status}" in str(error)


async def test_dropped_connection_is_transient(server: Server, standin: AzureSttStandin) -> None:
    standin.knobs.drop_next(after_bytes=16_000)
    error = await failure(make(server), SttRequest())
    assert error.transient
    assert "connection lost" in str(error)
    assert await collect(make(server), SttRequest()) == FINALS


async def test_protocol_close_is_final(server: Server, standin: AzureSttStandin) -> None:
    standin.knobs.error_next((1007, "Invalid audio"), after_bytes=6400)
    error = await failure(make(server), SttRequest())
    assert not error.transient
    assert "Invalid audio" in str(error)


async def test_end_of_audio_flushes_the_last_final(
    server: Server, standin: AzureSttStandin
) -> None:
    cut = tone_pcm([(0, 0.2), (440, 0.6), (0, 0.4), (880, 0.5)])  # ends inside a burst
    assert await collect(make(server), SttRequest(), pcm_chunks(cut, CHUNK)) == FINALS
    assert standin.knobs.last().sent[-1]["path"] == "turn.end"


async def test_waiting_for_the_end_is_bounded(server: Server, standin: AzureSttStandin) -> None:
    standin.knobs.answer_end = False  # the empty audio message is never answered
    started = time.monotonic()
    assert await collect(make(server, end_wait=0.4), SttRequest()) == FINALS
    assert time.monotonic() - started < 2.5


async def test_the_standin_closes_1007_on_broken_framing(
    server: Server, standin: AzureSttStandin
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from callboard.speech.stt.azure import audio_message

    url = server[1].replace("http://", "ws://") + (
        "/speech/recognition/conversation/cognitiveservices/v1?language=en-US"
    )
    headers = {"Ocp-Apim-Subscription-Key": DEFAULT_KEY}
    for bad in ["Path: speech.config\r\nno blank line", audio_message("ab" * 16, bytes(640))]:
        async with connect(url, additional_headers=headers) as socket:
            await socket.send(bad)  # the second: audio before speech.config
            with pytest.raises(ConnectionClosed):
                await socket.recv()
        assert standin.knobs.last().close_code == 1007
