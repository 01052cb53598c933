"""An ElevenLabs realtime speech-to-text stand-in: the Scribe v2 Realtime WebSocket
(`/v1/speech-to-text/realtime`), as PROVIDERS-SPEECH.md section 6 documents it.

The handshake always succeeds (unless a knob refuses it over HTTP with ElevenLabs'
`{"detail": {...}}` body); problems are reported the realtime way, as an error message
`{"message_type": <type>, "error": <detail>}` followed by a close 1008 whose reason is the
type: a bad or missing `xi-api-key` header (or single-use `token` query) -> `auth_error`;
a bad query (model_id, audio_format, language_code, commit_strategy, VAD ranges, booleans)
-> `invalid_request`; a malformed audio message (not `input_audio_chunk`, bad base64,
`commit` not a boolean, `sample_rate` not the format's, `previous_text` after the first
chunk, a binary frame) -> `input_error`; nothing received for `knobs.idle_timeout` s ->
`insufficient_audio_activity`.

Session: `session_started` echoing the config, then the tone recogniser (stt_common.py)
turns the audio into `partial_transcript` messages every 200 ms of a burst (always sent;
clients pick) and, with `commit_strategy=vad`, a `committed_transcript` once
`vad_silence_threshold_secs` of silence follow a burst. `"commit": true` commits what is
pending (bursts since the last commit, joined; "" if none), also with `vad`; with
`include_timestamps=true` each commit is followed by `committed_transcript_with_timestamps`.

    standin = ElevenLabsSttStandin(api_keys={"xi-key"})
    with running_ws_standin(standin) as base_url:   # ELEVENLABS_BASE_URL
        ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from callboard.media.g711 import ulaw_decode
from tests.helpers.standins.stt_common import (
    Connection,
    Heard,
    SocketKnobs,
    SocketPlan,
    ToneRecogniser,
)

DEFAULT_KEY = "test-elevenlabs-key"
MODELS = ("scribe_v2_realtime",)
AUDIO_FORMATS = {
    "pcm_8000": 8000,
    "pcm_16000": 16000,
    "pcm_22050": 22050,
    "pcm_24000": 24000,
    "pcm_44100": 44100,
    "pcm_48000": 48000,
    "ulaw_8000": 8000,
}
MANUAL_BURST_END = 0.3  # seconds of silence that end a burst within a manual segment


@dataclass(frozen=True)
class Config:
    model_id: str
    audio_format: str
    rate: int
    language_code: str | None
    commit_strategy: str
    vad_silence_threshold_secs: float
    vad_threshold: float
    min_speech_duration_ms: int
    min_silence_duration_ms: int
    include_timestamps: bool
    include_language_detection: bool
    enable_logging: bool

    def echo(self) -> dict[str, Any]:
        """As `session_started.config` reports it."""
        return {
            "sample_rate": self.rate,
            "audio_format": self.audio_format,
            "language_code": self.language_code,
            "commit_strategy": self.commit_strategy,
            "vad_silence_threshold_secs": self.vad_silence_threshold_secs,
            "vad_threshold": self.vad_threshold,
            "min_speech_duration_ms": self.min_speech_duration_ms,
            "min_silence_duration_ms": self.min_silence_duration_ms,
            "model_id": self.model_id,
            "enable_logging": self.enable_logging,
            "include_timestamps": self.include_timestamps,
            "include_language_detection": self.include_language_detection,
        }


class Problem(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


def default_failure(status: int) -> dict[str, Any]:
    """ElevenLabs' HTTP error body for a refused handshake."""
    if status == 429:
        status_code, message = "rate_limit_exceeded", "Too many concurrent requests."
    elif status == 401:
        status_code, message = "invalid_api_key", "Invalid API key"
    elif status >= 500:
        status_code, message = "internal_server_error", "The service is temporarily unavailable."
    else:
        status_code, message = "invalid_request", "The request could not be processed."
    return {"detail": {"status": status_code, "message": message}}


class ElevenLabsSttStandin:
    """An ASGI app; `knobs` control failures and record every connection. `tokens` are
    single-use tokens (each accepted once)."""

    def __init__(self, api_keys: set[str] | None = None, tokens: set[str] | None = None) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.tokens = set(tokens or ())
        self.knobs = SocketKnobs()
        self._app = Starlette(
            routes=[WebSocketRoute("/v1/speech-to-text/realtime", self._realtime)]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _realtime(self, ws: WebSocket) -> None:
        connection = self.knobs.open(ws.url.path, dict(ws.query_params), dict(ws.headers))
        plan = self.knobs.plan()
        if plan.reject is not None:
            status, body = plan.reject
            connection.status = status
            await ws.send_denial_response(
                JSONResponse(default_failure(status) if body is None else body, status)
            )
            return
        await ws.accept()
        session = Session(ws, connection, plan, self.knobs)
        try:
            if not self._authorized(ws):
                await session.fail("auth_error", "Invalid API key or token.")
                return
            try:
                config = parse_config(connection.query)
            except Problem as problem:
                await session.fail(problem.kind, problem.detail)
                return
            await session.run(config)
        except (OSError, RuntimeError, WebSocketDisconnect):
            connection.closed_by = connection.closed_by or "client"  # gone while we sent

    def _authorized(self, ws: WebSocket) -> bool:
        if ws.headers.get("xi-api-key", "") in self.api_keys:
            return True
        token = ws.query_params.get("token")
        if token is not None and token in self.tokens:
            self.tokens.discard(token)  # single use
            return True
        return False


def parse_config(query: dict[str, str]) -> Config:
    model_id = query.get("model_id")
    if model_id not in MODELS:
        supported = ", ".join(f"'{m}'" for m in MODELS)
        raise Problem(
            "invalid_request",
            f"The model_id '{model_id or ''}' is invalid. Supported models: {supported}.",
        )
    audio_format = query.get("audio_format", "pcm_16000")
    if audio_format not in AUDIO_FORMATS:
        raise Problem("invalid_request", f"Invalid audio_format '{audio_format}'.")
    language = query.get("language_code")
    if language is not None and not re.fullmatch(r"[a-z]{2,3}", language):
        raise Problem("invalid_request", f"Invalid language_code '{language}'.")
    strategy = query.get("commit_strategy", "manual")
    if strategy not in ("manual", "vad"):
        raise Problem("invalid_request", f"Invalid commit_strategy '{strategy}'.")
    return Config(
        model_id=model_id,
        audio_format=audio_format,
        rate=AUDIO_FORMATS[audio_format],
        language_code=language,
        commit_strategy=strategy,
        vad_silence_threshold_secs=_number(query, "vad_silence_threshold_secs", 1.5, 0.3, 3.0),
        vad_threshold=_number(query, "vad_threshold", 0.4, 0.1, 0.9),
        min_speech_duration_ms=int(_number(query, "min_speech_duration_ms", 100, 50, 2000)),
        min_silence_duration_ms=int(_number(query, "min_silence_duration_ms", 100, 50, 2000)),
        include_timestamps=_boolean(query, "include_timestamps", False),
        include_language_detection=_boolean(query, "include_language_detection", False),
        enable_logging=_boolean(query, "enable_logging", True),
    )


def _number(query: dict[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise Problem("invalid_request", f"Invalid {name} '{raw}'.") from None
    if not low <= value <= high:
        raise Problem("invalid_request", f"{name} must be between {low:g} and {high:g}.")
    return value


def _boolean(query: dict[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):  # the Python SDK sends `False`
        raise Problem("invalid_request", f"Invalid {name} '{raw}'.")
    return raw.lower() == "true"


class Session:
    """One accepted socket: input_audio_chunk messages in, transcripts out."""

    def __init__(
        self, ws: WebSocket, connection: Connection, plan: SocketPlan, knobs: SocketKnobs
    ) -> None:
        self.ws = ws
        self.connection = connection
        self.plan = plan
        self.knobs = knobs
        self.config: Config | None = None
        self.recogniser: ToneRecogniser | None = None
        self.segment: list[str] = []  # finals since the last commit
        self.chunks = 0
        self._stalled = False

    async def run(self, config: Config) -> None:
        self.config = config
        end = config.vad_silence_threshold_secs if config.commit_strategy == "vad" else None
        self.recogniser = ToneRecogniser(config.rate, end_silence=end or MANUAL_BURST_END)
        await self._send(
            {
                "message_type": "session_started",
                "session_id": uuid.uuid4().hex,
                "config": config.echo(),
            }
        )
        while True:
            if self._due(self.plan.stall_after) and not self._stalled:
                self._stalled = True
                await self.knobs.stall()
            try:
                async with asyncio.timeout(self.knobs.idle_timeout):
                    message = await self.ws.receive()
            except TimeoutError:
                await self.fail("insufficient_audio_activity", "No audio received in time.")
                return
            if message["type"] == "websocket.disconnect":
                self.connection.close_code = message.get("code")
                self.connection.closed_by = "client"
                return
            if message.get("text") is None:
                await self.fail("input_error", "Binary frames are not accepted: send JSON.")
                return
            if not await self._message(message["text"]):
                return
            if self._due(self.plan.drop_after):
                self.connection.closed_by = "drop"
                return  # uvicorn closes the TCP connection with no close frame
            if self.plan.error is not None and self._due(self.plan.error[0]):
                kind, detail = self.plan.error[1]
                await self.fail(kind, detail)
                return

    def _due(self, after_bytes: int | None) -> bool:
        return after_bytes is not None and self.connection.audio_bytes >= after_bytes

    async def _message(self, text: str) -> bool:
        assert self.config is not None and self.recogniser is not None
        try:
            message: Any = json.loads(text)
        except ValueError:
            message = text
        self.connection.received.append(message)
        try:
            audio, commit = self._chunk(message)
        except Problem as problem:
            await self.fail(problem.kind, problem.detail)
            return False
        self.chunks += 1
        self.connection.audio_bytes += len(audio)
        if self.config.audio_format == "ulaw_8000":
            samples = ulaw_decode(audio)
        else:  # each chunk holds whole samples (an odd byte would be a client bug: dropped)
            samples = np.frombuffer(audio[: len(audio) - len(audio) % 2], dtype="<i2")
        for heard in self.recogniser.feed(samples):
            await self._heard(heard)
        if commit and self.knobs.answer_end:
            heard_last = self.recogniser.flush()
            if heard_last is not None:
                self.segment.append(heard_last.text)
            await self._commit()
        return True

    def _chunk(self, message: Any) -> tuple[bytes, bool]:
        """The audio and commit flag of an `input_audio_chunk`, or the input_error."""
        assert self.config is not None
        if not isinstance(message, dict) or message.get("message_type") != "input_audio_chunk":
            raise Problem("input_error", "Expected an input_audio_chunk message.")
        encoded = message.get("audio_base_64")
        if not isinstance(encoded, str):
            raise Problem("input_error", "audio_base_64 is required.")
        try:
            audio = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise Problem("input_error", "audio_base_64 is not valid base64.") from None
        commit = message.get("commit")
        if not isinstance(commit, bool):
            raise Problem("input_error", "commit must be a boolean.")
        rate = message.get("sample_rate")
        if not isinstance(rate, int) or isinstance(rate, bool) or rate != self.config.rate:
            raise Problem(
                "input_error",
                f"sample_rate {rate} does not match audio_format {self.config.audio_format}.",
            )
        if message.get("previous_text") is not None and self.chunks:
            raise Problem("input_error", "previous_text is only accepted with the first chunk.")
        return audio, commit

    async def _heard(self, heard: Heard) -> None:
        assert self.config is not None
        if not heard.final:
            pending = " ".join([*self.segment, heard.text])
            await self._send({"message_type": "partial_transcript", "text": pending})
            return
        self.segment.append(heard.text)
        if self.config.commit_strategy == "vad":
            await self._commit()

    async def _commit(self) -> None:
        assert self.config is not None
        text = " ".join(self.segment)
        self.segment = []
        await self._send({"message_type": "committed_transcript", "text": text})
        if self.config.include_timestamps:
            await self._send(
                {
                    "message_type": "committed_transcript_with_timestamps",
                    "text": text,
                    "language_code": self.config.language_code or "en",
                    "words": [
                        {"text": word, "start": 0.0, "end": 0.0, "type": "word", "logprob": -0.01}
                        for word in text.split()
                    ],
                }
            )

    async def fail(self, kind: str, detail: str) -> None:
        """The realtime error envelope, then close 1008 with the type as the reason."""
        await self._send({"message_type": kind, "error": detail})
        self.connection.close_code = 1008
        self.connection.closed_by = "server"
        await self.ws.close(1008, kind)

    async def _send(self, message: dict[str, Any]) -> None:
        self.connection.sent.append(message)
        await self.ws.send_text(json.dumps(message))
