"""A Vapi stand-in for calls over the WebSocket transport: `POST /call`, the call's audio
socket and its Live Call Control URL, as PROVIDERS-AGENTS.md section 2 documents them.

REST (`Authorization: Bearer <key>`; a wrong or missing key, or `knobs.refuse_keys` -> 401
with Vapi's "Invalid Key. Hot tip, ..." body). `POST /call` is validated the NestJS way:
every problem found goes into 400 `{"message": [...], "error": "Bad Request", "statusCode":
400}` (class-validator wording, e.g. "transport.audioFormat.sampleRate must not be greater
than 192000", "property foo should not exist"). Checked: the body is a JSON object of known
properties; `transport` is `{"provider": "vapi.websocket", "audioFormat": {...}}` with
`format` pcm_s16le|mulaw, `container` raw and an integral `sampleRate` 1..192000 (all
required, nothing else allowed); `phoneNumberId`, `phoneNumber`, `customer`, `customers` are
refused with this transport; `assistantId` (a string) or an inline `assistant` object is
required; `firstMessage` a string, `firstMessageMode` one of the three documented values and
`variableValues` an object (in `assistantOverrides` or the inline assistant). Only then is an
unknown `assistantId` refused: 400 with a *string* message, as Vapi answers it ("Couldn't Get
Assistant. `assistantId` <id> Does Not Exist."). Success: 201 with a `Call` (status
"queued") whose `transport.websocketCallUrl` and `monitor.listenUrl/controlUrl` are built from
the request's Host header. `GET /call/<id>` answers the same object, status kept current
("queued", "in-progress", "ended" with `endedReason`).

Audio socket (`/<id>/transport`, no auth): an unknown id is refused with 404, a second open
of the same call with 409 (HTTP, before the upgrade). Binary frames are raw audio in the
call's `audioFormat`, heard by the tone agent (agent_common.py); its replies go back as
binary frames in the same format (`knobs.chunk_ms` each, `knobs.chunk_interval` s apart,
from a player task while the socket keeps being read). Text frames sent, bare JSON:
    caller burst starts    {"type":"speech-update","status":"started","role":"user","turn":n}
    caller burst ends      the same with "stopped", then
                           {"type":"transcript","role":"user","transcriptType":"final",...}
    each agent reply       transcript role "assistant", speech-update assistant "started",
                           the audio, speech-update assistant "stopped"
    barge-in               the reply's remaining chunks are dropped (its "stopped" still
                           follows) and {"type":"user-interrupted","turnId":"<uuid>"} (the
                           id of the last assistant turn)
Turns are numbered from 0, one counter for both roles. Client text: `{"type":"end-call"}` or
the older `{"type":"hangup"}` -> close 1000 (endedReason "customer-ended-call"); anything else
(not JSON, other types) is recorded and ignored. No binary frame for `knobs.silence_timeout`
s -> `{"type":"status-update","status":"ended","endedReason":"silence-timed-out"}`, close 1000.
A client close without end-call ends the call with "customer-disconnected" (ours, not Vapi's).

First message: spoken once the socket opens (assistant transcript + reply audio) when the
mode (overrides, else the inline assistant; default "assistant-speaks-first") is not
"assistant-waits-for-user" and there is a `firstMessage` ({{ var }} filled from
`variableValues`, unknown ones empty, as LiquidJS does), the mode is
"...-with-model-generated-message" (which says GREETING) or `knobs.greeting` (GREETING when
there is no firstMessage). "assistant-waits-for-user" wins over `knobs.greeting`.

Live Call Control (`POST /<id>/control`, JSON): unknown call -> 404; when `knobs.control_auth`
or the call's `monitorPlan.controlAuthenticationEnabled` is on, `Authorization: Bearer <key>`
is required (401 as above); an invalid body -> 400 (list message); a call whose socket is not
open (queued or ended) -> 404; otherwise 200 `{}`. `say` (`content` a non-empty string) ->
spoken like a reply, then, with `endCallAfterSpoken`, ended ("assistant-ended-call-after-
message-spoken"); `add-message` (`message.role` system|user|assistant|tool|function,
`message.content` a string) -> with `triggerResponseEnabled` (default true) the agent answers
"you said <content>" + reply, else nothing is sent; `end-call` -> queued audio dropped,
status-update ended "assistant-ended-call", close 1000; `control` (mute-assistant,
unmute-assistant, mute-customer, unmute-customer, say-first-message) and `transfer`
(`destination` {"type":"number","number"} or {"type":"sip","sipUri"}) -> recorded only.
`listenUrl` is not served.

Knobs (VapiKnobs = AgentKnobs + `silence_timeout`, `control_auth`): `silent` sends nothing
more (no replies, no status, no close) while still reading; `close_after_chunks` closes 1011
after that many reply chunks on the socket; `garbage_after_connect` sends a non-JSON text
frame and a JSON object of an unknown type right after the socket opens. `knobs.log` notes
call_created, connected, audio_in (bytes), reply, interrupt, control (body), injected (say and
add-message bodies), closed ((code, by)).

    standin = VapiStandin()                       # DEFAULT_KEY, DEFAULT_ASSISTANT
    with running_ws_standin(standin) as base_url:  # VAPI_BASE_URL
        ...
        call = standin.last_call()                 # .request, .connection, .controls, ...
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
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
from tests.helpers.standins.common import Recorded
from tests.helpers.standins.stt_common import Connection

DEFAULT_KEY = "test-vapi-key"
DEFAULT_ASSISTANT = "asst_test_01"
ORG_ID = "5a1d0c2e-0000-4000-8000-00000000c0de"
GREETING = "Hello, how can I help you today?"
UNAUTHORIZED = {
    "message": "Invalid Key. Hot tip, you may be using the private key instead of the public "
    "key, or vice versa.",
    "error": "Unauthorized",
    "statusCode": 401,
}
FIRST_MESSAGE_MODES = (
    "assistant-speaks-first",
    "assistant-waits-for-user",
    "assistant-speaks-first-with-model-generated-message",
)
AUDIO_FORMATS = ("pcm_s16le", "mulaw")
MAX_SAMPLE_RATE = 192000
CREATE_CALL_PROPERTIES = {
    "customers",
    "name",
    "schedulePlan",
    "transport",
    "assistantId",
    "assistant",
    "assistantOverrides",
    "squadId",
    "squad",
    "squadOverrides",
    "workflowId",
    "workflow",
    "workflowOverrides",
    "phoneNumberId",
    "phoneNumber",
    "customerId",
    "customer",
}
PHONE_ONLY = ("phoneNumberId", "phoneNumber", "customer", "customers")
MESSAGE_ROLES = ("system", "user", "assistant", "tool", "function")
CONTROLS = (
    "mute-assistant",
    "unmute-assistant",
    "mute-customer",
    "unmute-customer",
    "say-first-message",
)
POLL = 0.1  # seconds between the reader's checks of the knobs and the silence timer
TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


@dataclass
class VapiKnobs(AgentKnobs):
    """AgentKnobs plus Vapi's own: the silence timer and Live Call Control auth."""

    silence_timeout: float = 30.0  # seconds without a binary frame before the call ends
    control_auth: bool = False  # require the key on every control POST


@dataclass
class ControlPost:
    """One POST to a call's control URL, whatever became of it."""

    body: Any  # parsed JSON, or the raw text when it is not JSON
    headers: dict[str, str]  # lower-cased names
    status: int = 200


@dataclass
class VapiCall:
    """One created call and everything that happened to it."""

    id: str
    request: dict[str, Any]  # the POST /call body
    headers: dict[str, str]  # of the POST /call, lower-cased names
    answer: dict[str, Any]  # the Call object answered with 201
    audio_format: str
    sample_rate: int
    first_message: str | None  # firstMessage with its variables filled in
    first_message_mode: str
    control_auth: bool  # monitorPlan.controlAuthenticationEnabled
    status: str = "queued"  # "in-progress" once the socket opens, then "ended"
    ended_reason: str | None = None
    connection: Connection | None = None  # the audio socket: received text, close code...
    audio_in: bytearray = field(default_factory=bytearray)  # every binary frame, joined
    audio_out: bytearray = field(default_factory=bytearray)  # reply audio sent, call's format
    chunks_out: int = 0  # binary frames sent
    controls: list[ControlPost] = field(default_factory=list)
    closed: threading.Event = field(default_factory=threading.Event)  # the socket is done
    session: Session | None = field(default=None, repr=False)

    def current(self) -> dict[str, Any]:
        """The Call object as GET /call/<id> reports it now."""
        answer = dict(self.answer, status=self.status)
        if self.ended_reason is not None:
            answer["endedReason"] = self.ended_reason
        return answer


class BadRequest(Exception):
    def __init__(self, messages: list[str] | str) -> None:
        super().__init__(messages)
        self.messages = messages


def bad_request(messages: list[str] | str) -> JSONResponse:
    return JSONResponse({"message": messages, "error": "Bad Request", "statusCode": 400}, 400)


def not_found(message: str) -> JSONResponse:
    return JSONResponse({"message": message, "error": "Not Found", "statusCode": 404}, 404)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render(template: str, values: dict[str, Any]) -> str:
    """LiquidJS' plain `{{ name }}` substitution (dotted paths too); unknown names render
    empty. Filters are not supported: such a tag is left as it is."""

    def value(match: re.Match[str]) -> str:
        current: Any = values
        for part in match.group(1).split("."):
            if not isinstance(current, dict) or part not in current:
                return ""
            current = current[part]
        return current if isinstance(current, str) else json.dumps(current)

    return TEMPLATE.sub(value, template)


def _is_object(value: Any) -> bool:
    return isinstance(value, dict)


def _is_integral(value: Any) -> bool:
    # JSON has one number type: 16000.0 reaches Vapi's validator as the integer 16000.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return float(value).is_integer()


def validate_create(body: Any) -> list[str]:
    """Every class-validator style problem with a CreateCallDTO for this transport."""
    if not _is_object(body):
        return ["body must be a JSON object"]
    problems = [f"property {k} should not exist" for k in body if k not in CREATE_CALL_PROPERTIES]
    problems += [
        f"{k} is not supported with the vapi.websocket transport" for k in PHONE_ONLY if k in body
    ]
    problems += _validate_transport(body.get("transport"))
    has_id = "assistantId" in body
    if has_id and not isinstance(body["assistantId"], str):
        problems.append("assistantId must be a string")
    if "assistant" in body:
        if _is_object(body["assistant"]):
            problems += _validate_first_message(body["assistant"], "assistant.")
        else:
            problems.append("assistant must be an object")
    elif not has_id:
        problems.append("assistantId or assistant must be provided")
    if "assistantOverrides" in body:
        if _is_object(body["assistantOverrides"]):
            problems += _validate_first_message(body["assistantOverrides"], "assistantOverrides.")
        else:
            problems.append("assistantOverrides must be an object")
    return problems


def _validate_transport(transport: Any) -> list[str]:
    if transport is None:
        return ["transport must be an object"]
    if not _is_object(transport):
        return ["transport must be an object"]
    problems = [
        f"transport.property {k} should not exist"
        for k in transport
        if k not in ("provider", "audioFormat")
    ]
    if transport.get("provider") != "vapi.websocket":
        problems.append("transport.provider must be one of the following values: vapi.websocket")
    audio = transport.get("audioFormat")
    if not _is_object(audio):
        return [*problems, "transport.audioFormat must be an object"]
    prefix = "transport.audioFormat."
    problems += [
        f"{prefix}property {k} should not exist"
        for k in audio
        if k not in ("format", "container", "sampleRate")
    ]
    if audio.get("format") not in AUDIO_FORMATS:
        problems.append(f"{prefix}format must be one of the following values: pcm_s16le, mulaw")
    if audio.get("container") != "raw":
        problems.append(f"{prefix}container must be one of the following values: raw")
    rate = audio.get("sampleRate")
    if not _is_integral(rate):
        problems.append(f"{prefix}sampleRate must be an integer number")
    elif rate < 1:
        problems.append(f"{prefix}sampleRate must not be less than 1")
    elif rate > MAX_SAMPLE_RATE:
        problems.append(f"{prefix}sampleRate must not be greater than {MAX_SAMPLE_RATE}")
    return problems


def _validate_first_message(settings: dict[str, Any], prefix: str) -> list[str]:
    problems = []
    if "firstMessage" in settings and not isinstance(settings["firstMessage"], str):
        problems.append(f"{prefix}firstMessage must be a string")
    if "firstMessageMode" in settings and settings["firstMessageMode"] not in FIRST_MESSAGE_MODES:
        problems.append(
            f"{prefix}firstMessageMode must be one of the following values: "
            + ", ".join(FIRST_MESSAGE_MODES)
        )
    if "variableValues" in settings and not _is_object(settings["variableValues"]):
        problems.append(f"{prefix}variableValues must be an object")
    monitor = settings.get("monitorPlan")
    if monitor is not None and not _is_object(monitor):
        problems.append(f"{prefix}monitorPlan must be an object")
    return problems


