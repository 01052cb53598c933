"""The ElevenLabs agent stand-in, driven by a raw `websockets` client and httpx: it issues
signed URLs and refuses handshakes as the service does, insists on the init message and
checks its overrides, answers the audio it really received with the documented events, and
its barge-in, ping, injection and failure knobs behave as its clients' tests rely on."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from callboard.media.g711 import ulaw_decode
from tests.helpers.standins.elevenlabs_agent import (
    CONVERSATION_PATH,
    DEFAULT_AGENT,
    DEFAULT_KEY,
    FORMATS,
    SIGNED_URL_PATH,
    ElevenLabsAgentStandin,
)
from tests.helpers.standins.stt_common import running_ws_standin, tone_pcm

OTHER_AGENT = "agent_test_02"
INIT: dict[str, Any] = {"type": "conversation_initiation_client_data"}
# A burst of 440 Hz the agent hears once 0.3 s of quiet follow it (its end_silence).
BURST = [(440.0, 0.5), (0.0, 0.4)]

Server = tuple[ElevenLabsAgentStandin, str]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    standin = ElevenLabsAgentStandin(agents={DEFAULT_AGENT, OTHER_AGENT})
    with running_ws_standin(standin) as base_url:
        yield standin, base_url


@pytest.fixture
def standin(server: Server) -> Iterator[ElevenLabsAgentStandin]:
    server[0].knobs.reset()
    yield server[0]
    server[0].knobs.reset()


@pytest.fixture
def base_url(server: Server, standin: ElevenLabsAgentStandin) -> str:
    return server[1]


def ws_url(base_url: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{base_url.replace('http', 'ws', 1)}{CONVERSATION_PATH}?{params}"


async def get_signed_url(
    base_url: str, agent: str | None = DEFAULT_AGENT, key: str | None = DEFAULT_KEY
) -> httpx.Response:
    params = {"agent_id": agent} if agent is not None else {}
    headers = {"xi-api-key": key} if key is not None else {}
    async with httpx.AsyncClient(base_url=base_url) as http:
        return await http.get(SIGNED_URL_PATH, params=params, headers=headers)


async def signed_url(base_url: str, agent: str = DEFAULT_AGENT) -> str:
    response = await get_signed_url(base_url, agent)
    assert response.status_code == 200, response.text
    return str(response.json()["signed_url"])


async def receive(ws: ClientConnection, timeout: float = 3.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws: ClientConnection, done: str, count: int = 1, timeout: float = 3.0) -> list[Any]:
    """Messages up to the `count`th of type `done`, that one included."""
    messages: list[Any] = []
    async with asyncio.timeout(timeout):
        while count:
            messages.append(await receive(ws))
            count -= messages[-1].get("type") == done
    return messages


async def nothing_for(ws: ClientConnection, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), seconds)


async def closed(ws: ClientConnection, timeout: float = 3.0) -> tuple[int, str]:
    """The server's close code and reason, reading (and dropping) whatever comes first."""
    with pytest.raises(ConnectionClosed) as caught:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    assert caught.value.rcvd is not None
    return caught.value.rcvd.code, caught.value.rcvd.reason


async def refused(url: str) -> tuple[int, Any]:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(url):
            pass
    response = caught.value.response
    return response.status_code, json.loads(response.body or b"null")


@asynccontextmanager
async def conversation(
    base_url: str, init: dict[str, Any] | None = None
) -> AsyncIterator[tuple[ClientConnection, dict[str, Any]]]:
    """A conversation over a fresh signed URL, once its metadata arrived."""
    async with connect(await signed_url(base_url)) as ws:
        await ws.send(json.dumps(INIT if init is None else init))
        metadata = await receive(ws)
        assert metadata["type"] == "conversation_initiation_metadata"
        yield ws, metadata


async def send_audio(ws: ClientConnection, pcm: bytes, size: int = 640) -> None:
    for start in range(0, len(pcm), size):
        chunk = base64.b64encode(pcm[start : start + size]).decode()
        await ws.send(json.dumps({"user_audio_chunk": chunk}))


def audio_of(messages: list[Any], audio_format: str = "pcm_16000") -> np.ndarray:
    data = b"".join(
        base64.b64decode(m["audio_event"]["audio_base_64"])
        for m in messages
        if m["type"] == "audio"
    )
    if audio_format == "ulaw_8000":
        return ulaw_decode(data)
    return np.frombuffer(data, dtype="<i2")


def event_ids(messages: list[Any]) -> list[int]:
    return [m["audio_event"]["event_id"] for m in messages if m["type"] == "audio"]


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum)) * rate / len(samples)


