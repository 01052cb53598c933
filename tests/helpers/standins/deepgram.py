"""A Deepgram Aura stand-in: `POST /v1/speak`, as PROVIDERS-SPEECH.md section 4 documents it.

It checks `Authorization: Token <key>` (401 `INVALID_AUTH`), the Content-Type (415), the model
(400 "No such model/language/tier combination found."), the encoding / container / sample_rate
combination (400 `INVALID_QUERY_PARAMETER`), the body (400 `PAYLOAD_ERROR`: bad JSON, not exactly
one of text/url, empty text) and the 2000-character limit (413), in that order, and answers
with the model's sine (tests/helpers/standins/common.py) with Deepgram's response headers.

    standin = DeepgramStandin(api_keys={"dg-key"})
    standin.add_model("aura-2-orion-en", 480.0)
    with running_standin(standin) as base_url:   # DEEPGRAM_BASE_URL
        ...
"""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from callboard.media.g711 import alaw_encode, ulaw_encode
from tests.helpers.standins.common import Knobs, signal_samples, sine

DEFAULT_KEY = "test-deepgram-key"
DEFAULT_MODEL = "aura-asteria-en"
DEFAULT_MODELS = {
    "aura-asteria-en": 440.0,
    "aura-2-thalia-en": 520.0,
    "aura-2-celeste-es": 600.0,
}
MAX_CHARACTERS = 2000
MAX_BODY = 2 * 1024 * 1024

# encoding -> (allowed sample rates, default rate, allowed containers, default container)
ENCODINGS: dict[str, tuple[tuple[int, ...], int, tuple[str, ...], str | None]] = {
    "linear16": ((8000, 16000, 24000, 32000, 48000), 24000, ("wav", "none"), "wav"),
    "mulaw": ((8000, 16000), 8000, ("wav", "none"), "wav"),
    "alaw": ((8000, 16000), 8000, ("wav", "none"), "wav"),
    "mp3": ((22050,), 22050, (), None),
    "opus": ((48000,), 48000, ("ogg",), "ogg"),
    "flac": ((8000, 16000, 22050, 32000, 48000), 48000, (), None),
    "aac": ((22050,), 22050, (), None),
}
DEFAULT_ENCODING = "linear16"


