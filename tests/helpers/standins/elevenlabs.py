"""An ElevenLabs stand-in: text-to-speech (streaming and whole-body) and the voices endpoints,
as PROVIDERS-SPEECH.md section 1 documents them.

It checks `xi-api-key` (401 `invalid_api_key`), the `output_format` query (a FastAPI-style 422
list for an unknown value), the JSON body (422 list for a missing or mistyped `text`), the
model (400 `invalid_parameters`), the per-model character limit (400
`max_character_limit_exceeded`) and the voice (404 `voice_not_found`), in that order, and
answers with the voice's sine (tests/helpers/standins/common.py) in the requested format.

    standin = ElevenLabsStandin(api_keys={"el-key"})
    standin.add_voice("Yl2ZDV1MzN4HbQJbMihG", "Narrator", 500.0)
    with running_standin(standin) as base_url:   # ELEVENLABS_BASE_URL
        ...
        standin.knobs.fail_next(429); standin.knobs.count("/v1/text-to-speech")
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from callboard.media.g711 import alaw_encode, ulaw_encode
from tests.helpers.standins.common import Knobs, signal_samples, sine

DEFAULT_KEY = "test-elevenlabs-key"

OUTPUT_FORMATS = (
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
    "alaw_8000",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
)
DEFAULT_FORMAT = "mp3_44100_128"

# Character limits per model: the real ones are not published exactly; these are stand-ins.
MODEL_LIMITS = {
    "eleven_multilingual_v2": 10_000,
    "eleven_flash_v2_5": 40_000,
    "eleven_turbo_v2_5": 40_000,
    "eleven_v3": 5_000,
}
DEFAULT_MODEL = "eleven_multilingual_v2"


@dataclass
class StandinVoice:
    voice_id: str  # 20 letters and digits, as ElevenLabs' ids
    name: str
    frequency: float  # Hz of the sine this voice "speaks"
    category: str = "premade"
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "voice_id": self.voice_id,
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "labels": self.labels,
            "preview_url": None,
        }


# Domi comes first and mentions Rachel: a search for "Rachel" finds both, so a client that
# takes the first hit instead of matching the name gets the wrong voice.
DEFAULT_VOICES = (
    StandinVoice("AZnzlk1XvdvUeBnXmlld", "Domi", 550.0, description="strong, like Rachel"),
    StandinVoice("21m00Tcm4TlvDq8ikWAM", "Rachel", 440.0, labels={"accent": "american"}),
    StandinVoice("JBFqnCBsd6RMkjVDRZzb", "George", 660.0, labels={"accent": "british"}),
)


def error(status: int, code: str, message: str, kind: str, param: str | None = None) -> Response:
    """The current error shape (with the legacy `status` field)."""
    detail: dict[str, Any] = {
        "type": kind,
        "code": code,
        "message": message,
        "status": code,
        "request_id": uuid.uuid4().hex,
    }
    if param is not None:
        detail["param"] = param
    return JSONResponse({"detail": detail}, status_code=status)


def validation_error(loc: list[Any], msg: str, kind: str, **extra: Any) -> Response:
    """FastAPI's 422 list, for a request that breaks the schema."""
    return JSONResponse(
        {"detail": [{"loc": loc, "msg": msg, "type": kind, **extra}]}, status_code=422
    )


def default_failure(status: int) -> Response:
    if status == 429:
        return error(
            429,
            "concurrent_limit_exceeded",
            "Too many concurrent requests. Please try again later.",
            "rate_limit_error",
        )
    if status >= 500:
        return error(status, "internal_server_error", "An internal error occurred.", "server_error")
    return error(status, "bad_request", "The request could not be processed.", "invalid_request")


