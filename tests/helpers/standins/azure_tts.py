"""An Azure Speech text-to-speech stand-in: `POST /cognitiveservices/v1` (SSML over REST), as
Microsoft's text-to-speech REST reference describes it.

Checks, in order: `Ocp-Apim-Subscription-Key` (wrong or missing: 401 with the gateway's JSON
error), `Content-Type: application/ssml+xml` (else 415), a `User-Agent` under 255 characters
and a known `X-Microsoft-OutputFormat` (else 400), then the SSML itself: well-formed XML, a
`speak` root with `version='1.0'` and `xml:lang`, holding `voice` elements with a name (else
400 with a short text body). The spoken text is the voices' text content, so escaped markup
counts as the characters it stands for. Only the headerless `raw-*-16bit-mono-pcm` outputs are
rendered; other documented formats are a 400 that says so.

    standin = AzureTtsStandin()
    base_url, stop = start_standin(standin)       # AZURE_TTS_BASE_URL
    standin.knobs.fail_next(429); standin.spoken[-1]
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import zlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tests.helpers.standins.common import Knobs, signal_samples, sine

DEFAULT_KEY = "test-azure-key"
PATH = "/cognitiveservices/v1"
SSML_NS = "http://www.w3.org/2001/10/synthesis"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
RAW_PCM = {
    "raw-8khz-16bit-mono-pcm": 8000,
    "raw-16khz-16bit-mono-pcm": 16000,
    "raw-22050hz-16bit-mono-pcm": 22050,
    "raw-24khz-16bit-mono-pcm": 24000,
    "raw-44100hz-16bit-mono-pcm": 44100,
    "raw-48khz-16bit-mono-pcm": 48000,
}
OTHER_FORMATS = frozenset(
    {
        "raw-8khz-8bit-mono-mulaw", "raw-8khz-8bit-mono-alaw", "riff-8khz-16bit-mono-pcm",
        "riff-24khz-16bit-mono-pcm", "riff-48khz-16bit-mono-pcm",
        "audio-16khz-32kbitrate-mono-mp3", "audio-24khz-48kbitrate-mono-mp3",
        "ogg-16khz-16bit-mono-opus", "ogg-24khz-16bit-mono-opus", "webm-24khz-16bit-mono-opus",
    }
)  # fmt: skip
VOICE_NAME = re.compile(r"[a-z]{2,3}-[A-Z]{2,4}(-[A-Za-z]+)?-[A-Za-z0-9:]+")
UNAUTHORIZED = {
    "error": {
        "code": "401",
        "message": "Access denied due to invalid subscription key or wrong API endpoint. Make "
        "sure to provide a valid key for an active subscription and use a correct regional "
        "API endpoint for your resource.",
    }
}
_STOCK = {429: "Too many requests", 500: "Internal server error", 502: "Bad gateway"}


def voice_frequency(voice: str) -> float:
    """400..1125 Hz in 25 Hz steps, fixed per voice name, so voices are told apart."""
    return 400.0 + 25.0 * (zlib.crc32(voice.encode()) % 30)


def signal(voice: str, text: str, rate: int = 16000) -> bytes:
    """The PCM16 the stand-in speaks for (voice, text) at `rate`."""
    samples = sine(voice_frequency(voice), rate, signal_samples(text, rate))
    return samples.astype("<i2").tobytes()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_ssml(raw: bytes) -> tuple[str, str, str] | str:
    """(first voice, its language, spoken text) of acceptable SSML, else what is wrong."""
    try:
        root = ET.fromstring(raw)
    except ET.ParseError as exc:
        return f"The SSML is not well-formed XML: {exc}"
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    if _local(root.tag) != "speak" or ns not in ("", SSML_NS):
        return "The root element must be speak"
    if root.get("version") != "1.0" or not root.get(XML_LANG):
        return "speak needs version='1.0' and xml:lang"
    voices = [el for el in root if _local(el.tag) == "voice"]
    if not voices or len(voices) != len(root):
        return "speak must hold voice elements only"
    for el in voices:
        if not VOICE_NAME.fullmatch(el.get("name", "")):
            return f"Unsupported voice name '{el.get('name', '')}'"
    text = " ".join("".join(el.itertext()).strip() for el in voices).strip()
    return voices[0].get("name", ""), root.get(XML_LANG, ""), text


class AzureTtsStandin:
    """An ASGI app; `knobs` control failures and timing, `spoken` holds (voice, language,
    text) of every SSML document it accepted."""

    def __init__(self, keys: set[str] | None = None) -> None:
        self.keys = set(keys) if keys is not None else {DEFAULT_KEY}
        self.knobs = Knobs()
        self.spoken: list[tuple[str, str, str]] = []
        self._app = Starlette(routes=[Route(PATH, self._synthesize, methods=["POST"])])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _synthesize(self, request: Request) -> Response:
        recorded = await self.knobs.record(request)
        if request.headers.get("ocp-apim-subscription-key") not in self.keys:
            return JSONResponse(UNAUTHORIZED, status_code=401)
        plan = self.knobs.plan()
        if plan.fail is not None:
            status, body = plan.fail
            return PlainTextResponse(body or _STOCK.get(status, "Request failed"), status)
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/ssml+xml":
            return PlainTextResponse("Content-Type must be application/ssml+xml", 415)
        agent = request.headers.get("user-agent", "")
        if not agent or len(agent) >= 255:
            return PlainTextResponse("User-Agent is required (fewer than 255 characters)", 400)
        output = request.headers.get("x-microsoft-outputformat", "")
        if output not in RAW_PCM:
            if output in OTHER_FORMATS:
                return PlainTextResponse(f"The stand-in does not render {output}", 400)
            return PlainTextResponse(f"Unsupported X-Microsoft-OutputFormat '{output}'", 400)
        parsed = parse_ssml(recorded.body)
        if isinstance(parsed, str):
            return PlainTextResponse(parsed, 400)
        self.spoken.append(parsed)
        voice, _, text = parsed
        await self.knobs.before_headers()
        return StreamingResponse(
            self.knobs.stream(signal(voice, text, RAW_PCM[output]), plan),
            media_type="audio/x-wav",
        )