async def test_signed_url_points_at_the_socket_with_a_signature(
    standin: ElevenLabsAgentStandin, base_url: str
) -> None:
    url = urlsplit(await signed_url(base_url))
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc, url.path) == (
        "ws",
        urlsplit(base_url).netloc,
        CONVERSATION_PATH,
    )
    assert query["agent_id"] == [DEFAULT_AGENT]
    assert len(query["conversation_signature"][0]) >= 20
    request = standin.knobs.signed_url_requests[-1]
    assert request.headers["xi-api-key"] == DEFAULT_KEY
    assert request.query == {"agent_id": DEFAULT_AGENT}


async def test_signed_url_refusals(standin: ElevenLabsAgentStandin, base_url: str) -> None:
    def detail(response: httpx.Response) -> tuple[int, str]:
        return response.status_code, response.json()["detail"]["status"]

    assert detail(await get_signed_url(base_url, key=None)) == (401, "needs_authorization")
    wrong = await get_signed_url(base_url, key="sk_wrong")
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
    assert detail(await get_signed_url(base_url, agent="agent_nope")) == (404, "agent_not_found")
    missing = await get_signed_url(base_url, agent=None)
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "agent_id"]
    standin.knobs.refuse_keys = True
    assert detail(await get_signed_url(base_url)) == (401, "invalid_api_key")


async def test_handshake_refusals(standin: ElevenLabsAgentStandin, base_url: str) -> None:
    async def status(url: str) -> tuple[int, str]:
        code, body = await refused(url)
        return code, body["detail"]["status"]

    assert await status(ws_url(base_url, agent_id="agent_nope")) == (404, "agent_not_found")
    assert await status(ws_url(base_url, agent_id=DEFAULT_AGENT)) == (401, "needs_authorization")
    # An API key on the upgrade does not stand in for a signature.
    with pytest.raises(InvalidStatus) as caught:
        async with connect(
            ws_url(base_url, agent_id=DEFAULT_AGENT), additional_headers={"xi-api-key": DEFAULT_KEY}
        ):
            pass
    assert caught.value.response.status_code == 401
    assert standin.knobs.last().headers["xi-api-key"] == DEFAULT_KEY
    bogus = ws_url(base_url, agent_id=DEFAULT_AGENT, conversation_signature="made-up")
    assert await status(bogus) == (403, "invalid_signature")
    other = await signed_url(base_url, OTHER_AGENT)
    swapped = other.replace(f"agent_id={OTHER_AGENT}", f"agent_id={DEFAULT_AGENT}")
    assert await status(swapped) == (403, "invalid_signature")

    once = await signed_url(base_url)
    async with connect(once) as ws:
        await ws.send(json.dumps(INIT))
        await receive(ws)
    assert await status(once) == (403, "signature_used")

    standin.knobs.signature_ttl = 0.2
    stale = await signed_url(base_url)
    await asyncio.sleep(0.3)
    assert await status(stale) == (403, "signature_expired")

    assert [c.status for c in standin.knobs.sockets] == [404, 401, 401, 403, 403, 101, 403, 403]
    assert standin.knobs.connections == 1
    assert len(standin.knobs.events("refused")) == 7


async def test_public_agent_needs_no_signature(
    standin: ElevenLabsAgentStandin, base_url: str
) -> None:
    standin.knobs.public_agents = {DEFAULT_AGENT}
    async with connect(ws_url(base_url, agent_id=DEFAULT_AGENT)) as ws:
        await ws.send(json.dumps(INIT))
        assert (await receive(ws))["type"] == "conversation_initiation_metadata"
    assert (await refused(ws_url(base_url, agent_id=OTHER_AGENT)))[0] == 401


async def test_session_is_recorded_from_init_to_close(
    standin: ElevenLabsAgentStandin, base_url: str
) -> None:
    init = {**INIT, "user_id": "caller-1", "source_info": {"source": "callboard", "version": "1"}}
    async with conversation(base_url, init) as (ws, metadata):
        event = metadata["conversation_initiation_metadata_event"]
        assert event["conversation_id"].startswith("conv_")
        assert event["agent_output_audio_format"] == "pcm_16000"
        assert event["user_input_audio_format"] == "pcm_16000"
        await ws.close(1000, "bye")
    await asyncio.sleep(0.1)
    connection = standin.knobs.last()
    assert connection.query["agent_id"] == DEFAULT_AGENT
    assert "conversation_signature" in connection.query
    assert connection.received == [init]
    assert connection.sent == [metadata]
    assert connection.conversation_id == event["conversation_id"]
    assert (connection.close_code, connection.closed_by) == (1000, "client")
    assert [d for _, d in standin.knobs.events("connected")] == [DEFAULT_AGENT]
    assert standin.knobs.events("closed")[-1][1]["by"] == "client"


