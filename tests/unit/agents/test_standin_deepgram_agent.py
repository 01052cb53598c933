"""The Deepgram Voice Agent stand-in, driven by a raw `websockets` client: it follows the
documented wire protocol (Welcome -> Settings -> SettingsApplied -> audio and injections) and
refuses what the service refuses, with Deepgram's error codes and close codes."""

from __future__ import annotations

import asyncio
import copy
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from callboard.media.g711 import ulaw_decode, ulaw_encode
from tests.helpers.standins.deepgram_agent import (
    DEFAULT_KEY,
    GARBAGE_MESSAGE,
    GARBAGE_TEXT,
    DeepgramAgentStandin,
    converse_url,
)
from tests.helpers.standins.stt_common import start_ws_standin, tone_pcm

TEMP_TOKEN = "temporary-jwt"
TOKEN = Subprotocol("token")
BURST = tone_pcm([(0, 0.1), (440, 0.3), (0, 0.4)])  # heard as "tone 440" once 0.3 s quiet
SETTINGS: dict[str, Any] = {
    "type": "Settings",
    "audio": {
        "input": {"encoding": "linear16", "sample_rate": 16000},
        "output": {"encoding": "linear16", "sample_rate": 16000, "container": "none"},
    },
    "agent": {
        "listen": {"provider": {"type": "deepgram", "model": "nova-3", "language": "en"}},
        "think": {
            "provider": {"type": "open_ai", "model": "gpt-4o-mini"},
            "prompt": "You are the front desk. Be brief.",
        },
        "speak": {"provider": {"type": "deepgram", "model": "aura-2-asteria-en"}},
    },
}
DELETE = object()
Frame = dict[str, Any] | str | bytes


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[DeepgramAgentStandin, str]]:
    standin = DeepgramAgentStandin(api_keys={DEFAULT_KEY, TEMP_TOKEN})
    base_url, stop = start_ws_standin(standin)
    yield standin, converse_url(base_url)
    standin.knobs.reset()
    stop()


@pytest.fixture
def standin(server: tuple[DeepgramAgentStandin, str]) -> Iterator[DeepgramAgentStandin]:
    knobs = server[0].knobs
    knobs.reset()
    knobs.reply_seconds = 0.3  # short replies keep the file fast
    yield server[0]
    knobs.reset()


@pytest.fixture
def url(server: tuple[DeepgramAgentStandin, str]) -> str:
    return server[1]


def settings(**edits: Any) -> dict[str, Any]:
    """SETTINGS with `path="a.b.c"` edits (keyword `a__b__c`), DELETE removing a key."""
    result = copy.deepcopy(SETTINGS)
    for path, value in edits.items():
        *parents, last = path.split("__")
        node = result
        for name in parents:
            node = node.setdefault(name, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return result


class Client:
    """A raw client socket whose frames a background task collects (text parsed as JSON)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[Frame] = []
        self.done = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                if isinstance(frame, str):
                    try:
                        self.frames.append(json.loads(frame))
                    except ValueError:
                        self.frames.append(frame)
                else:
                    self.frames.append(frame)
        except ConnectionClosed:
            pass
        finally:
            self.done.set()

    def types(self) -> list[str]:
        return [
            f.get("type", "?") if isinstance(f, dict) else type(f).__name__ for f in self.frames
        ]

    def messages(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if isinstance(f, dict) and f.get("type") == kind]

    async def until(self, test: Callable[[], bool], timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while not test():
            if self.done.is_set() and not test():
                raise AssertionError(f"closed ({self.ws.close_code}) after {self.types()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {self.types()}")
            await asyncio.sleep(0.01)

    async def wait(self, kind: str, count: int = 1, timeout: float = 3.0) -> dict[str, Any]:
        await self.until(lambda: len(self.messages(kind)) >= count, timeout)
        return self.messages(kind)[count - 1]

    async def closed(self, timeout: float = 3.0) -> int | None:
        await asyncio.wait_for(self.done.wait(), timeout)
        return self.ws.close_code

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(json.dumps(message) if isinstance(message, dict) else message)

    async def send_audio(self, pcm: bytes, size: int = 640) -> None:
        for start in range(0, len(pcm), size):
            await self.ws.send(pcm[start : start + size])
            await asyncio.sleep(0)

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def open_client(url: str, key: str = DEFAULT_KEY, scheme: str = "Token") -> Client:
    ws = await connect(url, additional_headers={"Authorization": f"{scheme} {key}"}, proxy=None)
    return Client(ws)


async def started(url: str, message: dict[str, Any] | None = None) -> Client:
    client = await open_client(url)
    await client.wait("Welcome")
    await client.send(message if message is not None else settings())
    await client.wait("SettingsApplied")
    return client


def turn_audio(client: Client, number: int = 1) -> bytes:
    """The binary frames between the `number`th AgentStartedSpeaking and what follows it."""
    seen, audio = 0, b""
    for frame in client.frames:
        if isinstance(frame, dict) and frame.get("type") == "AgentStartedSpeaking":
            seen += 1
        elif isinstance(frame, bytes) and seen == number:
            audio += frame
        elif seen > number:
            break
    return audio


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum)) * rate / len(samples)


async def eventually(test: Callable[[], bool], timeout: float = 3.0) -> None:
    """The stand-in's records lag the client a little (its own thread)."""
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def refused(url: str, **options: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        await connect(url, proxy=None, **options)
    return caught.value


# --- the handshake ----------------------------------------------------------------------


async def test_bad_or_missing_key_is_refused_with_deepgrams_401(
    standin: DeepgramAgentStandin, url: str
) -> None:
    for headers in ({}, {"Authorization": "Token wrong"}, {"Authorization": DEFAULT_KEY}):
        error = await refused(url, additional_headers=headers)
        assert error.response.status_code == 401
        body = json.loads(error.response.body)
        assert body["err_code"] == "INVALID_AUTH"
        assert body["err_msg"] == "Invalid credentials."
        uuid.UUID(body["request_id"])
        assert json.loads(error.response.headers["dg-error"]) == body
    assert [c.status for c in standin.knobs.sessions] == [401, 401, 401]
    assert standin.knobs.connections == 3
    assert len(standin.knobs.events("refused")) == 3


async def test_refuse_keys_knob_refuses_a_good_key(standin: DeepgramAgentStandin, url: str) -> None:
    standin.knobs.refuse_keys = True
    error = await refused(url, additional_headers={"Authorization": f"Token {DEFAULT_KEY}"})
    assert error.response.status_code == 401


async def test_token_bearer_and_subprotocol_forms_are_accepted(
    standin: DeepgramAgentStandin, url: str
) -> None:
    assert url.startswith("ws://127.0.0.1:") and url.endswith("/v1/agent/converse")
    for client in (
        await open_client(url),
        await open_client(url, TEMP_TOKEN, scheme="Bearer"),
        Client(await connect(url, subprotocols=[TOKEN, Subprotocol(DEFAULT_KEY)], proxy=None)),
    ):
        welcome = await client.wait("Welcome")
        assert client.frames[0] == welcome
        uuid.UUID(welcome["request_id"])
        await client.close()
    first = standin.knobs.sessions[0]
    assert first.headers["authorization"] == f"Token {DEFAULT_KEY}"
    assert first.request_id == standin.knobs.sessions[0].sent[0]["request_id"]


# --- what must come first ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (BURST[:640], "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"),
        ({"type": "KeepAlive"}, "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"),
        ({"type": "InjectAgentMessage", "message": "hi"}, "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS"),
        ("this is not json", "UNPARSABLE_CLIENT_MESSAGE"),
        ({"no": "type"}, "UNPARSABLE_CLIENT_MESSAGE"),
    ],
)
async def test_anything_but_settings_first_is_an_error_and_close_1008(
    standin: DeepgramAgentStandin, url: str, first: Any, code: str
) -> None:
    client = await open_client(url)
    await client.wait("Welcome")
    await client.send(first)
    error = await client.wait("Error")
    assert error["code"] == code and error["description"]
    assert await client.closed() == 1008
    assert standin.knobs.last().closed_by == "server"
    assert standin.knobs.last().close_code == 1008
    assert client.types() == ["Welcome", "Error"]