class ElevenLabsStandin:
    """An ASGI app; `knobs` control failures and timing, `voices` what it knows."""

    def __init__(
        self, api_keys: set[str] | None = None, voices: tuple[StandinVoice, ...] = DEFAULT_VOICES
    ) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.voices: dict[str, StandinVoice] = {v.voice_id: v for v in voices}
        self.knobs = Knobs()
        self._app = Starlette(
            routes=[
                Route("/v1/text-to-speech/{voice_id}/stream", self._stream, methods=["POST"]),
                Route("/v1/text-to-speech/{voice_id}", self._whole, methods=["POST"]),
                Route("/v2/voices", self._voices_v2, methods=["GET"]),
                Route("/v1/voices", self._voices_v1, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_exception},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    def add_voice(self, voice_id: str, name: str, frequency: float, **extra: Any) -> None:
        self.voices[voice_id] = StandinVoice(voice_id, name, frequency, **extra)

    # -- text to speech --------------------------------------------------------------------

    async def _stream(self, request: Request) -> Response:
        return await self._speak(request, streamed=True)

    async def _whole(self, request: Request) -> Response:
        return await self._speak(request, streamed=False)

    async def _speak(self, request: Request, streamed: bool) -> Response:
        recorded = await self.knobs.record(request)
        if (denied := self._check_key(request)) is not None:
            return denied
        plan = self.knobs.plan()
        if plan.fail is not None:
            status, body = plan.fail
            return default_failure(status) if body is None else JSONResponse(body, status)
        output_format = request.query_params.get("output_format", DEFAULT_FORMAT)
        if output_format not in OUTPUT_FORMATS:
            permitted = ", ".join(f"'{f}'" for f in OUTPUT_FORMATS)
            return validation_error(
                ["query", "output_format"],
                f"value is not a valid enumeration member; permitted: {permitted}",
                "type_error.enum",
                ctx={"enum_values": list(OUTPUT_FORMATS)},
            )
        latency = request.query_params.get("optimize_streaming_latency")
        if latency is not None and latency not in ("0", "1", "2", "3", "4"):
            return validation_error(
                ["query", "optimize_streaming_latency"],
                "value is not a valid integer between 0 and 4",
                "value_error",
            )
        body = recorded.json
        if not isinstance(body, dict):
            return validation_error(["body"], "value is not a valid dict", "type_error.dict")
        text = body.get("text")
        if text is None:
            return validation_error(["body", "text"], "field required", "value_error.missing")
        if not isinstance(text, str):
            return validation_error(["body", "text"], "str type expected", "type_error.str")
        model = body.get("model_id") or DEFAULT_MODEL
        if model not in MODEL_LIMITS:
            return error(
                400,
                "invalid_parameters",
                f"A model with model ID {model} does not exist.",
                "validation_error",
                param="model_id",
            )
        if len(text) > MODEL_LIMITS[model]:
            return error(
                400,
                "max_character_limit_exceeded",
                f"Text is too long: {len(text)} characters, the limit for {model} is "
                f"{MODEL_LIMITS[model]}.",
                "validation_error",
                param="text",
            )
        voice_id = request.path_params["voice_id"]
        voice = self.voices.get(voice_id)
        if voice is None:
            return error(
                404,
                "voice_not_found",
                f"A voice with the voice_id {voice_id} was not found.",
                "not_found",
                param="voice_id",
            )
        audio = render(output_format, voice.frequency, text)
        if audio is None:
            return error(
                400,
                "standin_unsupported_format",
                f"the stand-in renders only pcm_*, ulaw_8000 and alaw_8000, not {output_format}",
                "invalid_request",
            )
        await self.knobs.before_headers()
        # The OpenAPI document declares audio/mpeg for every format; clients must not branch on
        # it, and sending it for PCM too makes sure they do not.
        headers = {"request-id": uuid.uuid4().hex}
        if not streamed:
            return Response(audio, media_type="audio/mpeg", headers=headers)
        return StreamingResponse(
            self.knobs.stream(audio, plan),
            media_type="audio/mpeg",
            headers=headers,
        )

    # -- voices ----------------------------------------------------------------------------

    async def _voices_v2(self, request: Request) -> Response:
        await self.knobs.record(request)
        if (denied := self._check_key(request)) is not None:
            return denied
        raw_size = request.query_params.get("page_size", "10")
        if not raw_size.isdigit() or not 1 <= int(raw_size) <= 100:
            return validation_error(
                ["query", "page_size"],
                "ensure this value is between 1 and 100",
                "value_error.number",
            )
        size = int(raw_size)
        search = request.query_params.get("search", "").casefold()
        found = [v for v in self.voices.values() if not search or search in _searchable(v)]
        token = request.query_params.get("next_page_token")
        start = int(token) if token and token.isdigit() else 0
        page = found[start : start + size]
        more = start + size < len(found)
        return JSONResponse(
            {
                "voices": [v.as_json() for v in page],
                "has_more": more,
                "total_count": len(found),
                "next_page_token": str(start + size) if more else None,
            }
        )

    async def _voices_v1(self, request: Request) -> Response:
        await self.knobs.record(request)
        if (denied := self._check_key(request)) is not None:
            return denied
        return JSONResponse({"voices": [v.as_json() for v in self.voices.values()]})

    # -- common ----------------------------------------------------------------------------

    def _check_key(self, request: Request) -> Response | None:
        if request.headers.get("xi-api-key") in self.api_keys:
            return None
        return error(401, "invalid_api_key", "Invalid API key", "authentication_error")

    async def _http_exception(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # registered for HTTPException only
        return JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)


def render(output_format: str, frequency: float, text: str) -> bytes | None:
    """The voice's sine for `text` in `output_format`; None for the compressed formats."""
    kind, _, rest = output_format.partition("_")
    rate = int(rest.split("_")[0])
    samples = sine(frequency, rate, signal_samples(text, rate))
    if kind == "pcm":
        return samples.astype("<i2").tobytes()
    if kind == "ulaw":
        return ulaw_encode(samples)
    if kind == "alaw":
        return alaw_encode(samples)
    return None


def _searchable(voice: StandinVoice) -> str:
    """What `search` matches: name, description, labels and category."""
    parts = [voice.name, voice.description, voice.category, *voice.labels.values()]
    return " ".join(parts).casefold()
