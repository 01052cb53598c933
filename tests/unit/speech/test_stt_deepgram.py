"""The Deepgram live STT client against the Deepgram stand-in: transcripts come from the audio
it really sent, the documented URL, headers and messages are used, and every failure becomes
the right SttError without ever hanging."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

import pytest
from websockets.datastructures import Headers

from callboard.config import Settings
from callboard.speech.stt.base import SttError, SttRequest, Transcript
from callboard.speech.stt.deepgram import DeepgramStt, read_error
from callboard.speech.stt.ws_common import websocket_base
from tests.helpers.standins.deepgram_stt import BAD_MODEL, DEFAULT_KEY, DeepgramSttStandin
from tests.helpers.standins.stt_common import pcm_chunks, start_ws_standin, tone_pcm

SPEECH = tone_pcm([(0, 1.1), (440, 0.6), (0, 0.6), (880, 0.6), (0, 0.5)])
FINALS = [Transcript("tone 440", True), Transcript("tone 880", True)]
CHUNK = 640  # 20 ms


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[DeepgramSttStandin, str]]:
    standin = DeepgramSttStandin(api_keys={DEFAULT_KEY, "request-key"})
    base_url, stop = start_ws_standin(standin)
    yield standin, base_url
    standin.knobs.reset()  # releases a stalled session so the server stops at once
    stop()


@pytest.fixture
def standin(server: tuple[DeepgramSttStandin, str]) -> Iterator[DeepgramSttStandin]:
    server[0].knobs.reset()
    yield server[0]
    server[0].knobs.reset()


def make(
    server: tuple[DeepgramSttStandin, str], key: str | None = DEFAULT_KEY, **options: float
) -> DeepgramStt:
    settings = Settings(instance_id="t", deepgram_api_key=key, deepgram_base_url=server[1])
    return DeepgramStt(settings, **options)


async def collect(
    provider: DeepgramStt, request: SttRequest, audio: AsyncIterator[bytes] | None = None
) -> list[Transcript]:
    stream = audio if audio is not None else pcm_chunks(SPEECH, CHUNK)
    return [t async for t in provider.transcribe(stream, request)]


async def failure(
    provider: DeepgramStt, request: SttRequest, audio: AsyncIterator[bytes] | None = None
) -> SttError:
    with pytest.raises(SttError) as caught:
        await collect(provider, request, audio)
    return caught.value


async def silence_forever() -> AsyncIterator[bytes]:
    while True:
        yield bytes(CHUNK)
        await asyncio.sleep(0)


def test_websocket_url_follows_the_base_url() -> None:
    assert websocket_base("https://api.deepgram.com/") == "wss://api.deepgram.com"
    assert websocket_base("http://127.0.0.1:8080") == "ws://127.0.0.1:8080"


def test_handshake_error_from_the_body_or_the_dg_error_header() -> None:
    body = json.dumps({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."})
    assert read_error(401, Headers(), body.encode()) == "Invalid credentials."
    assert read_error(401, Headers({"dg-error": body}), b"") == "Invalid credentials."
    assert read_error(400, Headers({"dg-error": "plain words"}), b"") == "plain words"


def test_configured_by_settings_or_request(server: tuple[DeepgramSttStandin, str]) -> None:
    assert make(server).configured(SttRequest())
    assert not make(server, key=None).configured(SttRequest())
    assert make(server, key=None).configured(SttRequest(api_key="k"))


async def test_finals_come_from_the_audio_sent(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    assert await collect(make(server), SttRequest()) == FINALS
    connection = standin.knobs.last()
    assert connection.path == "/v1/listen"
    assert connection.query == {
        "model": "nova-3",
        "encoding": "linear16",
        "sample_rate": "16000",
        "channels": "1",
        "language": "en",
        "interim_results": "false",
        "punctuate": "true",
    }
    assert connection.headers["authorization"] == f"Token {DEFAULT_KEY}"
    assert connection.audio_bytes == len(SPEECH)
    # The end of audio is CloseStream; the server answers and closes 1000.
    assert connection.received == [{"type": "CloseStream"}]
    assert (connection.closed_by, connection.close_code) == ("server", 1000)
    assert connection.sent[-1]["type"] == "Metadata"
    # Silence came back as empty Results, which are not passed on.
    texts = [m["channel"]["alternatives"][0]["transcript"] for m in connection.sent[:-1]]
    assert "" in texts


async def test_interim_results_only_with_partial(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    results = await collect(make(server), SttRequest(partial=True))
    assert standin.knobs.last().query["interim_results"] == "true"
    assert [t for t in results if t.is_final] == FINALS
    first_final = results.index(FINALS[0])
    assert results[0] == Transcript("tone 440", False)  # interims while the burst lasts
    assert Transcript("tone 880", False) in results[first_final:]
    assert all(t.text in ("tone 440", "tone 880") for t in results)


async def test_request_key_and_language(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    results = await collect(
        make(server, key=None), SttRequest(language="de", api_key="request-key")
    )
    assert results == FINALS
    connection = standin.knobs.last()
    assert connection.headers["authorization"] == "Token request-key"
    assert connection.query["language"] == "de"


async def test_no_key_is_final_without_connecting(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    error = await failure(make(server, key=None), SttRequest())
    assert not error.transient
    assert standin.knobs.connection_count == 0


async def test_bad_key_is_final_with_deepgrams_message(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    error = await failure(make(server, key="wrong"), SttRequest())
    assert not error.transient
    assert "Invalid credentials." in str(error)
    assert "wrong" not in str(error)
    assert standin.knobs.last().status == 401


async def test_bad_parameter_is_final_with_deepgrams_message(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    error = await failure(make(server), SttRequest(language="xx"))
    assert not error.transient
    assert BAD_MODEL in str(error)
    assert standin.knobs.last().status == 400


@pytest.mark.parametrize("status", [429, 503])
async def test_overload_at_the_handshake_is_transient(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin, status: int
) -> None:
    standin.knobs.reject_next(status)
    error = await failure(make(server), SttRequest())
    assert error.transient
    assert f"HTTP {status}" in str(error)
    assert "Too many requests" in str(error) or "temporarily unavailable" in str(error)


async def test_unreachable_server_is_transient() -> None:
    settings = Settings(
        instance_id="t", deepgram_api_key=DEFAULT_KEY, deepgram_base_url="http://127.0.0.1:9"
    )
    error = await failure(DeepgramStt(settings, open_timeout=1.0), SttRequest())
    assert error.transient


async def test_dropped_connection_is_transient_and_a_new_stream_works(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    standin.knobs.drop_next(after_bytes=16_000)
    error = await failure(make(server), SttRequest())
    assert error.transient
    assert "connection lost" in str(error)
    assert await collect(make(server), SttRequest()) == FINALS
    assert standin.knobs.connection_count == 2


@pytest.mark.parametrize(
    ("close", "transient"), [((1011, "NET-0000"), True), ((1008, "DATA-0000"), False)]
)
async def test_server_close_codes(
    server: tuple[DeepgramSttStandin, str],
    standin: DeepgramSttStandin,
    close: tuple[int, str],
    transient: bool,
) -> None:
    standin.knobs.error_next(close, after_bytes=6400)
    error = await failure(make(server), SttRequest())
    assert error.transient is transient
    assert close[1] in str(error)


async def test_a_server_that_stops_reading_fails_the_send_in_time(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    standin.knobs.stall_next(after_bytes=0)
    started = time.monotonic()
    error = await failure(make(server, send_deadline=0.3), SttRequest(), silence_forever())
    elapsed = time.monotonic() - started
    assert error.transient
    assert "timed out" in str(error)
    assert 0.3 <= elapsed < 3.0


async def test_keepalive_holds_the_stream_while_no_audio_flows(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    standin.knobs.idle_timeout = 0.4
    gap = {len(SPEECH) // 2 // CHUNK: 1.0}  # a second with no audio, in the middle
    provider = make(server, keepalive_interval=0.1)
    assert await collect(provider, SttRequest(), pcm_chunks(SPEECH, CHUNK, gap)) == FINALS
    received = standin.knobs.last().received
    assert received.count({"type": "KeepAlive"}) >= 5
    assert received[-1] == {"type": "CloseStream"}


async def test_silence_without_keepalive_ends_with_a_transient_error(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    standin.knobs.idle_timeout = 0.3
    provider = make(server, keepalive_interval=5.0)
    error = await failure(provider, SttRequest(), pcm_chunks(SPEECH, CHUNK, {10: 1.0}))
    assert error.transient
    assert "NET-0001" in str(error)


async def test_end_of_audio_flushes_the_last_final(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    cut = tone_pcm([(0, 0.2), (440, 0.6), (0, 0.3), (880, 0.5)])  # ends inside a burst
    assert await collect(make(server), SttRequest(), pcm_chunks(cut, CHUNK)) == FINALS
    connection = standin.knobs.last()
    assert connection.received == [{"type": "CloseStream"}]
    assert connection.close_code == 1000


async def test_waiting_for_the_end_is_bounded(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    standin.knobs.answer_end = False  # CloseStream is never answered
    started = time.monotonic()
    assert await collect(make(server, end_wait=0.4), SttRequest()) == FINALS
    assert time.monotonic() - started < 2.0
    assert standin.knobs.last().received[-1] == {"type": "CloseStream"}


async def test_an_error_from_the_audio_source_propagates(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield bytes(CHUNK)
        raise RuntimeError("tap failed")

    with pytest.raises(RuntimeError, match="tap failed"):
        await collect(make(server), SttRequest(), broken())


async def test_closing_the_stream_early_closes_the_socket(
    server: tuple[DeepgramSttStandin, str], standin: DeepgramSttStandin
) -> None:
    async def endless() -> AsyncIterator[bytes]:
        async for chunk in pcm_chunks(SPEECH, CHUNK):
            yield chunk
        async for chunk in silence_forever():
            yield chunk

    stream = make(server).transcribe(endless(), SttRequest())
    assert isinstance(stream, AsyncGenerator)
    assert await anext(stream) == FINALS[0]
    await stream.aclose()
    for _ in range(100):
        if standin.knobs.last().closed_by:
            break
        await asyncio.sleep(0.02)
    assert standin.knobs.last().closed_by == "client"
