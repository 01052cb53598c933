"""The ElevenLabs realtime STT client against the ElevenLabs stand-in: transcripts come from the
audio it really sent, the documented URL, header and JSON audio messages are used, and every
failure becomes the right SttError without ever hanging."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from callboard.config import Settings
from callboard.speech.stt.base import SttError, SttRequest, Transcript
from callboard.speech.stt.elevenlabs import ElevenLabsStt, Reader
from tests.helpers.standins.elevenlabs_stt import DEFAULT_KEY, ElevenLabsSttStandin
from tests.helpers.standins.stt_common import pcm_chunks, start_ws_standin, tone_pcm

# The server commits on 1.5 s of silence (its VAD default).
SPEECH = tone_pcm([(0, 0.5), (440, 0.6), (0, 1.6), (880, 0.6), (0, 0.5)])
FINALS = [Transcript("tone 440", True), Transcript("tone 880", True)]
CHUNK = 640  # 20 ms
FINAL_COMMIT = {"message_type": "input_audio_chunk", "audio_base_64": "", "commit": True,
                "sample_rate": 16000}  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ElevenLabsSttStandin, str]]:
    standin = ElevenLabsSttStandin(api_keys={DEFAULT_KEY, "request-key"})
    base_url, stop = start_ws_standin(standin)
    yield standin, base_url
    standin.knobs.reset()  # releases a stalled session so the server stops at once
    stop()


@pytest.fixture
def standin(server: tuple[ElevenLabsSttStandin, str]) -> Iterator[ElevenLabsSttStandin]:
    server[0].knobs.reset()
    yield server[0]
    server[0].knobs.reset()


def make(
    server: tuple[ElevenLabsSttStandin, str], key: str | None = DEFAULT_KEY, **options: float
) -> ElevenLabsStt:
    settings = Settings(instance_id="t", elevenlabs_api_key=key, elevenlabs_base_url=server[1])
    return ElevenLabsStt(settings, **options)


async def collect(
    provider: ElevenLabsStt, request: SttRequest, audio: AsyncIterator[bytes] | None = None
) -> list[Transcript]:
    stream = audio if audio is not None else pcm_chunks(SPEECH, CHUNK)
    return [t async for t in provider.transcribe(stream, request)]


async def failure(
    provider: ElevenLabsStt, request: SttRequest, audio: AsyncIterator[bytes] | None = None
) -> SttError:
    with pytest.raises(SttError) as caught:
        await collect(provider, request, audio)
    return caught.value


async def silence_forever() -> AsyncIterator[bytes]:
    while True:
        yield bytes(CHUNK)
        await asyncio.sleep(0)


async def speech_then_silence() -> AsyncIterator[bytes]:
    async for chunk in pcm_chunks(SPEECH, CHUNK):
        yield chunk
    async for chunk in silence_forever():
        yield chunk


def test_configured_by_settings_or_request(server: tuple[ElevenLabsSttStandin, str]) -> None:
    assert make(server).configured(SttRequest())
    assert not make(server, key=None).configured(SttRequest())
    assert make(server, key=None).configured(SttRequest(api_key="k"))


async def test_finals_come_from_the_audio_sent(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    assert await collect(make(server), SttRequest()) == FINALS
    connection = standin.knobs.last()
    assert connection.path == "/v1/speech-to-text/realtime"
    assert connection.query == {
        "model_id": "scribe_v2_realtime",
        "audio_format": "pcm_16000",
        "commit_strategy": "vad",
        "language_code": "en",
    }
    assert connection.headers["xi-api-key"] == DEFAULT_KEY
    *chunks, last = connection.received
    assert all(
        set(m) == {"message_type", "audio_base_64", "commit", "sample_rate"}
        and (m["message_type"], m["commit"], m["sample_rate"])
        == ("input_audio_chunk", False, 16000)
        for m in chunks
    )
    assert b"".join(base64.b64decode(m["audio_base_64"]) for m in chunks) == SPEECH
    assert last == FINAL_COMMIT  # the end of audio: commit, then close 1000
    assert (connection.closed_by, connection.close_code) == ("client", 1000)
    # The server sent partials too; without `partial` they are not passed on.
    assert any(m["message_type"] == "partial_transcript" for m in connection.sent)


async def test_partials_only_with_partial(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    results = await collect(make(server), SttRequest(partial=True))
    assert [t for t in results if t.is_final] == FINALS
    assert results[0] == Transcript("tone 440", False)
    assert Transcript("tone 880", False) in results[results.index(FINALS[0]) :]


async def test_request_key_and_language(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    request = SttRequest(language="de-DE", api_key="request-key")
    assert await collect(make(server, key=None), request) == FINALS
    connection = standin.knobs.last()
    assert connection.headers["xi-api-key"] == "request-key"
    assert connection.query["language_code"] == "de"


async def test_odd_chunks_never_split_a_sample(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    assert await collect(make(server), SttRequest(), pcm_chunks(SPEECH, 641)) == FINALS
    pieces = [base64.b64decode(m["audio_base_64"]) for m in standin.knobs.last().received]
    assert all(len(p) % 2 == 0 for p in pieces)
    assert b"".join(pieces) == SPEECH


async def test_bad_key_is_final_with_the_providers_message(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    error = await failure(make(server, key="wrong"), SttRequest())
    assert not error.transient
    assert "auth_error" in str(error) and "Invalid API key" in str(error)
    assert "wrong" not in str(error)
    assert standin.knobs.last().close_code == 1008


async def test_bad_language_is_an_invalid_request(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    error = await failure(make(server), SttRequest(language="english"))
    assert not error.transient
    assert "invalid_request" in str(error) and "language_code" in str(error)


@pytest.mark.parametrize(("status", "message"), [(429, "Too many"), (503, "unavailable")])
async def test_overload_at_the_handshake_is_transient(
    server: tuple[ElevenLabsSttStandin, str],
    standin: ElevenLabsSttStandin,
    status: int,
    message: str,
) -> None:
    standin.knobs.reject_next(status)
    error = await failure(make(server), SttRequest())
    assert error.transient
    assert f"HTTP {status}" in str(error) and message in str(error)


@pytest.mark.parametrize(("kind", "transient"), [("quota_exceeded", False), ("rate_limited", True)])
async def test_error_messages_mid_stream(
    server: tuple[ElevenLabsSttStandin, str],
    standin: ElevenLabsSttStandin,
    kind: str,
    transient: bool,
) -> None:
    standin.knobs.error_next((kind, "the provider says no"), after_bytes=6400)
    error = await failure(make(server), SttRequest())
    assert error.transient is transient
    assert kind in str(error) and "the provider says no" in str(error)


async def test_dropped_connection_is_transient_and_a_new_stream_works(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    standin.knobs.drop_next(after_bytes=16_000)
    # Audio that does not end before the drop: a loaded machine could otherwise send all of
    # it and finish the stream before the stand-in gets round to dropping the connection.
    error = await asyncio.wait_for(failure(make(server), SttRequest(), speech_then_silence()), 10)
    assert error.transient
    assert "connection lost" in str(error)
    assert await collect(make(server), SttRequest()) == FINALS
    assert standin.knobs.connection_count == 2


async def test_a_server_that_stops_reading_fails_the_send_in_time(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    standin.knobs.stall_next(after_bytes=0)
    started = time.monotonic()
    error = await failure(make(server, send_deadline=0.3), SttRequest(), silence_forever())
    elapsed = time.monotonic() - started
    assert error.transient
    assert "timed out" in str(error)
    assert 0.3 <= elapsed < 3.0


async def test_end_of_audio_commits_and_returns_after_the_last_final(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    # Ends inside a burst: only the final commit can produce "tone 880", and the server's
    # VAD commit of "tone 440" may well cross it.
    cut = tone_pcm([(0, 0.2), (440, 0.6), (0, 1.6), (880, 0.5)])
    provider = make(server, end_linger=1.0)  # ample time for the answer on a loaded machine
    assert await collect(provider, SttRequest(), pcm_chunks(cut, CHUNK)) == FINALS
    connection = standin.knobs.last()
    assert connection.received[-1] == FINAL_COMMIT
    assert connection.sent[-1] == {"message_type": "committed_transcript", "text": "tone 880"}
    assert (connection.closed_by, connection.close_code) == ("client", 1000)


async def test_waiting_for_the_end_is_bounded(
    server: tuple[ElevenLabsSttStandin, str], standin: ElevenLabsSttStandin
) -> None:
    standin.knobs.answer_end = False  # the final commit is never answered
    # Both bursts are committed by the server's VAD before the audio ends.
    audio = tone_pcm([(0, 0.2), (440, 0.6), (0, 1.6), (880, 0.6), (0, 1.6)])
    last_chunk = len(audio) // CHUNK - 1
    started = time.monotonic()
    stream = pcm_chunks(audio, CHUNK, {last_chunk: 0.3})
    assert await collect(make(server, end_wait=0.4), SttRequest(), stream) == FINALS
    assert 0.7 <= time.monotonic() - started < 2.0
    assert standin.knobs.last().received[-1] == FINAL_COMMIT


def test_a_commit_in_two_shapes_is_one_final() -> None:
    reader = Reader(partial=False)
    committed = json.dumps({"message_type": "committed_transcript", "text": "Hello."})
    stamped = json.dumps(
        {"message_type": "committed_transcript_with_timestamps", "text": "Hello.", "words": []}
    )
    assert reader.read(committed) == Transcript("Hello.", True)
    assert reader.read(stamped) is None
    assert reader.read(committed) == Transcript("Hello.", True)  # a new segment, same words
