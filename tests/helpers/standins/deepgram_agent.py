"""A Deepgram Voice Agent stand-in: the `/v1/agent/converse` WebSocket (API v1), as
PROVIDERS-AGENTS.md section 4 documents it, with the `Error` codes of Deepgram's "Errors &
Warnings" page (developers.deepgram.com/docs/voice-agent-errors-warnings).

Handshake: `Authorization: Token <key>`, or `Bearer <key>` (a temporary token, taken from the
same set), or the browsers' `token, <key>` / `bearer, <key>` subprotocol. Anything else, or
`knobs.refuse_keys`, is refused with HTTP 401, Deepgram's body `{"err_code": "INVALID_AUTH",
"err_msg": "Invalid credentials.", "request_id": ...}` and the same JSON in `dg-error`.

Session: `Welcome` (`request_id`) first. The client's first message must be a `Settings`
text frame; anything else (a binary frame, `KeepAlive`, ...) -> `Error`
NON_SETTINGS_MESSAGE_BEFORE_SETTINGS. `Settings` is checked like the service's schema: no
unknown keys at the top level, in `audio`, `audio.input`, `audio.output` or `agent`; the
input encoding and an integer `sample_rate` (16000.0 is refused); output encoding, integer
`sample_rate` (both required: the defaults are unconfirmed), integer `bitrate`, `container`
none|wav|ogg; `agent.listen`/`think`/`speak` each with a `provider` of a known `type`
(`think`/`speak` may be non-empty arrays). A bad field -> `Error` INVALID_SETTINGS naming it
("Check the audio.input.sample_rate field ..."). The stand-in decodes only linear16 and mulaw
in and makes only linear16 and mulaw raw (`container: none`) out: other valid formats ->
`Error` UNSUPPORTED_BY_STANDIN (its own code, so a test notices). Then `SettingsApplied`, and
the greeting (`agent.greeting`, or `knobs.greeting_text` when `knobs.greeting`).

Every `Error` is fatal, as the docs say: it is followed by a close (1008 for what the client
did wrong, 1011 for CLIENT_MESSAGE_TIMEOUT) whose reason is the code. Other errors: a text
frame that is not JSON, a JSON message without a known `type` or with a bad field ->
UNPARSABLE_CLIENT_MESSAGE; a second `Settings` -> SETTINGS_ALREADY_APPLIED; nothing received
(audio or `KeepAlive`) for `knobs.idle_timeout` s -> CLIENT_MESSAGE_TIMEOUT.

Conversation (the tone agent of agent_common.py): each burst of tone the caller starts ->
`UserStartedSpeaking` (every time; during a reply it is the barge-in, and the rest of the
reply is not sent, nor its `AgentAudioDone`); the burst's end -> `ConversationText` user
"tone <Hz>", then the answer: `ConversationText` assistant, `AgentStartedSpeaking` (made-up
latencies), binary chunks in the output format `knobs.chunk_interval` s apart, and
`AgentAudioDone`. Replies queue behind each other; audio keeps being read meanwhile.
`KeepAlive`: no answer. `InjectAgentMessage` speaks `message` (`behavior` default/absent:
`InjectionRefused` while a reply plays at real time or the caller is mid-burst; `queue`:
after the current reply; `interrupt`: cuts it). `InjectUserMessage` -> `ConversationText`
user with the content, then the answer "you said <content>". `UpdatePrompt` ->
`PromptUpdated`; `UpdateSpeak`/`UpdateThink`/`UpdateListen` -> `SpeakUpdated`/...;
`FunctionCallResponse` is only recorded. Every client message but `Settings` and
`KeepAlive` goes to `knobs.injected`.

Knobs: `silent` (send nothing more, close nothing, keep reading), `close_after_chunks` (a
bare close 1011, no `Error`, after that many chunks of a reply), `garbage_after_connect`
(after `SettingsApplied`, a text frame that is not JSON and a message of an unknown type).
`knobs.sessions` records each handshake (`AgentConnection`); `knobs.log` has "connected",
"refused", "settings", "audio_in", "keepalive", "injected", "reply", "interrupt", "error",
"closed".

    standin = DeepgramAgentStandin(api_keys={"dg-key"})
    with running_ws_standin(standin) as base_url:
        url = converse_url(base_url)   # ws://127.0.0.1:PORT/v1/agent/converse
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, TypeGuard

import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from callboard.media.g711 import ulaw_decode, ulaw_encode
from tests.helpers.standins.agent_common import (
    AgentKnobs,
    AgentText,
    Interrupt,
    Reply,
    ToneAgent,
    UserTranscript,
)
from tests.helpers.standins.stt_common import Connection, ToneRecogniser

DEFAULT_KEY = "test-deepgram-key"
PATH = "/v1/agent/converse"
INPUT_ENCODINGS = (
    "linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus",
    "speex", "g729",
)  # fmt: skip
OUTPUT_ENCODINGS = ("linear16", "mulaw", "alaw", "mp3", "opus", "flac", "aac")
CONTAINERS = ("none", "wav", "ogg")
STANDIN_ENCODINGS = ("linear16", "mulaw")  # what the stand-in can hear and say
LISTEN_TYPES = ("deepgram",)
THINK_TYPES = ("open_ai", "anthropic", "google", "groq", "aws_bedrock", "deepgram")
SPEAK_TYPES = ("deepgram", "eleven_labs", "cartesia", "open_ai", "aws_polly")
SETTINGS_KEYS = {"type", "tags", "experimental", "flags", "mip_opt_out", "audio", "agent"}
AUDIO_KEYS = {"input", "output"}
INPUT_KEYS = {"encoding", "sample_rate"}
OUTPUT_KEYS = {"encoding", "sample_rate", "bitrate", "container"}
AGENT_KEYS = {"language", "context", "listen", "think", "speak", "greeting"}
# Client messages after Settings, with the string field each must carry (None: none).
CLIENT_TYPES: dict[str, str | None] = {
    "KeepAlive": None,
    "InjectAgentMessage": "message",
    "InjectUserMessage": "content",
    "UpdatePrompt": "prompt",
    "UpdateSpeak": None,
    "UpdateThink": None,
    "UpdateListen": None,
    "FunctionCallResponse": "id",
}
UPDATED = {
    "UpdateSpeak": "SpeakUpdated",
    "UpdateThink": "ThinkUpdated",
    "UpdateListen": "ListenUpdated",
}
BEHAVIORS = ("default", "queue", "interrupt")
LATENCIES = {"total_latency": 0.1, "tts_latency": 0.05, "ttt_latency": 0.05}
GARBAGE_TEXT = "<<not json>>"
GARBAGE_MESSAGE = {"type": "StandinSurprise", "detail": "a message type no client knows"}


def converse_url(base_url: str) -> str:
    """The socket URL a client is given (DEEPGRAM_AGENT_URL), from start_ws_standin's."""
    return base_url.replace("http://", "ws://", 1).rstrip("/") + PATH


@dataclass
class AgentConnection(Connection):
    """One handshake and what followed: `received` holds the client's text messages (parsed
    JSON, or the raw text), `sent` the JSON messages sent (and the garbage text frame)."""

    request_id: str = ""
    settings: dict[str, Any] | None = None  # the accepted Settings message
    audio_out_bytes: int = 0
    audio_out_chunks: int = 0


@dataclass
class DeepgramAgentKnobs(AgentKnobs):
    """AgentKnobs plus this provider's: `connections` counts every handshake, refused ones
    too; `sessions` records them."""

    idle_timeout: float = 10.0  # seconds with nothing received before CLIENT_MESSAGE_TIMEOUT
    greeting_text: str = "Hello from the Deepgram stand-in."  # spoken when `greeting` is on
    sessions: list[AgentConnection] = field(default_factory=list)

    def last(self) -> AgentConnection:
        with self._lock:
            return self.sessions[-1]

    def reset(self) -> None:
        """Every knob back to its default, the records emptied."""
        with self._lock:
            for item in fields(self):
                if item.name == "_lock":
                    continue
                if item.default_factory is not MISSING:
                    setattr(self, item.name, item.default_factory())
                else:
                    setattr(self, item.name, item.default)


@dataclass(frozen=True)
class AudioFormat:
    encoding: str
    rate: int


