"""An ElevenLabs Agents Platform (Conversational AI) stand-in: the signed-URL REST call and the
`/v1/convai/conversation` WebSocket, as PROVIDERS-AGENTS.md section 1 documents them.

Signed URL: `GET /v1/convai/conversation/get-signed-url?agent_id=<id>` with `xi-api-key`
answers 200 `{"signed_url": "ws://<Host header>/v1/convai/conversation?agent_id=<id>&
conversation_signature=<token>"}`. Refusals carry ElevenLabs' `{"detail": {"status",
"message"}}` body: no key -> 401 `needs_authorization`; a wrong key (every key with
`knobs.refuse_keys`) -> 401 `invalid_api_key`; an unknown agent -> 404 `agent_not_found`; no
`agent_id` -> 422 with FastAPI's validation body.

Handshake (refused over HTTP with the same body shape): an unknown or missing agent -> 404
`agent_not_found`; no `conversation_signature` -> 401 `needs_authorization`, unless the agent
is in `knobs.public_agents`; a signature that is unknown, issued for another agent, already
used (each is good for one handshake) or older than `knobs.signature_ttl` (15 min) -> 403
(`invalid_signature`, `signature_used`, `signature_expired`). An `xi-api-key` header on the
upgrade is recorded but never accepted instead of a signature (the official SDK never sends
it). Accepted handshakes count in `knobs.connections`.

Session: the first frame must be `conversation_initiation_client_data` (within
`knobs.init_timeout` s). Its `conversation_config_override` may set only `agent.prompt.prompt`,
`agent.first_message`, `agent.language`, `tts.voice_id` (strings) and `conversation.text_only`
(a boolean), and only those in `knobs.allowed_overrides`; a key that is present counts as an
override even when null. `dynamic_variables` must be a flat map of str/int/float/bool, and
must name every `{{var}}` of an overridden first message or prompt (`system__*` excepted).
Then comes `conversation_initiation_metadata` (formats from the knobs), and the agent speaks
first if the override sets a non-empty first message (placeholders filled) or `knobs.greeting`.

Audio `{"user_audio_chunk": <base64>}` (no `type` key), in `knobs.input_format` (pcm_N, a
sample may straddle two chunks; ulaw_8000 is decoded too), goes to the tone agent
(agent_common.py): `user_transcript`, then `agent_response` just before the reply's first
`audio` event (event ids 1, 2, ... per conversation), chunks `knobs.chunk_interval` s apart
from a background task so reading goes on; a burst during playback interrupts: the rest of
the reply is dropped and `interruption` carries the last audio event id sent. With
`conversation.text_only` replies are text only. `user_message` is answered like a user turn
("you said <text>"); `contextual_update` is only recorded (`knobs.injected`); pings every
`knobs.ping_interval` s need a `pong` with their `event_id` within `knobs.pong_timeout` s.

Every protocol violation closes 1008 with a reason: a first frame that is not the init
(audio included), a bad override or dynamic variable, a frame that is binary, not JSON or not
an object, bad base64 or a non-string `text`, no init in time, an unanswered ping ("pong
timeout"). Unknown message types, a second init and audio messages that carry a `type` are
ignored (recorded, and noted as "ignored"). Failure knobs: `silent` (send nothing at all,
keep reading, enforce no pongs), `close_after_chunks` (close 1011 "internal error" after
that many audio chunks of a reply), `garbage_after_connect` (a random binary frame and a
non-JSON text frame right after the metadata).

    standin = ElevenLabsAgentStandin()
    with running_ws_standin(standin) as base_url:   # ELEVENLABS_BASE_URL
        ...
        standin.knobs.signed_url_requests[-1].headers["xi-api-key"]
        standin.knobs.last().received   # what the client sent, parsed
        standin.knobs.events("reply")   # "connected", "audio_in", "reply", "interrupt",
                                        # "pong", "injected", "closed", ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import os
import re
import secrets
import time
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlencode

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from callboard.media.g711 import ulaw_decode, ulaw_encode
from tests.helpers.standins.agent_common import (
    AgentAction,
    AgentKnobs,
    AgentText,
    Interrupt,
    Reply,
    ToneAgent,
    UserTranscript,
)
from tests.helpers.standins.common import Recorded
from tests.helpers.standins.stt_common import Connection

DEFAULT_KEY = "test-elevenlabs-key"
DEFAULT_AGENT = "agent_test_01"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
CONVERSATION_PATH = "/v1/convai/conversation"
FORMATS = {
    "pcm_8000": 8000,
    "pcm_16000": 16000,
    "pcm_22050": 22050,
    "pcm_24000": 24000,
    "pcm_44100": 44100,
    "pcm_48000": 48000,
    "ulaw_8000": 8000,
}
OVERRIDE_FIELDS: dict[str, type] = {
    "agent.prompt.prompt": str,
    "agent.first_message": str,
    "agent.language": str,
    "tts.voice_id": str,
    "conversation.text_only": bool,
}
DEFAULT_GREETING = "Hello from the stand-in"
SIGNATURE_TTL = 15 * 60.0
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
GONE = (OSError, RuntimeError, WebSocketDisconnect)  # what sending to a vanished client raises


@dataclass
class AgentConnection(Connection):
    """One handshake and its conversation (`received`: every frame, parsed JSON when it is;
    `sent`: every frame sent, JSON as dicts, garbage as bytes/str)."""

    conversation_id: str | None = None
    close_reason: str | None = None
    pongs: list[Any] = field(default_factory=list)  # event_id of every pong received


@dataclass
class ElevenLabsAgentKnobs(AgentKnobs):
    """AgentKnobs plus ElevenLabs' agent settings and the logs of both endpoints."""

    output_format: str = "pcm_16000"  # agent_output_audio_format
    input_format: str = "pcm_16000"  # user_input_audio_format
    public_agents: set[str] = field(default_factory=set)  # usable without a signature
    allowed_overrides: set[str] = field(default_factory=lambda: set(OVERRIDE_FIELDS))
    signature_ttl: float = SIGNATURE_TTL
    init_timeout: float = 10.0  # seconds the first frame may take
    sockets: list[AgentConnection] = field(default_factory=list)
    signed_url_requests: list[Recorded] = field(default_factory=list)

    def open(self, path: str, query: dict[str, str], headers: dict[str, str]) -> AgentConnection:
        connection = AgentConnection(path, query, {k.lower(): v for k, v in headers.items()})
        with self._lock:
            self.sockets.append(connection)
        return connection

    def last(self) -> AgentConnection:
        with self._lock:
            return self.sockets[-1]

    def accepted(self) -> None:
        with self._lock:
            self.connections += 1

    def inject(self, message: Any) -> None:
        with self._lock:
            self.injected.append(message)
        self.note("injected", message)

    def record_request(self, recorded: Recorded) -> None:
        with self._lock:
            self.signed_url_requests.append(recorded)

    def reset(self) -> None:
        """Back to the defaults, with empty logs."""
        fresh = type(self)()
        with self._lock:
            for item in fields(self):
                if item.name != "_lock":
                    setattr(self, item.name, getattr(fresh, item.name))


def error_body(status: str, message: str) -> dict[str, Any]:
    return {"detail": {"status": status, "message": message}}


class ElevenLabsAgentStandin:
    """An ASGI app serving the signed-URL call and the conversation socket for `agents`,
    authorised by `api_keys`; `knobs` steer it and record everything."""

    def __init__(self, api_keys: set[str] | None = None, agents: set[str] | None = None) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.agents = set(agents) if agents is not None else {DEFAULT_AGENT}
        self.knobs = ElevenLabsAgentKnobs()
        # Only the server's event loop touches these: no lock.
        self._signatures: dict[str, tuple[str, float]] = {}  # token -> (agent_id, issued at)
        self._used: set[str] = set()
        self._app = Starlette(
            routes=[
                Route(SIGNED_URL_PATH, self._signed_url, methods=["GET"]),
                WebSocketRoute(CONVERSATION_PATH, self._conversation),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _signed_url(self, request: Request) -> JSONResponse:
        query = dict(request.query_params)
        headers = {k.lower(): v for k, v in request.headers.items()}
        self.knobs.record_request(
            Recorded(request.method, request.url.path, query, headers, await request.body())
        )
        key = headers.get("xi-api-key", "")
        if not key:
            message = "Neither authorization header nor xi-api-key received, please provide one."
            return JSONResponse(error_body("needs_authorization", message), 401)
        if self.knobs.refuse_keys or key not in self.api_keys:
            return JSONResponse(error_body("invalid_api_key", "Invalid API key"), 401)
        agent_id = query.get("agent_id")
        if agent_id is None:
            missing = {"type": "missing", "loc": ["query", "agent_id"], "msg": "Field required"}
            return JSONResponse({"detail": [missing]}, 422)
        if agent_id not in self.agents:
            message = f"Agent with id {agent_id} not found."
            return JSONResponse(error_body("agent_not_found", message), 404)
        token = secrets.token_urlsafe(24)
        self._signatures[token] = (agent_id, time.monotonic())
        host = headers.get("host", request.url.netloc)
        signed = urlencode({"agent_id": agent_id, "conversation_signature": token})
        return JSONResponse({"signed_url": f"ws://{host}{CONVERSATION_PATH}?{signed}"})

    def _refusal(self, query: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        """The HTTP refusal of a handshake, if any; a signature that passes is used up."""
        agent_id = query.get("agent_id", "")
        if agent_id not in self.agents:
            return 404, error_body("agent_not_found", f"Agent with id {agent_id} not found.")
        token = query.get("conversation_signature")
        if token is None:
            if agent_id in self.knobs.public_agents:
                return None
            message = "This agent requires authorization: connect with a signed URL."
            return 401, error_body("needs_authorization", message)
        if token in self._used:
            return 403, error_body("signature_used", "This signed URL was already used.")
        issued = self._signatures.get(token)
        if issued is None or issued[0] != agent_id:
            return 403, error_body("invalid_signature", "Invalid conversation signature.")
        if time.monotonic() - issued[1] > self.knobs.signature_ttl:
            return 403, error_body("signature_expired", "The signed URL has expired.")
        del self._signatures[token]
        self._used.add(token)
        return None

    async def _conversation(self, ws: WebSocket) -> None:
        connection = self.knobs.open(ws.url.path, dict(ws.query_params), dict(ws.headers))
        refusal = self._refusal(connection.query)
        if refusal is not None:
            status, body = refusal
            connection.status = status
            self.knobs.note("refused", status)
            await ws.send_denial_response(JSONResponse(body, status))
            return
        await ws.accept()
        self.knobs.accepted()
        self.knobs.note("connected", connection.query.get("agent_id"))
        await Conversation(ws, connection, self.knobs).run()


class Violation(Exception):
    """A protocol error: the session closes 1008 with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Init:
    """What the conversation_initiation_client_data asked for."""

    first_message: str | None
    text_only: bool


def check_init(message: Any, allowed: set[str]) -> Init:
    """Validate the first message; raise Violation as the service would refuse it."""
    if (
        not isinstance(message, dict)
        or message.get("type") != "conversation_initiation_client_data"
    ):
        raise Violation("The first message must be conversation_initiation_client_data.")
    override = message.get("conversation_config_override")
    if override is None:
        override = {}
    if not isinstance(override, dict):
        raise Violation("conversation_config_override must be an object.")
    overrides: dict[str, Any] = {}
    _leaves(override, "", overrides)
    for path, value in overrides.items():
        if path not in OVERRIDE_FIELDS or path not in allowed:
            raise Violation(f"Override for field '{path}' is not allowed by config.")
        if value is not None and not isinstance(value, OVERRIDE_FIELDS[path]):
            raise Violation(f"Invalid value for override field '{path}'.")
    variables = message.get("dynamic_variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise Violation("dynamic_variables must be an object.")
    for name, value in variables.items():
        if not isinstance(value, str | int | float | bool):  # bool is an int; None is refused
            raise Violation(f"Dynamic variable '{name}' must be a string, number or boolean.")
    first = overrides.get("agent.first_message")
    for path, where in (
        ("agent.first_message", "first message"),
        ("agent.prompt.prompt", "prompt"),
    ):
        text = overrides.get(path)
        if isinstance(text, str):
            missing = {
                name
                for name in PLACEHOLDER.findall(text)
                if name not in variables and not name.startswith("system__")
            }
            if missing:
                names = ", ".join(repr(name) for name in sorted(missing))
                raise Violation(f"Missing required dynamic variables in {where}: {{{names}}}")
    if isinstance(first, str):
        first = PLACEHOLDER.sub(lambda m: _variable(variables.get(m.group(1)), m.group(0)), first)
    return Init(first or None, overrides.get("conversation.text_only") is True)


def _leaves(tree: dict[str, Any], prefix: str, into: dict[str, Any]) -> None:
    """Dotted paths of the non-object values of `tree` (an empty object sets nothing)."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            _leaves(value, f"{path}.", into)
        else:
            into[path] = value


def _variable(value: Any, placeholder: str) -> str:
    if value is None:
        return placeholder  # a system__ variable: left as it is
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Turn:
    """One agent turn queued for the speaker: its text and audio, and the barge-in generation
    it belongs to (an interruption makes every queued turn stale)."""

    text: str | None
    reply: Reply
    generation: int


class Conversation:
    """One accepted socket, run by three tasks: a reader, a speaker and a pinger."""

    def __init__(
        self, ws: WebSocket, connection: AgentConnection, knobs: ElevenLabsAgentKnobs
    ) -> None:
        self.ws = ws
        self.connection = connection
        self.knobs = knobs
        self.agent: ToneAgent | None = None
        self.input_format = knobs.input_format
        self.output_format = knobs.output_format
        self.text_only = False
        self.turns: asyncio.Queue[Turn] = asyncio.Queue()
        self.generation = 0
        self.event_id = 0  # the last audio event id sent
        self.ping_id = 0
        self.pending_pings: dict[int, float] = {}  # event_id -> sent at
        self.carry = b""  # an odd byte of PCM16 input, kept for the next chunk
        self.closed = False
        self.send_lock = asyncio.Lock()

    async def run(self) -> None:
        try:
            if not await self._initiate():
                return
            tasks = [
                asyncio.create_task(self._read()),
                asyncio.create_task(self._speak()),
                asyncio.create_task(self._ping()),
            ]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                error = task.exception()
                if error is not None and not isinstance(error, GONE):
                    raise error
                if error is not None:
                    self._gone()
        except GONE:
            self._gone()

    async def _initiate(self) -> bool:
        if self.input_format not in FORMATS or self.output_format not in FORMATS:
            await self._close(1011, "stand-in knob: unknown audio format")
            return False
        try:
            async with asyncio.timeout(self.knobs.init_timeout):
                frame = await self.ws.receive()
        except TimeoutError:
            await self._close(1008, "No conversation_initiation_client_data received in time.")
            return False
        if frame["type"] == "websocket.disconnect":
            self._client_closed(frame.get("code"))
            return False
        try:
            init = check_init(self._decode(frame), self.knobs.allowed_overrides)
        except Violation as violation:
            await self._close(1008, violation.reason)
            return False
        self.text_only = init.text_only
        self.agent = ToneAgent(FORMATS[self.input_format], FORMATS[self.output_format], self.knobs)
        self.connection.conversation_id = "conv_" + secrets.token_hex(14)
        await self._send(
            {
                "type": "conversation_initiation_metadata",
                "conversation_initiation_metadata_event": {
                    "conversation_id": self.connection.conversation_id,
                    "agent_output_audio_format": self.output_format,
                    "user_input_audio_format": self.input_format,
                },
            }
        )
        if self.knobs.garbage_after_connect:
            async with self.send_lock:
                await self._emit(os.urandom(64))
                await self._emit("this is not JSON {")
        if init.first_message or self.knobs.greeting:
            text = init.first_message or DEFAULT_GREETING
            self.turns.put_nowait(Turn(text, self.agent.speak(), self.generation))
        return True

    def _decode(self, frame: Message) -> dict[str, Any]:
        """A received frame as a JSON object, recorded; anything else is a Violation."""
        text = frame.get("text")
        if text is None:
            self.connection.received.append(frame.get("bytes") or b"")
            raise Violation("Binary frames are not supported: send JSON text frames.")
        try:
            message = json.loads(text)
        except ValueError:
            self.connection.received.append(text)
            raise Violation("Invalid message: not JSON.") from None
        self.connection.received.append(message)
        if not isinstance(message, dict):
            raise Violation("Invalid message: expected a JSON object.")
        return message

    async def _read(self) -> None:
        while True:
            frame = await self.ws.receive()
            if frame["type"] == "websocket.disconnect":
                self._client_closed(frame.get("code"))
                return
            try:
                await self._handle(self._decode(frame))
            except Violation as violation:
                await self._close(1008, violation.reason)
                return

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind is None and "user_audio_chunk" in message:
            await self._audio(message["user_audio_chunk"])
        elif kind == "pong":
            event_id = message.get("event_id")
            self.connection.pongs.append(event_id)
            self.knobs.note("pong", event_id)
            if isinstance(event_id, int):
                self.pending_pings.pop(event_id, None)
        elif kind == "contextual_update":
            self._injected(message)
        elif kind == "user_message":
            text = self._injected(message)
            if not self.knobs.silent:
                assert self.agent is not None
                self.turns.put_nowait(Turn(f"you said {text}", self.agent.speak(), self.generation))
        elif kind == "user_activity":
            self.knobs.note("user_activity")
        else:  # client_tool_result, a second init, audio with a type key, the unknown
            self.knobs.note("ignored", message)

    def _injected(self, message: dict[str, Any]) -> str:
        text = message.get("text")
        if not isinstance(text, str):
            raise Violation(f"Invalid {message['type']}: text must be a string.")
        self.knobs.inject(message)
        return text

    async def _audio(self, encoded: Any) -> None:
        if not isinstance(encoded, str):
            raise Violation("Invalid user_audio_chunk: expected a base64 string.")
        try:
            audio = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Violation("Invalid user_audio_chunk: not valid base64.") from None
        self.connection.audio_bytes += len(audio)
        self.knobs.note("audio_in", len(audio))
        if self.knobs.silent:
            return  # a stuck provider hears nothing
        if self.input_format == "ulaw_8000":
            samples = ulaw_decode(audio)
        else:
            data = self.carry + audio
            whole = len(data) - len(data) % 2
            self.carry = data[whole:]
            samples = np.frombuffer(data[:whole], dtype="<i2")
        assert self.agent is not None
        await self._act(self.agent.feed(samples))

    async def _act(self, actions: list[AgentAction]) -> None:
        text: str | None = None
        for action in actions:
            if isinstance(action, Interrupt):
                await self._interrupt()
            elif isinstance(action, UserTranscript):
                await self._send(
                    {
                        "type": "user_transcript",
                        "user_transcription_event": {"user_transcript": action.text},
                    }
                )
            elif isinstance(action, AgentText):
                text = action.text  # sent by the speaker, just before the reply's audio
            elif isinstance(action, Reply):
                self.turns.put_nowait(Turn(text, action, self.generation))
                text = None

    async def _interrupt(self) -> None:
        async with self.send_lock:
            self.generation += 1  # the speaker drops the rest of the reply and queued turns
            await self._emit(
                {"type": "interruption", "interruption_event": {"event_id": self.event_id}}
            )

    async def _speak(self) -> None:
        while True:
            turn = await self.turns.get()
            if turn.generation != self.generation:
                continue
            if turn.text is not None:
                await self._send(
                    {
                        "type": "agent_response",
                        "agent_response_event": {"agent_response": turn.text},
                    }
                )
            if self.text_only:
                continue
            sent = 0
            for chunk in turn.reply.chunks:
                if not await self._send_audio(chunk, turn.generation):
                    if turn.generation != self.generation:
                        break
                    continue
                sent += 1
                limit = self.knobs.close_after_chunks
                if limit is not None and sent >= limit:
                    await self._close(1011, "internal error")
                    return
                # Sleep even for 0 s so that the reader gets its turn between chunks.
                await asyncio.sleep(self.knobs.chunk_interval)

    async def _send_audio(self, chunk: bytes, generation: int) -> bool:
        """Send one chunk unless the turn was interrupted meanwhile (checked under the lock,
        so an interruption's event_id is always the last audio really sent)."""
        async with self.send_lock:
            if generation != self.generation or self.knobs.silent or self.closed:
                return False
            if self.output_format == "ulaw_8000":
                chunk = ulaw_encode(np.frombuffer(chunk, dtype="<i2"))
            self.event_id += 1
            await self._emit(
                {
                    "type": "audio",
                    "audio_event": {
                        "audio_base_64": base64.b64encode(chunk).decode("ascii"),
                        "event_id": self.event_id,
                    },
                }
            )
            return True

    async def _ping(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            if self.knobs.silent:  # a stuck provider neither pings nor checks pongs
                self.pending_pings.clear()
                last = now
                continue
            if any(now - sent > self.knobs.pong_timeout for sent in self.pending_pings.values()):
                self.knobs.note("pong_timeout", sorted(self.pending_pings))
                await self._close(1008, "pong timeout")
                return
            interval = self.knobs.ping_interval
            if interval is not None and now - last >= interval:
                last = now
                self.ping_id += 1
                self.pending_pings[self.ping_id] = now
                await self._send(
                    {"type": "ping", "ping_event": {"event_id": self.ping_id, "ping_ms": None}}
                )

    async def _send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self._emit(message)

    async def _emit(self, message: dict[str, Any] | bytes | str) -> None:
        """Send one frame (the caller holds the lock); nothing at all while silent."""
        if self.knobs.silent or self.closed:
            return
        self.connection.sent.append(message)
        if isinstance(message, bytes):
            await self.ws.send_bytes(message)
        elif isinstance(message, str):
            await self.ws.send_text(message)
        else:
            await self.ws.send_text(json.dumps(message))

    async def _close(self, code: int, reason: str) -> None:
        async with self.send_lock:
            if self.closed:
                return
            self.closed = True
            self.connection.close_code = code
            self.connection.closed_by = "server"
            self.connection.close_reason = reason
            self.knobs.note("closed", {"code": code, "by": "server", "reason": reason})
            with contextlib.suppress(*GONE):  # a close reason is at most 123 bytes
                await self.ws.close(code, reason.encode()[:123].decode(errors="ignore"))

    def _client_closed(self, code: int | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.connection.close_code = code
        self.connection.closed_by = "client"
        self.knobs.note("closed", {"code": code, "by": "client", "reason": None})

    def _gone(self) -> None:
        """The client vanished while we were sending (no close frame seen)."""
        self._client_closed(1006)