@pytest.mark.parametrize(
    "first",
    [
        json.dumps({"user_audio_chunk": base64.b64encode(bytes(640)).decode()}),
        json.dumps({"type": "user_activity"}),
        json.dumps([INIT]),
        "not json",
        b"\x00\x01binary",
    ],
    ids=["audio", "other-type", "not-an-object", "not-json", "binary"],
)
async def test_the_first_message_must_be_the_init(
    standin: ElevenLabsAgentStandin, base_url: str, first: str | bytes
) -> None:
    async with connect(await signed_url(base_url)) as ws:
        await ws.send(first)
        code, reason = await closed(ws)
    assert code == 1008 and reason
    assert standin.knobs.last().sent == []
    assert (standin.knobs.last().close_code, standin.knobs.last().closed_by) == (1008, "server")


async def test_no_init_in_time_closes(standin: ElevenLabsAgentStandin, base_url: str) -> None:
    standin.knobs.init_timeout = 0.2
    async with connect(await signed_url(base_url)) as ws:
        assert (await closed(ws))[0] == 1008


@pytest.mark.parametrize(
    ("allowed", "init", "reason"),
    [
        (
            {"agent.prompt.prompt"},
            {"conversation_config_override": {"agent": {"first_message": "Hi"}}},
            "Override for field 'agent.first_message' is not allowed by config.",
        ),
        (
            None,
            {"conversation_config_override": {"agent": {"llm": "gpt"}}},
            "Override for field 'agent.llm' is not allowed by config.",
        ),
        (
            None,
            {"conversation_config_override": {"tts": {"stability": 0.5}}},
            "Override for field 'tts.stability' is not allowed by config.",
        ),
        (
            None,
            {"conversation_config_override": {"agent": {"prompt": "be brief"}}},
            "Override for field 'agent.prompt' is not allowed by config.",
        ),
        (
            set(),
            {"conversation_config_override": {"tts": {"voice_id": None}}},
            "Override for field 'tts.voice_id' is not allowed by config.",
        ),
        (
            None,
            {"conversation_config_override": {"conversation": {"text_only": "yes"}}},
            "Invalid value for override field 'conversation.text_only'.",
        ),
        (None, {"dynamic_variables": {"a": {"b": 1}}}, "Dynamic variable 'a'"),
        (None, {"dynamic_variables": {"a": [1]}}, "Dynamic variable 'a'"),
        (None, {"dynamic_variables": {"a": None}}, "Dynamic variable 'a'"),
        (None, {"dynamic_variables": ["a"]}, "dynamic_variables must be an object."),
        (
            None,
            {
                "conversation_config_override": {"agent": {"first_message": "Hi {{name}}"}},
                "dynamic_variables": {"other": 1},
            },
            "Missing required dynamic variables in first message: {'name'}",
        ),
    ],
    ids=[
        "not-enabled",
        "unknown-field",
        "unknown-tts-field",
        "prompt-not-object",
        "null-still-overrides",
        "wrong-type",
        "nested-variable",
        "list-variable",
        "null-variable",
        "variables-not-map",
        "missing-variable",
    ],
)
async def test_bad_init_closes_1008(
    standin: ElevenLabsAgentStandin,
    base_url: str,
    allowed: set[str] | None,
    init: dict[str, Any],
    reason: str,
) -> None:
    if allowed is not None:
        standin.knobs.allowed_overrides = allowed
    async with connect(await signed_url(base_url)) as ws:
        await ws.send(json.dumps({**INIT, **init}))
        code, got = await closed(ws)
    assert code == 1008
    assert got.startswith(reason)
    assert standin.knobs.last().close_reason == got


async def test_allowed_overrides_and_first_message(
    standin: ElevenLabsAgentStandin, base_url: str
) -> None:
    init = {
        **INIT,
        "conversation_config_override": {
            "agent": {
                "prompt": {"prompt": "You help {{caller_name}}."},
                "first_message": "Hello {{caller_name}}, tier {{tier}}, vip {{vip}}.",
                "language": "en",
            },
            "tts": {"voice_id": "voice_1"},
            "conversation": {},
        },
        "dynamic_variables": {"caller_name": "Ada", "tier": 2, "vip": True},
        "custom_llm_extra_body": {"temperature": 0.2},
    }
    async with conversation(base_url, init) as (ws, _):
        messages = await until(ws, "audio", count=10)
    assert messages[0] == {
        "type": "agent_response",
        "agent_response_event": {"agent_response": "Hello Ada, tier 2, vip true."},
    }
    assert event_ids(messages) == list(range(1, 11))
    assert len(audio_of(messages)) == 16000