class Problem(Exception):
    """An `Error` message to send before closing."""

    def __init__(self, code: str, description: str, close_code: int = 1008) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.close_code = close_code


def field_problem(path: str) -> Problem:
    # The service's wording for a field that does not fit its schema.
    return Problem(
        "INVALID_SETTINGS",
        f"Error parsing client message. Check the {path} field against the API spec.",
    )


def parse_settings(message: dict[str, Any]) -> tuple[AudioFormat, AudioFormat, str | None]:
    """The input and output formats and the greeting of a valid `Settings`, else Problem."""
    _known_keys(message, SETTINGS_KEYS, "")
    for name in ("experimental", "mip_opt_out"):
        if name in message and not isinstance(message[name], bool):
            raise field_problem(name)
    if "tags" in message and not (
        isinstance(message["tags"], list) and all(isinstance(t, str) for t in message["tags"])
    ):
        raise field_problem("tags")
    if "flags" in message and not isinstance(message["flags"], dict):
        raise field_problem("flags")
    audio = _object(message, "audio", "audio")
    _known_keys(audio, AUDIO_KEYS, "audio.")
    raw_in = _object(audio, "input", "audio.input")
    _known_keys(raw_in, INPUT_KEYS, "audio.input.")
    audio_in = AudioFormat(
        _choice(raw_in, "encoding", INPUT_ENCODINGS, "audio.input.encoding"),
        _rate(raw_in, "audio.input.sample_rate"),
    )
    raw_out = _object(audio, "output", "audio.output")
    _known_keys(raw_out, OUTPUT_KEYS, "audio.output.")
    audio_out = AudioFormat(
        _choice(raw_out, "encoding", OUTPUT_ENCODINGS, "audio.output.encoding"),
        _rate(raw_out, "audio.output.sample_rate"),
    )
    if "bitrate" in raw_out and not _is_int(raw_out["bitrate"]):
        raise field_problem("audio.output.bitrate")
    container = "none"
    if "container" in raw_out:
        container = _choice(raw_out, "container", CONTAINERS, "audio.output.container")
    agent = _object(message, "agent", "agent")
    _known_keys(agent, AGENT_KEYS, "agent.")
    for name in ("language", "greeting"):
        if name in agent and not isinstance(agent[name], str):
            raise field_problem(f"agent.{name}")
    if "context" in agent and not isinstance(agent["context"], dict):
        raise field_problem("agent.context")
    _stage(agent, "listen", LISTEN_TYPES, many=False)
    _stage(agent, "think", THINK_TYPES, many=True)
    _stage(agent, "speak", SPEAK_TYPES, many=True)
    # Valid for the service, but beyond what the stand-in can hear or say.
    if audio_in.encoding not in STANDIN_ENCODINGS:
        raise Problem("UNSUPPORTED_BY_STANDIN", f"input encoding {audio_in.encoding}")
    if audio_out.encoding not in STANDIN_ENCODINGS:
        raise Problem("UNSUPPORTED_BY_STANDIN", f"output encoding {audio_out.encoding}")
    if container != "none":
        raise Problem("UNSUPPORTED_BY_STANDIN", f"output container {container}")
    return audio_in, audio_out, agent.get("greeting") or None


def _known_keys(value: dict[str, Any], known: set[str], prefix: str) -> None:
    for key in value:
        if key not in known:
            raise field_problem(prefix + key)


def _object(parent: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    value = parent.get(name)
    if not isinstance(value, dict):
        raise field_problem(path)
    return value


def _choice(parent: dict[str, Any], name: str, allowed: tuple[str, ...], path: str) -> str:
    value = parent.get(name)
    if value not in allowed:
        raise field_problem(path)
    return str(value)


def _is_int(value: Any) -> TypeGuard[int]:
    # JSON integers only: 16000.0 arrives as a float and true as a bool, both refused.
    return isinstance(value, int) and not isinstance(value, bool)


def _rate(parent: dict[str, Any], path: str) -> int:
    value = parent.get("sample_rate")
    if not _is_int(value) or value <= 0:
        raise field_problem(path)
    return value


def _stage(agent: dict[str, Any], name: str, types: tuple[str, ...], many: bool) -> None:
    value = agent.get(name)
    items = value if many and isinstance(value, list) else [value]
    if not items:
        raise field_problem(f"agent.{name}")
    for index, item in enumerate(items):
        path = f"agent.{name}[{index}]" if isinstance(value, list) else f"agent.{name}"
        if not isinstance(item, dict):
            raise field_problem(path)
        provider = _object(item, "provider", f"{path}.provider")
        _choice(provider, "type", types, f"{path}.provider.type")


class DeepgramAgentStandin:
    """An ASGI app; `knobs` turn its behaviour and record every connection."""

    def __init__(self, api_keys: set[str] | None = None) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.knobs = DeepgramAgentKnobs()
        self._app = Starlette(routes=[WebSocketRoute(PATH, self._converse)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _converse(self, ws: WebSocket) -> None:
        request_id = str(uuid.uuid4())
        connection = AgentConnection(
            ws.url.path,
            dict(ws.query_params),
            {k.lower(): v for k, v in ws.headers.items()},
            request_id=request_id,
        )
        with self.knobs._lock:
            self.knobs.sessions.append(connection)
            self.knobs.connections += 1
        authorized, subprotocol = self._authorize(ws)
        if not authorized or self.knobs.refuse_keys:
            connection.status = 401
            body = {
                "err_code": "INVALID_AUTH",
                "err_msg": "Invalid credentials.",
                "request_id": request_id,
            }
            headers = {"dg-error": json.dumps(body), "dg-request-id": request_id}
            self.knobs.note("refused", 401)
            await ws.send_denial_response(JSONResponse(body, 401, headers=headers))
            return
        await ws.accept(subprotocol=subprotocol, headers=[(b"dg-request-id", request_id.encode())])
        self.knobs.note("connected", request_id)
        session = Session(ws, connection, self.knobs)
        try:
            await session.run()
        except (OSError, RuntimeError, WebSocketDisconnect):
            connection.closed_by = connection.closed_by or "client"  # gone while we sent
        finally:
            await session.stop()
            self.knobs.note("closed", (connection.close_code, connection.closed_by))

    def _authorize(self, ws: WebSocket) -> tuple[bool, str | None]:
        scheme, _, credential = ws.headers.get("authorization", "").partition(" ")
        if scheme.lower() in ("token", "bearer") and credential.strip() in self.api_keys:
            return True, None
        protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        if len(protocols) == 2 and protocols[0] in ("token", "bearer"):
            return protocols[1] in self.api_keys, protocols[0]
        return False, None


class Session:
    """One accepted socket. The reading loop runs here; each reply is sent by a task of its
    own, chained behind the one before, so audio keeps being read while replies play."""

    def __init__(
        self, ws: WebSocket, connection: AgentConnection, knobs: DeepgramAgentKnobs
    ) -> None:
        self.ws = ws
        self.connection = connection
        self.knobs = knobs
        self.audio_in: AudioFormat | None = None
        self.audio_out: AudioFormat | None = None
        self.agent: ToneAgent | None = None
        # Our own recogniser, fed 20 ms at a time, sees every burst start (ToneAgent only
        # reports those that interrupt a reply).
        self.watch: ToneRecogniser | None = None
        self.closed = False
        self._carry = b""
        self._send_lock = asyncio.Lock()
        self._generation = 0  # bumped by a barge-in: replies of older generations stop
        self._replies: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        await self._send({"type": "Welcome", "request_id": self.connection.request_id})
        while not self.closed:
            message = await self._receive()
            if message is None:
                return
            try:
                if message.get("bytes") is not None:
                    await self._binary(message["bytes"])
                elif message.get("text") is not None:
                    await self._text(message["text"])
            except Problem as problem:
                await self._fail(problem)  # closes, unless the stand-in plays stuck

    async def stop(self) -> None:
        self._generation += 1
        for task in self._replies:
            task.cancel()
        if self._replies:
            await asyncio.wait(self._replies)

    async def _receive(self) -> Message | None:
        """The next client message; None once the socket is closed (or we closed it)."""
        while True:
            try:
                async with asyncio.timeout(self.knobs.idle_timeout):
                    message = await self.ws.receive()
            except TimeoutError:
                if self.knobs.silent:
                    continue  # a stuck service does not time anyone out either
                await self._fail(
                    Problem(
                        "CLIENT_MESSAGE_TIMEOUT",
                        "We did not receive audio or KeepAlive within our timeout.",
                        1011,
                    )
                )
                return None
            if message["type"] == "websocket.disconnect":
                if self.connection.closed_by is None:
                    self.connection.close_code = message.get("code")
                    self.connection.closed_by = "client"
                return None
            if self.closed:
                return None  # a reply task closed the socket; what follows is not read
            return message

    async def _binary(self, data: bytes) -> None:
        if self.agent is None:
            raise Problem(
                "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS",
                "Received a binary message before Settings.",
            )
        self.connection.audio_bytes += len(data)
        self.knobs.note("audio_in", len(data))
        samples = self._decode(data)
        assert self.watch is not None
        starts = 0
        for start in range(0, len(samples), self.watch.frame):
            before = self.watch.in_burst
            self.watch.feed(samples[start : start + self.watch.frame])
            if self.watch.in_burst and not before:
                starts += 1
        for _ in range(starts):
            await self._send({"type": "UserStartedSpeaking"})
        text: str | None = None
        for action in self.agent.feed(samples):
            if isinstance(action, Interrupt):
                self._generation += 1  # the rest of the current reply is not sent
            elif isinstance(action, UserTranscript):
                await self._conversation("user", action.text)
            elif isinstance(action, AgentText):
                text = action.text
            elif isinstance(action, Reply):
                self._play(text, action)
                text = None

    def _decode(self, data: bytes) -> np.ndarray:
        assert self.audio_in is not None
        if self.audio_in.encoding == "mulaw":
            return ulaw_decode(data)
        data = self._carry + data
        whole = len(data) - len(data) % 2
        self._carry = data[whole:]
        return np.frombuffer(data[:whole], dtype="<i2")

    async def _text(self, text: str) -> None:
        try:
            message: Any = json.loads(text)
        except ValueError:
            self.connection.received.append(text)
            raise Problem("UNPARSABLE_CLIENT_MESSAGE", "Failed to parse client message.") from None
        self.connection.received.append(message)
        kind = message.get("type") if isinstance(message, dict) else None
        if not isinstance(kind, str):
            raise Problem(
                "UNPARSABLE_CLIENT_MESSAGE",
                "Error parsing client message. Check the type field against the API spec.",
            )
        if self.agent is None:
            if kind != "Settings":
                raise Problem(
                    "NON_SETTINGS_MESSAGE_BEFORE_SETTINGS", f"Received {kind} before Settings."
                )
            await self._settings(message)
            return
        if kind == "Settings":
            raise Problem("SETTINGS_ALREADY_APPLIED", "Settings have already been applied.")
        if kind not in CLIENT_TYPES:
            raise Problem(
                "UNPARSABLE_CLIENT_MESSAGE",
                f"Error parsing client message: unknown message type {kind!r}.",
            )
        required = CLIENT_TYPES[kind]
        if required is not None and not isinstance(message.get(required), str):
            raise Problem(
                "UNPARSABLE_CLIENT_MESSAGE",
                f"Error parsing client message. Check the {required} field against the API spec.",
            )
        if kind == "KeepAlive":
            self.knobs.note("keepalive")
            return
        with self.knobs._lock:
            self.knobs.injected.append(message)
        self.knobs.note("injected", message)
        if kind == "InjectAgentMessage":
            await self._inject_agent(message)
        elif kind == "InjectUserMessage":
            await self._conversation("user", message["content"])
            assert self.agent is not None
            self._play(f"you said {message['content']}", self.agent.speak())
        elif kind == "UpdatePrompt":
            await self._send({"type": "PromptUpdated"})
        elif kind in UPDATED:
            await self._send({"type": UPDATED[kind]})
        # FunctionCallResponse: recorded; the stand-in never asks for a function call.

    async def _settings(self, message: dict[str, Any]) -> None:
        self.audio_in, self.audio_out, greeting = parse_settings(message)
        self.connection.settings = message
        self.knobs.note("settings", message)
        self.agent = ToneAgent(self.audio_in.rate, self.audio_out.rate, self.knobs)
        self.watch = ToneRecogniser(self.audio_in.rate, end_silence=self.knobs.end_silence)
        await self._send({"type": "SettingsApplied"})
        if self.knobs.garbage_after_connect:
            await self._send_raw(GARBAGE_TEXT)
            await self._send(dict(GARBAGE_MESSAGE))
        if greeting is None and self.knobs.greeting:
            greeting = self.knobs.greeting_text
        if greeting:
            self._play(greeting, self.agent.speak())

    async def _inject_agent(self, message: dict[str, Any]) -> None:
        assert self.agent is not None and self.watch is not None
        behavior = message.get("behavior", "default")
        if behavior not in BEHAVIORS:
            raise Problem(
                "UNPARSABLE_CLIENT_MESSAGE",
                "Error parsing client message. Check the behavior field against the API spec.",
            )
        busy = self.agent.playing_until > time.monotonic() or self.watch.in_burst
        if behavior == "default" and busy:
            await self._send({"type": "InjectionRefused", "message": message["message"]})
            return
        if behavior == "interrupt" and busy:
            self._generation += 1
            self.agent.playing_until = 0.0
            self.knobs.note("interrupt", "injected")
        self._play(message["message"], self.agent.speak())

    def _play(self, text: str | None, reply: Reply) -> None:
        """Send `reply` (after the one before it, unless a barge-in dropped that)."""
        self._replies = [task for task in self._replies if not task.done()]
        after = self._replies[-1] if self._replies else None
        task = asyncio.create_task(self._speak(text, reply, after, self._generation))
        self._replies.append(task)

    async def _speak(
        self, text: str | None, reply: Reply, after: asyncio.Task[None] | None, generation: int
    ) -> None:
        if after is not None:
            await asyncio.wait([after])
        if generation != self._generation:
            return
        try:
            if text is not None:
                await self._conversation("assistant", text)
            await self._send({"type": "AgentStartedSpeaking", **LATENCIES})
            for count, chunk in enumerate(reply.chunks, 1):
                if generation != self._generation or self.closed:
                    return  # barged in: the rest of the turn is dropped, no AgentAudioDone
                await self._send_audio(chunk)
                limit = self.knobs.close_after_chunks
                if limit is not None and count >= limit:
                    await self._close(1011, "")
                    return
                await asyncio.sleep(self.knobs.chunk_interval)  # lets the reader in too
            if generation == self._generation:
                await self._send({"type": "AgentAudioDone"})
        except (OSError, RuntimeError, WebSocketDisconnect):
            self.closed = True  # the client went away mid-reply

    async def _conversation(self, role: str, content: str) -> None:
        await self._send({"type": "ConversationText", "role": role, "content": content})

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            if self.closed or self.knobs.silent:
                return
            self.connection.sent.append(message)
            await self.ws.send_text(json.dumps(message))

    async def _send_raw(self, text: str) -> None:
        async with self._send_lock:
            if self.closed or self.knobs.silent:
                return
            self.connection.sent.append(text)
            await self.ws.send_text(text)

    async def _send_audio(self, chunk: bytes) -> None:
        assert self.audio_out is not None
        if self.audio_out.encoding == "mulaw":
            chunk = ulaw_encode(np.frombuffer(chunk, dtype="<i2"))
        async with self._send_lock:
            if self.closed or self.knobs.silent:
                return
            self.connection.audio_out_bytes += len(chunk)
            self.connection.audio_out_chunks += 1
            await self.ws.send_bytes(chunk)

    async def _fail(self, problem: Problem) -> None:
        self.knobs.note("error", (problem.code, problem.description))
        await self._send(
            {"type": "Error", "description": problem.description, "code": problem.code}
        )
        await self._close(problem.close_code, problem.code)

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if self.closed or self.knobs.silent:
                return  # a stuck service does not close either
            self.closed = True
            self._generation += 1
            self.connection.close_code = code
            self.connection.closed_by = "server"
            with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
                await self.ws.close(code, reason)