def error(status: int, code: str, message: str) -> Response:
    return JSONResponse(
        {"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())}, status
    )


def default_failure(status: int) -> Response:
    if status == 429:
        return error(429, "TOO_MANY_REQUESTS", "Too many requests. Please try again later.")
    if status >= 500:
        return error(status, "INTERNAL_SERVER_ERROR", "The service is temporarily unavailable.")
    return error(status, "BAD_REQUEST", "The request could not be processed.")


class DeepgramStandin:
    """An ASGI app; `knobs` control failures and timing, `models` maps a model (voice) name to
    the frequency of its sine."""

    def __init__(
        self, api_keys: set[str] | None = None, models: dict[str, float] | None = None
    ) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.models = dict(models if models is not None else DEFAULT_MODELS)
        self.knobs = Knobs()
        self._app = Starlette(
            routes=[Route("/v1/speak", self._speak, methods=["POST"])],
            exception_handlers={HTTPException: self._http_exception},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    def add_model(self, name: str, frequency: float) -> None:
        self.models[name] = frequency

    async def _speak(self, request: Request) -> Response:
        recorded = await self.knobs.record(request)
        if not self._authorized(request.headers.get("authorization", "")):
            return error(401, "INVALID_AUTH", "Invalid credentials.")
        plan = self.knobs.plan()
        if plan.fail is not None:
            status, body = plan.fail
            return default_failure(status) if body is None else JSONResponse(body, status)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type not in ("application/json", "text/plain"):
            return error(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"Unsupported media type: {media_type or 'none'}. "
                "Use application/json or text/plain.",
            )
        model = request.query_params.get("model", DEFAULT_MODEL)
        if model not in self.models:
            return error(
                400, "Bad Request", "Bad Request: No such model/language/tier combination found."
            )
        fmt = _audio_format(request.query_params)
        if isinstance(fmt, Response):
            return fmt
        encoding, rate, container = fmt
        if len(recorded.body) > MAX_BODY:
            return error(413, "PAYLOAD_TOO_LARGE", "Payload Too Large")
        text = _text(recorded.body, media_type)
        if isinstance(text, Response):
            return text
        if len(text) > MAX_CHARACTERS:
            return error(
                413,
                "PAYLOAD_TOO_LARGE",
                f"Input text exceeds the maximum of {MAX_CHARACTERS} characters.",
            )
        audio = _render(encoding, rate, self.models[model], text)
        if audio is None:
            return error(
                400,
                "INVALID_QUERY_PARAMETER",
                f"the stand-in renders only linear16, mulaw and alaw, not {encoding}",
            )
        header = _wav_header(encoding, rate, len(audio)) if container == "wav" else b""
        await self.knobs.before_headers()
        return StreamingResponse(
            self.knobs.stream(audio, plan, prefix=header),
            media_type="audio/wav"
            if container == "wav"
            else f"audio/{_mime(encoding)};rate={rate}",
            headers={
                "dg-model-name": model,
                "dg-model-uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, model)),
                "dg-char-count": str(len(text)),
                "dg-request-id": str(uuid.uuid4()),
            },
        )

    def _authorized(self, header: str) -> bool:
        scheme, _, key = header.partition(" ")
        return scheme.lower() == "token" and key.strip() in self.api_keys

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # registered for HTTPException only
        return error(
            exc.status_code,
            "NOT_FOUND" if exc.status_code == 404 else "BAD_REQUEST",
            str(exc.detail),
        )


def _audio_format(query: Any) -> tuple[str, int, str | None] | Response:
    """(encoding, sample rate, container) from the query, or Deepgram's 400."""
    encoding = query.get("encoding", DEFAULT_ENCODING)
    if encoding not in ENCODINGS:
        return error(
            400,
            "INVALID_QUERY_PARAMETER",
            f"Unsupported audio format: encoding must be one of {', '.join(ENCODINGS)}",
        )
    rates, default_rate, containers, default_container = ENCODINGS[encoding]
    raw_rate = query.get("sample_rate")
    if raw_rate is None:
        rate = default_rate
    elif not raw_rate.isdigit() or int(raw_rate) not in rates:
        allowed = ", ".join(str(r) for r in rates)
        return error(
            400,
            "INVALID_QUERY_PARAMETER",
            f"Unsupported audio format: sample_rate must be one of {allowed} "
            f"when encoding={encoding}",
        )
    else:
        rate = int(raw_rate)
    container = query.get("container", default_container)
    if container is not None and container not in containers:
        allowed = ", ".join(containers) or "none (no container parameter)"
        return error(
            400,
            "INVALID_QUERY_PARAMETER",
            f"Unsupported audio format: container must be {allowed} when encoding={encoding}",
        )
    return encoding, rate, container


def _text(body: bytes, media_type: str) -> str | Response:
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError:
        return error(400, "PAYLOAD_ERROR", "Request body is not valid UTF-8.")
    if media_type == "text/plain":
        text = decoded
    else:
        try:
            payload = json.loads(decoded)
        except ValueError as exc:
            return error(400, "PAYLOAD_ERROR", f"Invalid JSON in request body: {exc}")
        if not isinstance(payload, dict) or ("text" in payload) == ("url" in payload):
            return error(
                400, "PAYLOAD_ERROR", "Request body must contain exactly one of text or url."
            )
        if "url" in payload:
            return error(400, "PAYLOAD_ERROR", "the stand-in does not fetch text from a url")
        text = payload["text"]
        if not isinstance(text, str):
            return error(400, "PAYLOAD_ERROR", "text must be a string.")
    if not text.strip():
        return error(400, "PAYLOAD_ERROR", "Text must not be empty.")
    return text


def _render(encoding: str, rate: int, frequency: float, text: str) -> bytes | None:
    samples = sine(frequency, rate, signal_samples(text, rate))
    if encoding == "linear16":
        return samples.astype("<i2").tobytes()
    if encoding == "mulaw":
        return ulaw_encode(samples)
    if encoding == "alaw":
        return alaw_encode(samples)
    return None


def _mime(encoding: str) -> str:
    return {"linear16": "l16", "mulaw": "mulaw", "alaw": "alaw"}.get(encoding, encoding)


def _wav_header(encoding: str, rate: int, data_bytes: int) -> bytes:
    """A canonical 44-byte RIFF/WAVE header (PCM = 1, A-law = 6, mu-law = 7)."""
    tag, width = {"linear16": (1, 2), "alaw": (6, 1), "mulaw": (7, 1)}[encoding]
    fmt = struct.pack("<HHIIHH", tag, 1, rate, rate * width, width, width * 8)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )
