"""A Google Cloud Text-to-Speech stand-in: `POST /v1/text:synthesize` as PROVIDERS-SPEECH.md
section 3 documents it.

Authentication as Google's front end does it: an API key in `?key=` or `X-Goog-Api-Key`
(a wrong one is 400 INVALID_ARGUMENT with reason API_KEY_INVALID), or an OAuth bearer token
(a wrong one is 401 UNAUTHENTICATED); neither is 403 PERMISSION_DENIED. The body is proto3 JSON
(lowerCamelCase, snake_case also accepted) and what Google rejects is a 400 in its error shape
`{"error": {"code", "message", "status", "details"}}`. The answer is `{"audioContent": base64}`:
for LINEAR16 a WAV file with a LIST chunk ahead of `data` (a client assuming a 44-byte header
gets it wrong), for PCM the bare samples. Only LINEAR16 and PCM are rendered; other encodings
are a 400 that says so.

    standin = GoogleTtsStandin()
    base_url, stop = start_standin(standin)       # GOOGLE_TTS_BASE_URL
    standin.knobs.fail_next(429); standin.knobs.last().json["voice"]
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.helpers.standins.common import Knobs, signal_samples, sine

DEFAULT_KEY = "test-google-key"
DEFAULT_TOKEN = "test-google-token"
PATH = "/v1/text:synthesize"
# Gemini-TTS speakers, addressed by short name (the Chirp 3 HD voices carry the same names).
GEMINI_VOICES = frozenset(
    {
        "Achernar", "Achird", "Algenib", "Algieba", "Alnilam", "Aoede", "Autonoe", "Callirrhoe",
        "Charon", "Despina", "Enceladus", "Erinome", "Fenrir", "Gacrux", "Iapetus", "Kore",
        "Laomedeia", "Leda", "Orus", "Puck", "Pulcherrima", "Rasalgethi", "Sadachbia",
        "Sadaltager", "Schedar", "Sulafat", "Umbriel", "Vindemiatrix", "Zephyr", "Zubenelgenubi",
    }
)  # fmt: skip
RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000)
DEFAULT_RATE = 24000  # a voice's natural rate, used when sampleRateHertz is absent
MAX_INPUT_BYTES = 5000
MAX_PROMPT_BYTES = 4000
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_STOCK = {
    400: "Invalid request.",
    429: "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


def voice_frequency(voice: str) -> float:
    """400..1125 Hz in 25 Hz steps, fixed per voice name, so voices are told apart."""
    return 400.0 + 25.0 * (zlib.crc32(voice.encode()) % 30)


def error(code: int, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message, "status": _STATUS.get(code, "")}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=code)


def wav(pcm: bytes, rate: int) -> bytes:
    """A WAV file: RIFF/WAVE, fmt, a LIST/INFO chunk (odd-sized, so padded), then data."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    info = b"INFO" + b"ISFT" + struct.pack("<I", 9) + b"stand-in\x00"  # 21 bytes: odd
    chunks = b"".join(
        [
            b"fmt " + struct.pack("<I", len(fmt)) + fmt,
            b"LIST" + struct.pack("<I", len(info)) + info + b"\x00",  # the pad byte
            b"data" + struct.pack("<I", len(pcm)) + pcm,
        ]
    )
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def signal(voice: str, text: str, rate: int) -> bytes:
    """The PCM16 the stand-in speaks for (voice, text) at `rate`."""
    samples = sine(voice_frequency(voice), rate, signal_samples(text, rate))
    return samples.astype("<i2").tobytes()


