"""An Azure Speech real-time speech-to-text stand-in: the Speech SDK's WebSocket protocol, as
Microsoft's "Speech Service WebSocket protocol" reference describes it.

Handshake: `/speech/recognition/{interactive|conversation|dictation}/cognitiveservices/v1`,
`Ocp-Apim-Subscription-Key` (wrong or missing: 401 with the gateway's JSON error), then queued
refusals (knobs), then the query: `language` must be a locale (`en-US`; else 400) and `format`
`simple` or `detailed`.

Session: text messages are header lines, a blank line and a body; binary messages a 2-byte
big-endian header length, the header lines and the body. Every message needs `Path`,
`X-Timestamp` and (but for `speech.config`) a no-dash `X-RequestId`; `speech.config` must come
before any audio; audio bodies are at most 8,192 bytes, and the first of a turn must start with
a RIFF/WAVE header for 16 kHz 16-bit mono PCM. Broken framing closes 1007 with the reason.
The tone recogniser (stt_common.py) hears the audio: `turn.start` on a turn's first audio,
`speech.startDetected` and `speech.hypothesis` (every 200 ms) during a burst, `speech.phrase`
(`Success`, `DisplayText`) once 300 ms of quiet follow it, `NoMatch` phrases for each second
of silence; an empty audio message flushes, then `speech.endDetected` and `turn.end` (the
socket stays open, as Azure keeps it for the next turn). Knobs: `reject_next`, `drop_next`,
`stall_next`, `error_next((code, reason), after_bytes)`, `answer_end`, `idle_timeout`.

Recorded per connection: `received` holds `{"path", "headers", "body"}` for text messages and
`{"path": "audio", "headers", "size", "wav"}` for audio; `sent` holds `{"path", "body"}`.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.helpers.standins.stt_common import (
    Connection,
    Heard,
    SocketKnobs,
    SocketPlan,
    ToneRecogniser,
)

DEFAULT_KEY = "test-azure-speech-key"
MODES = ("interactive", "conversation", "dictation")
LOCALE = re.compile(r"[a-z]{2,3}-[A-Z]{2}")
REQUEST_ID = re.compile(r"[0-9a-fA-F]{32}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z")
MAX_AUDIO_BODY = 8192
END_SILENCE = 0.3
UNAUTHORIZED = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make "
        "sure to provide a valid key for an active subscription and use a correct regional "
        "API endpoint for your resource.",
    }
}
_STOCK = {403: "Forbidden", 429: "Too many requests", 500: "Internal server error",
          503: "Service unavailable"}  # fmt: skip


class Malformed(Exception):
    """A message the service would close the socket over (1007)."""


def parse_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in text.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise Malformed(f"bad header line: {line[:40]!r}")
        headers[name.strip().lower()] = value.strip()
    return headers


def check_common(headers: dict[str, str], *, needs_request_id: bool = True) -> None:
    if "path" not in headers:
        raise Malformed("missing Path header")
    if not TIMESTAMP.fullmatch(headers.get("x-timestamp", "")):
        raise Malformed("missing or malformed X-Timestamp header")
    if needs_request_id and not REQUEST_ID.fullmatch(headers.get("x-requestid", "")):
        raise Malformed("missing or malformed X-RequestId header")


def wav_data_offset(body: bytes) -> int:
    """Where the PCM starts after a RIFF/WAVE header for 16 kHz 16-bit mono PCM."""
    if len(body) < 12 or body[:4] != b"RIFF" or body[8:12] != b"WAVE":
        raise Malformed("the first audio message has no RIFF/WAVE header")
    offset, fmt_ok = 12, False
    while offset + 8 <= len(body):
        chunk, size = (
            body[offset : offset + 4],
            struct.unpack("<I", body[offset + 4 : offset + 8])[0],
        )
        offset += 8
        if chunk == b"fmt ":
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[offset : offset + 16])
            if (tag, channels, rate, bits) != (1, 1, 16000, 16):
                raise Malformed("unsupported audio format (riff-16khz-16bit-mono-pcm only)")
            fmt_ok = True
            offset += size
        elif chunk == b"data":
            if not fmt_ok:
                raise Malformed("WAV data before fmt")
            return offset
        else:
            offset += size
    raise Malformed("incomplete WAV header")


class AzureSttStandin:
    """An ASGI app; `knobs` control failures and record every connection."""

    def __init__(self, api_keys: set[str] | None = None) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.knobs = SocketKnobs()
        self._app = Starlette(
            routes=[WebSocketRoute("/speech/recognition/{mode}/cognitiveservices/v1", self._ws)]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _ws(self, ws: WebSocket) -> None:
        connection = self.knobs.open(ws.url.path, dict(ws.query_params), dict(ws.headers))
        if ws.headers.get("ocp-apim-subscription-key") not in self.api_keys:
            connection.status = 401
            await ws.send_denial_response(JSONResponse(UNAUTHORIZED, 401))
            return
        plan = self.knobs.plan()
        if plan.reject is not None:
            status, body = plan.reject
            connection.status = status
            if body is None:
                body = {"error": {"code": str(status), "message": _STOCK.get(status, "Error")}}
            await ws.send_denial_response(JSONResponse(body, status))
            return
        problem = self._query_problem(ws.path_params.get("mode", ""), connection.query)
        if problem is not None:
            connection.status = 400
            await ws.send_denial_response(
                JSONResponse({"error": {"code": "400", "message": problem}}, 400)
            )
            return
        await ws.accept()
        try:
            await Session(ws, connection, plan, self.knobs).run()
        except (OSError, RuntimeError, WebSocketDisconnect):
            connection.closed_by = connection.closed_by or "client"

    @staticmethod
    def _query_problem(mode: str, query: dict[str, str]) -> str | None:
        if mode not in MODES:
            return f"Unknown recognition mode: {mode}"
        if not LOCALE.fullmatch(query.get("language", "")):
            return f"Unsupported language: {query.get('language')!r}"
        if query.get("format", "simple") not in ("simple", "detailed"):
            return f"Unsupported format: {query.get('format')}"
        return None


class Session:
    """One accepted socket: framed messages in, framed results out."""

    def __init__(
        self, ws: WebSocket, connection: Connection, plan: SocketPlan, knobs: SocketKnobs
    ) -> None:
        self.ws = ws
        self.connection = connection
        self.plan = plan
        self.knobs = knobs
        self.configured = False
        self.turn: str | None = None  # the X-RequestId of the open turn
        self.recogniser = ToneRecogniser(16000, end_silence=END_SILENCE, idle_every=1.0)
        self._carry = b""
        self._stalled = False
        self._speaking = False

    async def run(self) -> None:
        while True:
            if self._due(self.plan.stall_after) and not self._stalled:
                self._stalled = True
                await self.knobs.stall()
            try:
                async with asyncio.timeout(self.knobs.idle_timeout):
                    message = await self.ws.receive()
            except TimeoutError:
                await self._close(1000, "Exceeded maximum websocket connection idle duration")
                return
            if message["type"] == "websocket.disconnect":
                self.connection.close_code = message.get("code")
                self.connection.closed_by = "client"
                return
            try:
                if message.get("bytes") is not None:
                    if not await self._binary(message["bytes"]):
                        continue
                elif message.get("text") is not None:
                    self._text(message["text"])
            except Malformed as problem:
                await self._close(1007, str(problem))
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

    def _text(self, text: str) -> None:
        head, sep, body = text.partition("\r\n\r\n")
        if not sep:
            raise Malformed("text message without a blank line after its headers")
        headers = parse_headers(head)
        path = headers.get("path")
        check_common(headers, needs_request_id=path != "speech.config")
        parsed: Any = body
        if headers.get("content-type", "").startswith("application/json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                raise Malformed(f"{path}: body is not JSON") from None
        self.connection.received.append({"path": path, "headers": headers, "body": parsed})
        if path == "speech.config":
            if not isinstance(parsed, dict):
                raise Malformed("speech.config: body is not a JSON object")
            self.configured = True

    async def _binary(self, data: bytes) -> bool:
        """Returns False when the turn ended and nothing more is to be checked."""
        if len(data) < 2:
            raise Malformed("binary message shorter than its header length")
        (size,) = struct.unpack(">H", data[:2])
        if size > 8192 or len(data) < 2 + size:
            raise Malformed("binary header length out of range")
        try:
            headers = parse_headers(data[2 : 2 + size].decode("ascii"))
        except UnicodeDecodeError:
            raise Malformed("binary headers are not US-ASCII") from None
        check_common(headers)
        body = data[2 + size :]
        if headers["path"] != "audio":
            raise Malformed(f"unknown binary path: {headers['path']}")
        if not self.configured:
            raise Malformed("audio before speech.config")
        if len(body) > MAX_AUDIO_BODY:
            raise Malformed("audio message body over 8192 bytes")
        request_id = headers["x-requestid"]
        record: dict[str, Any] = {"path": "audio", "headers": headers, "size": len(body)}
        record["wav"] = False
        self.connection.received.append(record)
        if not body:
            if self.knobs.answer_end and self.turn == request_id:
                await self._end_turn()
            return False
        if self.turn != request_id:
            if headers.get("content-type") != "audio/x-wav":
                raise Malformed("the first audio message needs Content-Type: audio/x-wav")
            offset = wav_data_offset(body)
            record["wav"] = True
            body = body[offset:]
            self.turn = request_id
            self._carry = b""
            await self._send("turn.start", {"context": {"serviceTag": uuid.uuid4().hex}})
        self.connection.audio_bytes += len(body)
        data = self._carry + body
        whole = len(data) - len(data) % 2
        self._carry = data[whole:]
        for heard in self.recogniser.feed(np.frombuffer(data[:whole], dtype="<i2")):
            await self._heard(heard)
        return True

    async def _heard(self, heard: Heard) -> None:
        ticks = {"Offset": round(heard.start * 1e7), "Duration": round(heard.duration * 1e7)}
        if heard.final and not heard.text:
            await self._send("speech.phrase", {"RecognitionStatus": "NoMatch", **ticks})
            return
        if not self._speaking:
            self._speaking = True
            await self._send("speech.startDetected", {"Offset": ticks["Offset"]})
        if heard.final:
            self._speaking = False
            await self._send(
                "speech.phrase",
                {"RecognitionStatus": "Success", "DisplayText": heard.text, **ticks},
            )
        else:
            await self._send("speech.hypothesis", {"Text": heard.text, **ticks})

    async def _end_turn(self) -> None:
        heard = self.recogniser.flush()
        if heard is not None:
            await self._heard(heard)
        await self._send("speech.endDetected", {"Offset": round(self.recogniser.seconds * 1e7)})
        await self._send("turn.end", None)
        self.turn = None

    async def _send(self, path: str, body: Any) -> None:
        self.connection.sent.append({"path": path, "body": body})
        lines = [
            f"Path: {path}",
            f"X-RequestId: {self.turn or ''}",
            "X-Timestamp: " + datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        ]
        if body is None:
            await self.ws.send_text("\r\n".join(lines) + "\r\n")
            return
        lines.append("Content-Type: application/json; charset=utf-8")
        await self.ws.send_text("\r\n".join(lines) + "\r\n\r\n" + json.dumps(body))

    async def _close(self, code: int, reason: str) -> None:
        self.connection.close_code = code
        self.connection.closed_by = "server"
        await self.ws.close(code, reason)
