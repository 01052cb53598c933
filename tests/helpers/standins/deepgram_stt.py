"""A Deepgram live speech-to-text stand-in: the `/v1/listen` WebSocket, as PROVIDERS-SPEECH.md
section 5 documents it.

Handshake (plain HTTP refusals with Deepgram's `{"err_code", "err_msg", "request_id"}` body,
the same body in a `dg-error` header, and `dg-request-id`): the key (`Authorization: Token
<key>`, `Bearer <token>`, or the `token, <key>` subprotocol; else 401 `INVALID_AUTH`), then
queued refusals (knobs), then the query: model and language (400 "No such
model/language/tier combination found."), encoding, sample_rate (required with an
encoding), channels, booleans, endpointing and utterance_end_ms (400
`INVALID_QUERY_PARAMETER`).

Session: binary frames are audio as declared (linear16, mulaw and alaw are decoded; other
encodings close with `DATA-0000`); the tone recogniser (stt_common.py) turns them into
`Results`: interim ones every 200 ms of a burst when `interim_results=true`, a final one
(`speech_final`) once `endpointing` ms of silence follow it, and empty finals for each
second of silence. `{"type":"KeepAlive"}` only keeps the socket open; `Finalize` flushes
(`from_finalize`); `CloseStream` (or an empty binary frame) flushes, sends `Metadata` and
closes 1000. Nothing received for `knobs.idle_timeout` s closes 1011 `NET-0001`.

    standin = DeepgramSttStandin(api_keys={"dg-key"})
    with running_ws_standin(standin) as base_url:   # DEEPGRAM_BASE_URL
        ...
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from callboard.media.g711 import alaw_decode, ulaw_decode
from tests.helpers.standins.stt_common import (
    Connection,
    Heard,
    SocketKnobs,
    SocketPlan,
    ToneRecogniser,
)

DEFAULT_KEY = "test-deepgram-key"
MODELS = {
    "nova-3": "general-nova-3",
    "nova-3-general": "general-nova-3",
    "nova-3-medical": "medical-nova-3",
    "nova-2": "general-nova-2",
    "nova-2-general": "general-nova-2",
    "nova-2-phonecall": "phonecall-nova-2",
    "base": "general-base",
}
DEFAULT_MODEL = "base"
LANGUAGES = {
    "en", "en-US", "en-GB", "en-AU", "en-IN", "en-NZ", "multi",
    "de", "es", "es-419", "fr", "fr-CA", "it", "ja", "nl", "pt", "pt-BR", "ru",
}  # fmt: skip
ENCODINGS = (
    "linear16", "linear32", "mulaw", "alaw", "flac", "opus", "ogg-opus", "amr-nb", "amr-wb",
    "speex", "g729",
)  # fmt: skip
BOOLEANS = (
    "interim_results", "punctuate", "smart_format", "numerals", "profanity_filter",
    "vad_events", "multichannel", "diarize", "detect_entities", "mip_opt_out",
)  # fmt: skip
BAD_MODEL = "No such model/language/tier combination found."
IDLE_RESULT_EVERY = 1.0  # seconds of silence per empty final Results
NO_ENDPOINTING_FINAL = 1.0  # with endpointing=false, a burst is final after this much quiet


def error_body(code: str, message: str, request_id: str) -> dict[str, str]:
    return {"err_code": code, "err_msg": message, "request_id": request_id}


def default_failure(status: int) -> tuple[str, str]:
    if status == 429:
        return "TOO_MANY_REQUESTS", "Too many requests. Please try again later."
    if status == 402:
        return "ASR_PAYMENT_REQUIRED", "Project does not have enough credits."
    if status == 403:
        return "INSUFFICIENT_PERMISSIONS", "Insufficient permissions."
    if status >= 500:
        return "INTERNAL_SERVER_ERROR", "The service is temporarily unavailable."
    return "BAD_REQUEST", "The request could not be processed."


@dataclass(frozen=True)
class Options:
    model: str
    language: str
    encoding: str | None
    rate: int
    channels: int
    interim: bool
    end_silence: float  # seconds of silence that end a burst
    endpointing: bool


class Problem(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class DeepgramSttStandin:
    """An ASGI app; `knobs` control failures and record every connection."""

    def __init__(self, api_keys: set[str] | None = None, tokens: set[str] | None = None) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.tokens = set(tokens or ())  # temporary tokens, sent as `Bearer <token>`
        self.knobs = SocketKnobs()
        self._app = Starlette(routes=[WebSocketRoute("/v1/listen", self._listen)])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _listen(self, ws: WebSocket) -> None:
        connection = self.knobs.open(ws.url.path, dict(ws.query_params), dict(ws.headers))
        request_id = str(uuid.uuid4())
        authorized, subprotocol = self._authorize(ws)
        if not authorized:
            await self._deny(
                ws, connection, 401, "INVALID_AUTH", "Invalid credentials.", request_id
            )
            return
        plan = self.knobs.plan()
        if plan.reject is not None:
            status, body = plan.reject
            if body is None:
                await self._deny(ws, connection, status, *default_failure(status), request_id)
            else:
                connection.status = status
                await ws.send_denial_response(JSONResponse(body, status))
            return
        try:
            options = parse_options(connection.query)
        except Problem as problem:
            await self._deny(ws, connection, 400, problem.code, problem.message, request_id)
            return
        await ws.accept(subprotocol=subprotocol, headers=[(b"dg-request-id", request_id.encode())])
        try:
            await Session(ws, connection, options, plan, self.knobs, request_id).run()
        except (OSError, RuntimeError, WebSocketDisconnect):
            connection.closed_by = connection.closed_by or "client"  # gone while we sent

    def _authorize(self, ws: WebSocket) -> tuple[bool, str | None]:
        scheme, _, credential = ws.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "token" and credential.strip() in self.api_keys:
            return True, None
        if scheme.lower() == "bearer" and credential.strip() in self.tokens:
            return True, None
        protocols = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",")]
        if len(protocols) == 2 and protocols[0] == "token" and protocols[1] in self.api_keys:
            return True, "token"  # browsers: `Sec-WebSocket-Protocol: token, <key>`
        return False, None

    async def _deny(
        self,
        ws: WebSocket,
        connection: Connection,
        status: int,
        code: str,
        message: str,
        request_id: str,
    ) -> None:
        connection.status = status
        body = error_body(code, message, request_id)
        headers = {"dg-error": json.dumps(body), "dg-request-id": request_id}
        await ws.send_denial_response(JSONResponse(body, status, headers=headers))


def parse_options(query: dict[str, str]) -> Options:
    model = query.get("model", DEFAULT_MODEL)
    language = query.get("language", "en")
    if model not in MODELS or language not in LANGUAGES:
        raise Problem("Bad Request", BAD_MODEL)
    encoding = query.get("encoding")
    if encoding is not None and encoding not in ENCODINGS:
        raise Problem("INVALID_QUERY_PARAMETER", f"Invalid encoding: {encoding}")
    raw_rate = query.get("sample_rate")
    if encoding is not None and raw_rate is None:
        raise Problem("INVALID_QUERY_PARAMETER", "sample_rate is required with encoding")
    rate = _integer(query, "sample_rate", 16000, 8000, 48000)
    channels = _integer(query, "channels", 1, 1, 8)
    flags = {name: _boolean(query, name) for name in BOOLEANS}
    endpointing = query.get("endpointing", "10")
    if endpointing == "false":
        end_silence, speech_final = NO_ENDPOINTING_FINAL, False
    else:
        end_silence = _integer(query, "endpointing", 10, 0, 60_000) / 1000
        speech_final = True
    if "utterance_end_ms" in query:
        _integer(query, "utterance_end_ms", 1000, 1000, 60_000)
        if not flags["interim_results"]:
            raise Problem("INVALID_QUERY_PARAMETER", "utterance_end_ms needs interim_results=true")
    return Options(
        model, language, encoding, rate, channels, flags["interim_results"], end_silence,
        speech_final,
    )  # fmt: skip


def _integer(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Problem("INVALID_QUERY_PARAMETER", f"Invalid {name}: {raw}")
    return int(raw)


def _boolean(query: dict[str, str], name: str) -> bool:
    raw = query.get(name, "false")
    if raw not in ("true", "false"):
        raise Problem("INVALID_QUERY_PARAMETER", f"Invalid {name}: {raw} (true or false)")
    return raw == "true"


class Session:
    """One accepted socket: audio in, Results out."""

    def __init__(
        self,
        ws: WebSocket,
        connection: Connection,
        options: Options,
        plan: SocketPlan,
        knobs: SocketKnobs,
        request_id: str,
    ) -> None:
        self.ws = ws
        self.connection = connection
        self.options = options
        self.plan = plan
        self.knobs = knobs
        self.request_id = request_id
        self.recogniser = ToneRecogniser(
            options.rate, end_silence=options.end_silence, idle_every=IDLE_RESULT_EVERY
        )
        self.digest = hashlib.sha256()
        self._carry = b""
        self._stalled = False

    async def run(self) -> None:
        while True:
            if self._due(self.plan.stall_after) and not self._stalled:
                self._stalled = True
                await self.knobs.stall()
            try:
                async with asyncio.timeout(self.knobs.idle_timeout):
                    message = await self.ws.receive()
            except TimeoutError:
                await self._close(1011, "NET-0001")
                return
            if message["type"] == "websocket.disconnect":
                self.connection.close_code = message.get("code")
                self.connection.closed_by = "client"
                return
            if message.get("bytes") is not None:
                audio: bytes = message["bytes"]
                if not audio:  # an empty frame: the old way to close the stream
                    await self._end()
                    return
                if not await self._audio(audio):
                    return
            elif message.get("text") is not None and not await self._control(message["text"]):
                return
            if self._due(self.plan.drop_after):
                self.connection.closed_by = "drop"
                return  # uvicorn closes the TCP connection with no close frame
            if self._due(self.plan.error[0] if self.plan.error else None):
                assert self.plan.error is not None
                code, reason = self.plan.error[1]
                await self._close(code, reason)
                return

    def _due(self, after_bytes: int | None) -> bool:
        return after_bytes is not None and self.connection.audio_bytes >= after_bytes

    async def _audio(self, audio: bytes) -> bool:
        self.connection.audio_bytes += len(audio)
        self.digest.update(audio)
        samples = self._decode(audio)
        if samples is None:
            await self._close(1008, "DATA-0000")
            return False
        for heard in self.recogniser.feed(samples):
            if heard.final:
                await self._results(
                    heard, speech_final=bool(heard.text) and self.options.endpointing
                )
            elif self.options.interim:
                await self._results(heard)
        return True

    def _decode(self, audio: bytes) -> np.ndarray | None:
        encoding = self.options.encoding
        if encoding == "linear16":
            data = self._carry + audio
            whole = len(data) - len(data) % 2
            self._carry = data[whole:]
            samples = np.frombuffer(data[:whole], dtype="<i2")
        elif encoding == "mulaw":
            samples = ulaw_decode(audio)
        elif encoding == "alaw":
            samples = alaw_decode(audio)
        else:
            return None  # the stand-in only hears raw PCM and G.711
        return samples[:: self.options.channels]  # channel 0 of interleaved audio

    async def _control(self, text: str) -> bool:
        try:
            message: Any = json.loads(text)
        except ValueError:
            message = text
        self.connection.received.append(message)
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "Finalize":
            heard = self.recogniser.flush()
            if heard is not None:
                await self._results(heard, from_finalize=True)
        elif kind == "CloseStream" and self.knobs.answer_end:
            await self._end()
            return False
        return True  # KeepAlive and anything else: nothing to say

    async def _end(self) -> None:
        heard = self.recogniser.flush()
        if heard is not None:
            await self._results(heard)
        await self._send(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self.request_id,
                "sha256": self.digest.hexdigest(),
                "created": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
                "duration": round(self.recogniser.seconds, 3),
                "channels": self.options.channels,
            }
        )
        await self._close(1000, "")

    async def _results(
        self, heard: Heard, *, speech_final: bool = False, from_finalize: bool = False
    ) -> None:
        words = []
        if heard.text:
            half = heard.duration / 2
            for i, word in enumerate(heard.text.split()):
                start = heard.start + i * half
                words.append(
                    {
                        "word": word,
                        "start": round(start, 3),
                        "end": round(start + half, 3),
                        "confidence": 0.99,
                        "punctuated_word": word,
                    }
                )
        await self._send(
            {
                "type": "Results",
                "channel_index": [0, self.options.channels],
                "duration": round(heard.duration, 3),
                "start": round(heard.start, 3),
                "is_final": heard.final,
                "speech_final": speech_final,
                "from_finalize": from_finalize,
                "channel": {
                    "alternatives": [
                        {
                            "transcript": heard.text,
                            "confidence": 0.99 if heard.text else 0.0,
                            "words": words,
                        }
                    ]
                },
                "metadata": {
                    "request_id": self.request_id,
                    "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, self.options.model)),
                    "model_info": {
                        "name": MODELS[self.options.model],
                        "version": "2025-01-01.0",
                        "arch": "-".join(self.options.model.split("-")[:2]),
                    },
                },
            }
        )

    async def _send(self, message: dict[str, Any]) -> None:
        self.connection.sent.append(message)
        await self.ws.send_text(json.dumps(message))

    async def _close(self, code: int, reason: str) -> None:
        self.connection.close_code = code
        self.connection.closed_by = "server"
        await self.ws.close(code, reason)