async def test_greeting_knob_speaks_first(standin: ElevenLabsAgentStandin, base_url: str) -> None:
    standin.knobs.greeting = True
    async with conversation(base_url) as (ws, _):
        messages = await until(ws, "audio")
    text = messages[0]["agent_response_event"]["agent_response"]
    assert text == "Hello from the stand-in"
    assert [m["type"] for m in messages] == ["agent_response", "audio"]


@pytest.mark.parametrize(
    ("input_format", "output_format", "chunk_bytes"),
    [
        ("pcm_16000", "pcm_16000", 640),
        ("pcm_8000", "ulaw_8000", 321),
        ("pcm_48000", "pcm_44100", 1920),
    ],
)
async def test_audio_in_is_answered_with_transcript_text_and_audio(
    standin: ElevenLabsAgentStandin,
    base_url: str,
    input_format: str,
    output_format: str,
    chunk_bytes: int,
) -> None:
    standin.knobs.input_format, standin.knobs.output_format = input_format, output_format
    pcm = tone_pcm(BURST, FORMATS[input_format])
    async with conversation(base_url) as (ws, metadata):
        event = metadata["conversation_initiation_metadata_event"]
        assert event["agent_output_audio_format"] == output_format
        assert event["user_input_audio_format"] == input_format
        await send_audio(ws, pcm, chunk_bytes)  # odd sizes split samples: carried over
        messages = await until(ws, "audio", count=10)
    assert messages[0] == {
        "type": "user_transcript",
        "user_transcription_event": {"user_transcript": "tone 440"},
    }
    assert messages[1] == {
        "type": "agent_response",
        "agent_response_event": {"agent_response": "I heard tone 440"},
    }
    assert event_ids(messages) == list(range(1, 11))
    samples = audio_of(messages, output_format)
    rate = FORMATS[output_format]
    assert len(samples) == rate  # reply_seconds = 1.0
    assert abs(dominant_hz(samples, rate) - 660) < 5
    assert standin.knobs.last().audio_bytes == len(pcm)
    assert sum(d for _, d in standin.knobs.events("audio_in")) == len(pcm)
    assert len(standin.knobs.events("reply")) == 1


async def test_barge_in_interrupts_the_reply(
    standin: ElevenLabsAgentStandin, base_url: str
) -> None:
    standin.knobs.chunk_interval, standin.knobs.reply_seconds = 0.05, 2.0  # 20 chunks in 1 s
    async with conversation(base_url) as (ws, _):
        await send_audio(ws, tone_pcm(BURST))
        first = await until(ws, "audio")
        # The reader keeps reading while the reply is sent: the caller speaks over it.
        await send_audio(ws, tone_pcm([(880.0, 0.4), (0.0, 0.4)]))
        before = await until(ws, "interruption")
        after = await until(ws, "audio")
        await asyncio.sleep(0.1)
    sent_before = event_ids(first + before)
    interruption = before[-1]["interruption_event"]["event_id"]
    assert interruption == max(sent_before)
    assert len(sent_before) < 20
    assert [m["type"] for m in after] == ["user_transcript", "agent_response", "audio"]
    assert after[0]["user_transcription_event"]["user_transcript"] == "tone 880"
    assert event_ids(after) == [interruption + 1]
    assert len(standin.knobs.events("interrupt")) == 1


async def test_pings_need_pongs(standin: ElevenLabsAgentStandin, base_url: str) -> None:
    standin.knobs.ping_interval, standin.knobs.pong_timeout = 0.1, 0.3
    async with conversation(base_url) as (ws, _):
        pings = []
        for _ in range(3):
            ping = await receive(ws)
            pings.append(ping)
            await ws.send(json.dumps({"type": "pong", "event_id": ping["ping_event"]["event_id"]}))
        code, reason = await closed(ws)  # no more pongs
    assert [p["ping_event"] for p in pings] == [{"event_id": k, "ping_ms": None} for k in (1, 2, 3)]
    assert (code, reason) == (1008, "pong timeout")
    connection = standin.knobs.last()
    assert connection.pongs == [1, 2, 3]
    assert connection.close_reason == "pong timeout"
    assert [d for _, d in standin.knobs.events("pong")] == [1, 2, 3]
    assert standin.knobs.events("pong_timeout")


async def test_text_messages(standin: ElevenLabsAgentStandin, base_url: str) -> None:
    update = {"type": "contextual_update", "text": "caller pressed 2"}
    async with conversation(base_url) as (ws, _):
        await ws.send(json.dumps(update))
        await ws.send(json.dumps({"type": "user_activity"}))
        await ws.send(json.dumps({"type": "feedback", "score": "like"}))
        await ws.send(json.dumps({"type": "user_audio_chunk", "user_audio_chunk": ""}))
        await nothing_for(ws, 0.3)  # none of these is answered
        await ws.send(json.dumps({"type": "user_message", "text": "hi"}))
        messages = await until(ws, "audio", count=10)
    assert messages[0]["agent_response_event"]["agent_response"] == "you said hi"
    assert len(audio_of(messages)) == 16000
    assert standin.knobs.injected == [update, {"type": "user_message", "text": "hi"}]
    assert len(standin.knobs.events("injected")) == 2
    assert len(standin.knobs.events("user_activity")) == 1
    assert [d["type"] for _, d in standin.knobs.events("ignored")] == [
        "feedback",
        "user_audio_chunk",
    ]
    assert standin.knobs.last().audio_bytes == 0


async def test_text_only_replies_have_no_audio(
    standin: ElevenLabsAgentStandin, base_url: str
) -> None:
    init = {**INIT, "conversation_config_override": {"conversation": {"text_only": True}}}
    async with conversation(base_url, init) as (ws, _):
        await ws.send(json.dumps({"type": "user_message", "text": "hi"}))
        assert (await receive(ws))["type"] == "agent_response"
        await nothing_for(ws, 0.3)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        b"\x01\x02",
        json.dumps(["a"]),
        json.dumps({"user_audio_chunk": "not base64!"}),
        json.dumps({"user_audio_chunk": 12}),
        json.dumps({"type": "user_message", "text": 3}),
        json.dumps({"type": "contextual_update"}),
    ],
    ids=["not-json", "binary", "array", "bad-base64", "audio-not-string", "text-int", "no-text"],
)
async def test_bad_frames_mid_session_close_1008(
    standin: ElevenLabsAgentStandin, base_url: str, frame: str | bytes
) -> None:
    async with conversation(base_url) as (ws, _):
        await ws.send(frame)
        code, reason = await closed(ws)
    assert code == 1008 and reason
    assert standin.knobs.events("closed")[-1][1] == {"code": 1008, "by": "server", "reason": reason}


async def test_silent_provider_keeps_reading_and_sends_nothing(
    standin: ElevenLabsAgentStandin, base_url: str
) -> None:
    standin.knobs.silent, standin.knobs.ping_interval = True, 0.05
    async with connect(await signed_url(base_url)) as ws:
        await ws.send(json.dumps(INIT))
        await send_audio(ws, tone_pcm(BURST))
        await nothing_for(ws, 0.5)
        await asyncio.wait_for(await ws.ping(), 1)  # the socket is alive
        await ws.close(1000)
    await asyncio.sleep(0.1)
    connection = standin.knobs.last()
    assert connection.sent == []
    assert connection.audio_bytes == len(tone_pcm(BURST))
    assert (connection.close_code, connection.closed_by) == (1000, "client")


async def test_close_after_chunks(standin: ElevenLabsAgentStandin, base_url: str) -> None:
    standin.knobs.greeting, standin.knobs.close_after_chunks = True, 3
    messages: list[Any] = []
    async with conversation(base_url) as (ws, _):
        with pytest.raises(ConnectionClosed) as caught:
            while True:
                messages.append(await receive(ws))
    assert caught.value.rcvd is not None
    assert (caught.value.rcvd.code, caught.value.rcvd.reason) == (1011, "internal error")
    assert event_ids(messages) == [1, 2, 3]
    assert (standin.knobs.last().close_code, standin.knobs.last().close_reason) == (
        1011,
        "internal error",
    )


async def test_garbage_after_connect(standin: ElevenLabsAgentStandin, base_url: str) -> None:
    standin.knobs.garbage_after_connect, standin.knobs.greeting = True, True
    async with conversation(base_url) as (ws, _):
        binary = await asyncio.wait_for(ws.recv(), 2)
        text = await asyncio.wait_for(ws.recv(), 2)
        messages = await until(ws, "audio")
    assert isinstance(binary, bytes) and len(binary) > 0
    assert isinstance(text, str)
    with pytest.raises(ValueError):
        json.loads(text)
    assert messages[0]["type"] == "agent_response"