def validate_control(body: Any) -> list[str]:
    """The problems with one Live Call Control message."""
    if not _is_object(body):
        return ["body must be a JSON object"]
    kind = body.get("type")
    if kind == "say":
        problems = []
        content = body.get("content")
        if not isinstance(content, str) or not content:
            problems.append("content must be a non-empty string")
        for flag in ("endCallAfterSpoken", "interruptAssistantEnabled", "interruptionsEnabled"):
            if flag in body and not isinstance(body[flag], bool):
                problems.append(f"{flag} must be a boolean value")
        return problems
    if kind == "add-message":
        problems = []
        message = body.get("message")
        if not _is_object(message):
            problems.append("message must be an object")
        else:
            if message.get("role") not in MESSAGE_ROLES:
                problems.append(
                    "message.role must be one of the following values: " + ", ".join(MESSAGE_ROLES)
                )
            if not isinstance(message.get("content"), str):
                problems.append("message.content must be a string")
        trigger = body.get("triggerResponseEnabled", True)
        if not isinstance(trigger, bool):
            problems.append("triggerResponseEnabled must be a boolean value")
        return problems
    if kind == "end-call":
        return []
    if kind == "control":
        if body.get("control") not in CONTROLS:
            return ["control must be one of the following values: " + ", ".join(CONTROLS)]
        return []
    if kind == "transfer":
        destination = body.get("destination")
        if not _is_object(destination):
            return ["destination must be an object"]
        if destination.get("type") == "number" and isinstance(destination.get("number"), str):
            return []
        if destination.get("type") == "sip" and isinstance(destination.get("sipUri"), str):
            return []
        return ["destination must be a number (number) or sip (sipUri) destination"]
    return [
        "type must be one of the following values: say, add-message, end-call, control, transfer"
    ]


class VapiStandin:
    """An ASGI app. `knobs` (VapiKnobs) are turned by tests; `calls` (id -> VapiCall),
    `requests` (every HTTP request, refused ones too) and `refused` (refused socket
    handshakes) are what they assert on."""

    def __init__(
        self, api_keys: set[str] | None = None, assistants: set[str] | None = None
    ) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.assistants = set(assistants) if assistants is not None else {DEFAULT_ASSISTANT}
        self.knobs = VapiKnobs()
        self.calls: dict[str, VapiCall] = {}
        self.requests: list[Recorded] = []
        self.refused: list[Connection] = []
        self._lock = threading.Lock()
        self._app = Starlette(
            routes=[
                Route("/call", self._create, methods=["POST"]),
                Route("/call/{call_id}", self._get, methods=["GET"]),
                Route("/{call_id}/control", self._control, methods=["POST"]),
                WebSocketRoute("/{call_id}/transport", self._transport),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    def reset(self) -> None:
        """Fresh knobs and empty records (sessions still open keep their old knobs)."""
        with self._lock:
            self.knobs = VapiKnobs()
            self.calls.clear()
            self.requests.clear()
            self.refused.clear()

    def call(self, call_id: str) -> VapiCall:
        with self._lock:
            return self.calls[call_id]

    def last_call(self) -> VapiCall:
        with self._lock:
            return list(self.calls.values())[-1]

    async def _record(self, request: Request) -> Recorded:
        recorded = Recorded(
            request.method,
            request.url.path,
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        with self._lock:
            self.requests.append(recorded)
        return recorded

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.knobs.refuse_keys:
            return False
        scheme, _, key = headers.get("authorization", "").partition(" ")
        return scheme == "Bearer" and key.strip() in self.api_keys

    async def _create(self, request: Request) -> JSONResponse:
        recorded = await self._record(request)
        if not self._authorized(recorded.headers):
            return JSONResponse(UNAUTHORIZED, 401)
        body = recorded.json
        problems = validate_create(body)
        if problems:
            return bad_request(problems)
        assistant_id = body.get("assistantId")
        if "assistant" not in body and assistant_id not in self.assistants:
            return bad_request(
                f"Couldn't Get Assistant. `assistantId` {assistant_id} Does Not Exist."
            )
        call = self._new_call(body, recorded.headers)
        with self._lock:
            self.calls[call.id] = call
        self.knobs.note("call_created", call.id)
        return JSONResponse(call.answer, 201)

    def _new_call(self, body: dict[str, Any], headers: dict[str, str]) -> VapiCall:
        call_id = str(uuid.uuid4())
        host = headers.get("host", "127.0.0.1")
        stamp = now_iso()
        answer: dict[str, Any] = {
            "id": call_id,
            "orgId": ORG_ID,
            "type": "vapi.websocketCall",
            "status": "queued",
            "createdAt": stamp,
            "updatedAt": stamp,
            "cost": 0,
            "transport": {
                "provider": "vapi.websocket",
                "websocketCallUrl": f"ws://{host}/{call_id}/transport",
            },
            "monitor": {
                "listenUrl": f"ws://{host}/{call_id}/listen",
                "controlUrl": f"http://{host}/{call_id}/control",
            },
        }
        for key in ("assistantId", "assistant", "assistantOverrides", "name"):
            if key in body:
                answer[key] = body[key]
        audio = body["transport"]["audioFormat"]
        assistant = body.get("assistant") or {}
        overrides = body.get("assistantOverrides") or {}

        def setting(name: str) -> Any:
            return overrides.get(name, assistant.get(name))

        monitor = setting("monitorPlan") or {}
        text = setting("firstMessage")
        values = {
            **(assistant.get("variableValues") or {}),
            **(overrides.get("variableValues") or {}),
        }
        return VapiCall(
            id=call_id,
            request=body,
            headers=headers,
            answer=answer,
            audio_format=audio["format"],
            sample_rate=int(audio["sampleRate"]),
            first_message=render(text, values) if isinstance(text, str) and text else None,
            first_message_mode=setting("firstMessageMode") or "assistant-speaks-first",
            control_auth=monitor.get("controlAuthenticationEnabled") is True,
        )

    async def _get(self, request: Request) -> JSONResponse:
        recorded = await self._record(request)
        if not self._authorized(recorded.headers):
            return JSONResponse(UNAUTHORIZED, 401)
        call = self.calls.get(request.path_params["call_id"])
        if call is None:
            return not_found("Call Not Found.")
        return JSONResponse(call.current())

    async def _control(self, request: Request) -> JSONResponse:
        recorded = await self._record(request)
        call = self.calls.get(request.path_params["call_id"])
        if call is None:
            return not_found("Call Not Found.")
        body = (
            recorded.json if recorded.json is not None else recorded.body.decode(errors="replace")
        )
        post = ControlPost(body, recorded.headers)
        call.controls.append(post)
        knobs = call.session.knobs if call.session is not None else self.knobs
        knobs.note("control", body)
        response = await self._act(call, post, knobs)
        post.status = response.status_code
        return response

    async def _act(self, call: VapiCall, post: ControlPost, knobs: VapiKnobs) -> JSONResponse:
        if (knobs.control_auth or call.control_auth) and not self._authorized(post.headers):
            return JSONResponse(UNAUTHORIZED, 401)
        problems = validate_control(post.body)
        if problems:
            return bad_request(problems)
        session = call.session
        if session is None or session.closed:
            return not_found("Call Not In Progress.")
        body = post.body
        if body["type"] == "say":
            knobs.note("injected", body)
            knobs.injected.append(body)
            session.say(body["content"])
            if body.get("endCallAfterSpoken") is True:
                session.end_after_queue("assistant-ended-call-after-message-spoken")
        elif body["type"] == "add-message":
            knobs.note("injected", body)
            knobs.injected.append(body)
            if body.get("triggerResponseEnabled", True):
                session.say(f"you said {body['message']['content']}")
        elif body["type"] == "end-call":
            await session.end("assistant-ended-call")
        return JSONResponse({}, 200)

    async def _transport(self, ws: WebSocket) -> None:
        connection = Connection(
            ws.url.path, dict(ws.query_params), {k.lower(): v for k, v in ws.headers.items()}
        )
        call = self.calls.get(ws.path_params["call_id"])
        if call is None or call.connection is not None:
            connection.status = 404 if call is None else 409
            with self._lock:
                self.refused.append(connection)
            if call is None:
                await ws.send_denial_response(not_found("Call Not Found."))
            else:
                conflict = {"message": "Call Already Connected.", "error": "Conflict"}
                await ws.send_denial_response(JSONResponse({**conflict, "statusCode": 409}, 409))
            return
        call.connection = connection
        # Everything a client may look at once its connect returns is set before the accept.
        session = Session(ws, call, self.knobs)
        call.session = session
        call.status = "in-progress"
        session.knobs.connections += 1
        session.knobs.note("connected", call.id)
        await ws.accept()
        try:
            await session.run()
        finally:
            call.status = "ended"
            call.ended_reason = call.ended_reason or "customer-disconnected"
            session.knobs.note("closed", (connection.close_code, connection.closed_by))
            call.closed.set()


@dataclass
class Utterance:
    """What the player speaks: an assistant transcript (if any) and the reply's audio."""

    text: str | None
    reply: Reply
    generation: int


@dataclass
class End:
    """End the call once what is queued before it has been spoken."""

    reason: str
    generation: int


class Session:
    """One call's audio socket: a reader (this task) and a player task for the replies."""

    def __init__(self, ws: WebSocket, call: VapiCall, knobs: VapiKnobs) -> None:
        self.ws = ws
        self.call = call
        self.knobs = knobs
        assert call.connection is not None
        self.connection = call.connection
        self.agent = ToneAgent(call.sample_rate, call.sample_rate, knobs)
        self.queue: asyncio.Queue[Utterance | End] = asyncio.Queue()
        self.generation = 0  # bumped on barge-in: queued and playing replies are dropped
        self.turn = 0
        self.assistant_turn_id: str | None = None
        self.user_turn: int | None = None  # the open burst's turn, once announced
        self.closed = False
        self.last_audio = time.monotonic()
        self._odd = b""  # a PCM byte split from its sample by the framing
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        player = asyncio.create_task(self._play())
        try:
            if self.knobs.garbage_after_connect:
                await self._send_text("vapi stand-in: this frame is not JSON")
                await self._send_json({"type": "stand-in-unknown", "detail": "ignore me"})
            opening = self._opening()
            if opening is not None:
                self.say(opening)
            await self._read()
        finally:
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)

    def _opening(self) -> str | None:
        """What the assistant says first, if it speaks first (knobs read at connect time)."""
        mode = self.call.first_message_mode
        if mode == "assistant-waits-for-user":
            return None
        if mode == "assistant-speaks-first-with-model-generated-message":
            return GREETING
        if self.call.first_message is not None:
            return self.call.first_message
        return GREETING if self.knobs.greeting else None

    def say(self, text: str) -> None:
        """Queue an assistant line with its reply audio."""
        self.queue.put_nowait(Utterance(text, self.agent.speak(), self.generation))

    def end_after_queue(self, reason: str) -> None:
        self.queue.put_nowait(End(reason, self.generation))

    async def end(self, reason: str) -> None:
        """Vapi ends the call: drop queued audio, status-update ended, close 1000."""
        if self.closed or self.knobs.silent:
            return
        self.generation += 1
        self.call.ended_reason = reason
        await self._send_json({"type": "status-update", "status": "ended", "endedReason": reason})
        await self._close(1000, reason)

    async def _read(self) -> None:
        while not self.closed:
            idle = time.monotonic() - self.last_audio
            if not self.knobs.silent and idle >= self.knobs.silence_timeout:
                await self.end("silence-timed-out")
                return
            wait = POLL if self.knobs.silent else min(POLL, self.knobs.silence_timeout - idle)
            try:
                async with asyncio.timeout(wait):
                    message = await self.ws.receive()
            except TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                if not self.closed:  # else it is the answer to our close
                    self.closed = True
                    self.connection.close_code = message.get("code")
                    self.connection.closed_by = "client"
                return
            if message.get("bytes") is not None:
                await self._audio(message["bytes"])
            elif message.get("text") is not None:
                await self._text(message["text"])

    async def _text(self, text: str) -> None:
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text  # not JSON: recorded, ignored
        self.connection.received.append(parsed)
        if isinstance(parsed, dict) and parsed.get("type") in ("end-call", "hangup"):
            self.call.ended_reason = "customer-ended-call"
            self.generation += 1
            if not self.knobs.silent:
                await self._close(1000, "customer-ended-call")

    async def _audio(self, data: bytes) -> None:
        self.last_audio = time.monotonic()
        self.connection.audio_bytes += len(data)
        self.call.audio_in.extend(data)
        self.knobs.note("audio_in", len(data))
        if self.call.audio_format == "mulaw":
            samples = ulaw_decode(data)
        else:
            data = self._odd + data
            whole = len(data) - len(data) % 2
            self._odd = data[whole:]
            samples = np.frombuffer(data[:whole], dtype="<i2")
        pending_text: str | None = None
        for action in self.agent.feed(samples):
            if isinstance(action, Interrupt):
                await self._user_started()
                await self._interrupt()
            elif isinstance(action, UserTranscript):
                turn = await self._user_started()
                self.user_turn = None
                await self._speech("stopped", "user", turn)
                await self._transcript("user", action.text)
            elif isinstance(action, AgentText):
                pending_text = action.text
            elif isinstance(action, Reply):
                self.queue.put_nowait(Utterance(pending_text, action, self.generation))
                pending_text = None
        if self.agent._in_burst:
            await self._user_started()

    async def _user_started(self) -> int:
        """Announce the caller's burst once; its turn number."""
        if self.user_turn is None:
            self.user_turn = self._next_turn()
            await self._speech("started", "user", self.user_turn)
        return self.user_turn

    async def _interrupt(self) -> None:
        self.generation += 1
        while not self.queue.empty():
            self.queue.get_nowait()
        turn_id = self.assistant_turn_id or str(uuid.uuid4())
        await self._send_json({"type": "user-interrupted", "turnId": turn_id})

    async def _play(self) -> None:
        while True:
            item = await self.queue.get()
            if item.generation != self.generation or self.closed:
                continue
            if isinstance(item, End):
                await self.end(item.reason)
                return
            turn = self._next_turn()
            self.assistant_turn_id = str(uuid.uuid4())
            if item.text is not None:
                await self._transcript("assistant", item.text)
            await self._speech("started", "assistant", turn)
            for chunk in item.reply.chunks:
                if item.generation != self.generation or self.closed:
                    break
                await self._send_audio(chunk)
                limit = self.knobs.close_after_chunks
                if limit is not None and self.call.chunks_out >= limit:
                    self.call.ended_reason = "worker-died"
                    await self._close(1011, "stand-in: close_after_chunks")
                    return
                await asyncio.sleep(self.knobs.chunk_interval)
            await self._speech("stopped", "assistant", turn)

    def _next_turn(self) -> int:
        turn = self.turn
        self.turn += 1
        return turn

    async def _speech(self, status: str, role: str, turn: int) -> None:
        message = {"type": "speech-update", "status": status, "role": role, "turn": turn}
        await self._send_json(message)

    async def _transcript(self, role: str, text: str) -> None:
        message = {"type": "transcript", "role": role, "transcriptType": "final"}
        await self._send_json({**message, "transcript": text})

    async def _send_json(self, message: dict[str, Any]) -> None:
        if await self._send(text=json.dumps(message)):
            self.connection.sent.append(message)

    async def _send_text(self, text: str) -> None:
        if await self._send(text=text):
            self.connection.sent.append(text)

    async def _send_audio(self, pcm: bytes) -> None:
        if self.call.audio_format == "mulaw":
            data = ulaw_encode(np.frombuffer(pcm, dtype="<i2"))
        else:
            data = pcm
        if await self._send(data=data):
            self.call.audio_out.extend(data)
            self.call.chunks_out += 1

    async def _send(self, *, text: str | None = None, data: bytes | None = None) -> bool:
        """Send one frame unless the socket is closed or the provider is stuck (`silent`)."""
        if self.closed or self.knobs.silent:
            return False
        async with self._send_lock:
            try:
                if text is not None:
                    await self.ws.send_text(text)
                else:
                    await self.ws.send_bytes(data or b"")
            except (OSError, RuntimeError, WebSocketDisconnect):
                return False  # the client is gone: the reader sees the disconnect
        return True

    async def _close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.generation += 1
        self.connection.close_code = code
        self.connection.closed_by = "server"
        async with self._send_lock:
            with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
                await self.ws.close(code, reason)