def _get(obj: Any, camel: str) -> Any:
    """A proto3 JSON field by its lowerCamelCase or snake_case name."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    return obj.get("".join(f"_{c.lower()}" if c.isupper() else c for c in camel))


class GoogleTtsStandin:
    """An ASGI app; `knobs` control failures and timing."""

    def __init__(self, api_keys: set[str] | None = None, tokens: set[str] | None = None) -> None:
        self.api_keys = set(api_keys) if api_keys is not None else {DEFAULT_KEY}
        self.tokens = set(tokens) if tokens is not None else {DEFAULT_TOKEN}
        self.knobs = Knobs()
        self._app = Starlette(routes=[Route(PATH, self._synthesize, methods=["POST"])])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _synthesize(self, request: Request) -> Response:
        recorded = await self.knobs.record(request)
        if (denied := self._authenticate(request)) is not None:
            return denied
        plan = self.knobs.plan()
        if plan.fail is not None:
            status, body = plan.fail
            if body is None:
                return error(status, _STOCK.get(status, "Request failed."))
            return error(status, body) if isinstance(body, str) else JSONResponse(body, status)
        body = recorded.json
        if not isinstance(body, dict):
            return error(400, "Invalid JSON payload received. Unexpected token.")
        checked = self._check(body)
        if isinstance(checked, Response):
            return checked
        text, voice, encoding, rate = checked
        pcm = signal(voice, text, rate)
        audio = wav(pcm, rate) if encoding == "LINEAR16" else pcm
        answer = json.dumps({"audioContent": base64.b64encode(audio).decode()}).encode()
        await self.knobs.before_headers()
        return StreamingResponse(
            self.knobs.stream(answer, plan),
            media_type="application/json; charset=UTF-8",
            headers={"content-length": str(len(answer))},
        )

    def _authenticate(self, request: Request) -> Response | None:
        key = request.query_params.get("key") or request.headers.get("x-goog-api-key")
        if key is not None:
            if key in self.api_keys:
                return None
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "texttospeech.googleapis.com"},
            }
            return error(400, "API key not valid. Please pass a valid API key.", [info])
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if auth.removeprefix("Bearer ") in self.tokens:
                return None
            return error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential.",
            )
        return error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity)."
            " Please use API Key or other form of API consumer identity to call this API.",
        )

    @staticmethod
    def _check(body: dict[str, Any]) -> Response | tuple[str, str, str, int]:
        """(text, voice, encoding, rate) of a valid request, else Google's 400."""
        inp, voice, config = body.get("input"), body.get("voice"), _get(body, "audioConfig")
        kinds = [k for k in ("text", "ssml", "markup", "multiSpeakerMarkup") if _get(inp, k)]
        if len(kinds) != 1:
            return error(
                400,
                "Exactly one of input.text, input.ssml, input.markup or "
                "input.multi_speaker_markup must be set.",
            )
        if kinds != ["text"]:
            return error(400, f"The stand-in renders input.text only, not input.{kinds[0]}.")
        text, prompt = _get(inp, "text"), _get(inp, "prompt") or ""
        if not isinstance(text, str) or not isinstance(prompt, str):
            return error(400, "Invalid value at 'input': expected a string.")
        if len(text.encode()) > MAX_INPUT_BYTES:
            return error(
                400,
                f"Either input.text or input.ssml is longer than the limit of {MAX_INPUT_BYTES} "
                "bytes. This limit is different from quotas.",
            )
        if len(prompt.encode()) > MAX_PROMPT_BYTES:
            return error(400, f"input.prompt is longer than the limit of {MAX_PROMPT_BYTES} bytes.")
        language = _get(voice, "languageCode")
        if not language or not isinstance(language, str):
            return error(400, "Invalid 'voice.language_code': must be set.")
        name = _get(voice, "name") or ""
        if "-" not in name:
            if name and name not in GEMINI_VOICES:
                return error(400, f"Voice '{name}' does not exist. Is it misspelled?")
        elif not name.lower().startswith(language.lower() + "-"):
            # A full name carries its locale: there is no such voice in another language.
            return error(400, f"Voice '{name}' does not exist. Is it misspelled?")
        encoding = _get(config, "audioEncoding")
        if not encoding or encoding == "AUDIO_ENCODING_UNSPECIFIED":
            return error(400, "Invalid 'audio_config.audio_encoding': must be set.")
        if encoding not in ("LINEAR16", "PCM"):
            return error(400, f"The stand-in renders LINEAR16 and PCM only, not {encoding}.")
        rate = _get(config, "sampleRateHertz") or DEFAULT_RATE
        if rate not in RATES:
            return error(400, f"Invalid 'audio_config.sample_rate_hertz': {rate}.")
        return text, name or language, encoding, int(rate)