@pytest.mark.parametrize(
    ("edits", "field"),
    [
        ({"audio__input__sample_rate": 16000.0}, "audio.input.sample_rate"),
        ({"audio__input__sample_rate": "16000"}, "audio.input.sample_rate"),
        ({"audio__input__sample_rate": True}, "audio.input.sample_rate"),
        ({"audio__input__sample_rate": DELETE}, "audio.input.sample_rate"),
        ({"audio__input__encoding": DELETE}, "audio.input.encoding"),
        ({"audio__input__encoding": "pcm16"}, "audio.input.encoding"),
        ({"audio__input": DELETE}, "audio.input"),
        ({"audio__output": DELETE}, "audio.output"),
        ({"audio__output__sample_rate": 24000.0}, "audio.output.sample_rate"),
        ({"audio__output__encoding": "wav"}, "audio.output.encoding"),
        ({"audio__output__container": "mp4"}, "audio.output.container"),
        ({"audio__output__bitrate": 48000.5}, "audio.output.bitrate"),
        ({"agent__listen": DELETE}, "agent.listen"),
        ({"agent__listen__provider": DELETE}, "agent.listen.provider"),
        ({"agent__think__provider": {"model": "gpt-4o-mini"}}, "agent.think.provider.type"),
        ({"agent__think__provider__type": "openai"}, "agent.think.provider.type"),
        ({"agent__think": []}, "agent.think"),
        ({"agent__speak": [{"provider": {"type": "nope"}}]}, "agent.speak[0].provider.type"),
        ({"agent__speak": DELETE}, "agent.speak"),
        ({"agent__listen": {"endpointing": 300}}, "agent.listen.provider"),
        ({"agent__instructions": "old name"}, "agent.instructions"),
        ({"audio__input__channels": 1}, "audio.input.channels"),
        ({"experimental_features": True}, "experimental_features"),
        ({"agent__greeting": 42}, "agent.greeting"),
    ],
)
async def test_invalid_settings_are_refused_naming_the_field(
    standin: DeepgramAgentStandin, url: str, edits: dict[str, Any], field: str
) -> None:
    client = await open_client(url)
    await client.wait("Welcome")
    await client.send(settings(**edits))
    error = await client.wait("Error")
    assert error["code"] == "INVALID_SETTINGS"
    assert f"Check the {field} field" in error["description"]
    assert await client.closed() == 1008
    assert not client.messages("SettingsApplied")


@pytest.mark.parametrize(
    ("edits", "what"),
    [
        ({"audio__input__encoding": "opus"}, "input encoding opus"),
        ({"audio__output__encoding": "mp3"}, "output encoding mp3"),
        ({"audio__output__container": "wav"}, "output container wav"),
    ],
)
async def test_valid_formats_the_standin_cannot_do_are_flagged(
    standin: DeepgramAgentStandin, url: str, edits: dict[str, Any], what: str
) -> None:
    client = await open_client(url)
    await client.wait("Welcome")
    await client.send(settings(**edits))
    error = await client.wait("Error")
    assert error == {"type": "Error", "description": what, "code": "UNSUPPORTED_BY_STANDIN"}
    assert await client.closed() == 1008


async def test_fallback_arrays_and_optional_fields_are_accepted(
    standin: DeepgramAgentStandin, url: str
) -> None:
    message = settings(
        tags=["test"],
        mip_opt_out=True,
        flags={"history": False},
        audio__output__bitrate=48000,
        agent__think=[
            {"provider": {"type": "open_ai", "model": "gpt-4o-mini"}},
            {"provider": {"type": "anthropic", "model": "claude"}},
        ],
        agent__speak=[{"provider": {"type": "deepgram", "model": "aura-2-asteria-en"}}],
        agent__context={"messages": [{"role": "user", "content": "hi"}]},
    )
    client = await started(url, message)
    assert client.types() == ["Welcome", "SettingsApplied"]
    assert standin.knobs.last().settings == message
    await client.close()


async def test_a_second_settings_is_refused(standin: DeepgramAgentStandin, url: str) -> None:
    client = await started(url)
    await client.send(settings())
    error = await client.wait("Error")
    assert error["code"] == "SETTINGS_ALREADY_APPLIED"
    assert await client.closed() == 1008


# --- the conversation -------------------------------------------------------------------


async def test_a_burst_gets_transcript_and_a_spoken_answer(
    standin: DeepgramAgentStandin, url: str
) -> None:
    client = await started(url)
    await client.send_audio(BURST)
    await client.wait("AgentAudioDone")
    texts = client.messages("ConversationText")
    assert texts == [
        {"type": "ConversationText", "role": "user", "content": "tone 440"},
        {"type": "ConversationText", "role": "assistant", "content": "I heard tone 440"},
    ]
    order = [t for t in client.types() if t != "bytes"]
    assert order == [
        "Welcome", "SettingsApplied", "UserStartedSpeaking", "ConversationText",
        "ConversationText", "AgentStartedSpeaking", "AgentAudioDone",
    ]  # fmt: skip
    started_speaking = client.messages("AgentStartedSpeaking")[0]
    assert started_speaking == {
        "type": "AgentStartedSpeaking",
        "total_latency": 0.1,
        "tts_latency": 0.05,
        "ttt_latency": 0.05,
    }
    audio = turn_audio(client)
    assert len(audio) == round(0.3 * 16000) * 2
    assert abs(peak_hz(np.frombuffer(audio, "<i2"), 16000) - 660) < 10
    await client.close()
    record = standin.knobs.last()
    await eventually(lambda: record.closed_by is not None and bool(standin.knobs.events("closed")))
    assert record.audio_bytes == len(BURST)
    assert record.audio_out_bytes == len(audio)
    assert record.audio_out_chunks == 3  # 100 ms chunks
    assert record.received == [settings()]
    assert record.sent[0]["type"] == "Welcome"
    assert record.sent[-1] == {"type": "AgentAudioDone"}
    assert record.close_code == 1000 and record.closed_by == "client"
    logged = {what for _, what, _ in standin.knobs.log}
    assert {"connected", "settings", "audio_in", "reply", "closed"} <= logged


async def test_mulaw_8k_in_and_out(standin: DeepgramAgentStandin, url: str) -> None:
    message = settings(
        audio__input={"encoding": "mulaw", "sample_rate": 8000},
        audio__output={"encoding": "mulaw", "sample_rate": 8000, "container": "none"},
    )
    client = await started(url, message)
    pcm = np.frombuffer(tone_pcm([(0, 0.1), (440, 0.3), (0, 0.4)], rate=8000), "<i2")
    await client.send_audio(ulaw_encode(pcm), size=160)
    await client.wait("AgentAudioDone")
    assert client.messages("ConversationText")[0]["content"] == "tone 440"
    audio = turn_audio(client)
    assert len(audio) == round(0.3 * 8000)  # one byte a sample
    assert abs(peak_hz(ulaw_decode(audio), 8000) - 660) < 10
    await client.close()


async def test_every_burst_start_is_announced(standin: DeepgramAgentStandin, url: str) -> None:
    standin.knobs.reply_seconds = 0.1
    client = await started(url)
    await client.send_audio(BURST)
    await client.wait("AgentAudioDone")
    await asyncio.sleep(0.15)  # the reply is over, even at real time
    await client.send_audio(BURST)
    await client.wait("AgentAudioDone", 2)
    assert len(client.messages("UserStartedSpeaking")) == 2
    assert standin.knobs.events("interrupt") == []  # nobody talked over a reply
    await client.close()


async def test_a_burst_during_a_reply_stops_the_reply(
    standin: DeepgramAgentStandin, url: str
) -> None:
    standin.knobs.reply_seconds = 2.0
    standin.knobs.chunk_interval = 0.05  # 20 chunks over 1 s
    client = await started(url)
    await client.send_audio(BURST)
    await client.until(lambda: len(turn_audio(client)) >= 3200 * 2)  # two chunks in
    await client.send_audio(BURST)  # audio is still read while the reply is sent
    await client.wait("AgentStartedSpeaking", 2, timeout=5)
    await client.wait("AgentAudioDone", 1, timeout=5)
    order = [t for t in client.types() if t != "bytes"]
    first, second = (i for i, t in enumerate(order) if t == "AgentStartedSpeaking")
    assert "AgentAudioDone" not in order[first:second]  # the cut turn never finished
    assert "UserStartedSpeaking" in order[first:second]
    assert len(turn_audio(client, 1)) < 16000 * 2  # not even 1 s of the 2 s was sent
    assert len(standin.knobs.events("interrupt")) == 1
    await client.close()


async def test_greeting_from_settings_and_from_the_knob(
    standin: DeepgramAgentStandin, url: str
) -> None:
    client = await started(url, settings(agent__greeting="Hello, how can I help?"))
    await client.wait("AgentAudioDone")
    assert client.types()[:4] == [
        "Welcome",
        "SettingsApplied",
        "ConversationText",
        "AgentStartedSpeaking",
    ]
    assert client.messages("ConversationText")[0]["content"] == "Hello, how can I help?"
    assert len(turn_audio(client)) == round(0.3 * 16000) * 2
    await client.close()
    standin.knobs.greeting = True
    client = await started(url)
    greeting = await client.wait("ConversationText")
    assert greeting == {
        "type": "ConversationText",
        "role": "assistant",
        "content": standin.knobs.greeting_text,
    }
    await client.wait("AgentAudioDone")
    await client.close()


async def test_keepalive_keeps_the_session_and_silence_times_out(
    standin: DeepgramAgentStandin, url: str
) -> None:
    standin.knobs.idle_timeout = 0.4
    client = await started(url)
    for _ in range(4):
        await asyncio.sleep(0.2)
        await client.send({"type": "KeepAlive"})
    assert client.types() == ["Welcome", "SettingsApplied"]  # no answer to KeepAlive
    error = await client.wait("Error")
    assert error["code"] == "CLIENT_MESSAGE_TIMEOUT"
    assert await client.closed() == 1011
    assert len(standin.knobs.events("keepalive")) == 4
    # Nothing at all, not even Settings: the same.
    client = await open_client(url)
    assert (await client.wait("Error"))["code"] == "CLIENT_MESSAGE_TIMEOUT"
    assert await client.closed() == 1011


# --- injections -------------------------------------------------------------------------


async def test_inject_agent_message_speaks_or_is_refused_mid_reply(
    standin: DeepgramAgentStandin, url: str
) -> None:
    client = await started(url)
    await client.send({"type": "InjectAgentMessage", "message": "Your table is ready."})
    await client.wait("AgentAudioDone")
    assert client.messages("ConversationText") == [
        {"type": "ConversationText", "role": "assistant", "content": "Your table is ready."}
    ]
    assert len(turn_audio(client)) == round(0.3 * 16000) * 2
    # The reply still plays at real time: a default injection is refused.
    await client.send({"type": "InjectAgentMessage", "message": "Again?", "behavior": "default"})
    refusal = await client.wait("InjectionRefused")
    assert refusal == {"type": "InjectionRefused", "message": "Again?"}
    await client.send({"type": "InjectAgentMessage", "message": "Queued.", "behavior": "queue"})
    await client.wait("AgentAudioDone", 2)
    await client.send({"type": "InjectAgentMessage", "message": "Now!", "behavior": "interrupt"})
    await client.wait("AgentAudioDone", 3)
    contents = [m["content"] for m in client.messages("ConversationText")]
    assert contents == ["Your table is ready.", "Queued.", "Now!"]
    assert [m["message"] for m in standin.knobs.injected] == [
        "Your table is ready.",
        "Again?",
        "Queued.",
        "Now!",
    ]
    assert len(standin.knobs.events("injected")) == 4
    await client.close()


async def test_inject_user_message_update_prompt_and_the_rest(
    standin: DeepgramAgentStandin, url: str
) -> None:
    client = await started(url)
    await client.send({"type": "InjectUserMessage", "content": "book a table"})
    await client.wait("AgentAudioDone")
    assert [(m["role"], m["content"]) for m in client.messages("ConversationText")] == [
        ("user", "book a table"),
        ("assistant", "you said book a table"),
    ]
    await client.send({"type": "UpdatePrompt", "prompt": "The caller is a VIP."})
    await client.wait("PromptUpdated")
    await client.send({"type": "UpdateSpeak", "speak": {"provider": {"type": "deepgram"}}})
    await client.wait("SpeakUpdated")
    await client.send({"type": "FunctionCallResponse", "id": "f1", "name": "f", "content": "{}"})
    await client.send({"type": "KeepAlive"})
    await asyncio.sleep(0.1)
    assert client.types()[-1] == "SpeakUpdated"  # no answer to the last two
    kinds = [m["type"] for m in standin.knobs.injected]
    assert kinds == ["InjectUserMessage", "UpdatePrompt", "UpdateSpeak", "FunctionCallResponse"]
    await client.close()


@pytest.mark.parametrize(
    "message",
    [
        "{not json",
        {"type": "Hello"},
        {"type": "InjectAgentMessage"},
        {"type": "InjectAgentMessage", "message": "x", "behavior": "now"},
        {"type": "InjectUserMessage", "message": "x"},
        {"type": "UpdatePrompt", "prompt": 3},
    ],
)
async def test_bad_messages_after_settings_end_the_session(
    standin: DeepgramAgentStandin, url: str, message: Any
) -> None:
    client = await started(url)
    await client.send(message)
    assert (await client.wait("Error"))["code"] == "UNPARSABLE_CLIENT_MESSAGE"
    assert await client.closed() == 1008
    assert standin.knobs.last().received[-1] == message


# --- failure knobs ----------------------------------------------------------------------


async def test_silent_sends_nothing_but_keeps_reading(
    standin: DeepgramAgentStandin, url: str
) -> None:
    standin.knobs.idle_timeout = 0.2
    client = await started(url)
    standin.knobs.silent = True
    await client.send_audio(BURST)
    await client.send("not even json")
    await asyncio.sleep(0.5)  # past the idle timeout too
    assert client.types() == ["Welcome", "SettingsApplied"]
    record = standin.knobs.last()
    assert record.audio_bytes == len(BURST)
    assert record.received[-1] == "not even json"
    assert not client.done.is_set()
    await client.close()
    await eventually(lambda: record.closed_by == "client")
    # Silent from the start: not even a Welcome.
    client = await open_client(url)
    await asyncio.sleep(0.3)
    assert client.frames == [] and not client.done.is_set()
    await client.close()


async def test_close_after_chunks_closes_1011_mid_reply(
    standin: DeepgramAgentStandin, url: str
) -> None:
    standin.knobs.close_after_chunks = 2
    client = await started(url)
    await client.send_audio(BURST)
    assert await client.closed() == 1011
    assert client.types()[-3:] == ["AgentStartedSpeaking", "bytes", "bytes"]
    assert standin.knobs.last().closed_by == "server"
    assert standin.knobs.last().close_code == 1011


async def test_garbage_after_connect_then_carries_on(
    standin: DeepgramAgentStandin, url: str
) -> None:
    standin.knobs.garbage_after_connect = True
    client = await started(url)
    await client.until(lambda: len(client.frames) >= 4)
    assert client.frames[2:4] == [GARBAGE_TEXT, GARBAGE_MESSAGE]
    await client.send_audio(BURST)
    await client.wait("AgentAudioDone")
    await client.close()


def test_reset_restores_the_defaults(standin: DeepgramAgentStandin) -> None:
    knobs = standin.knobs
    knobs.silent, knobs.idle_timeout = True, 1.0
    knobs.note("something")
    knobs.injected.append({"type": "KeepAlive"})
    knobs.reset()
    assert not knobs.silent and knobs.idle_timeout == 10.0
    assert knobs.log == [] and knobs.injected == [] and knobs.sessions == []
