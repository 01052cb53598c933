"""Azure Speech text-to-speech (SSML over REST) as a TTS provider.

`POST {base}/cognitiveservices/v1` with the key in `Ocp-Apim-Subscription-Key`,
`Content-Type: application/ssml+xml`, `X-Microsoft-OutputFormat: raw-16khz-16bit-mono-pcm`
(headerless PCM16, a streaming format) and a `User-Agent`, as Microsoft's text-to-speech REST
reference describes. The base is `AZURE_TTS_BASE_URL`, else
`https://{AZURE_SPEECH_REGION}.tts.speech.microsoft.com`. The answer body is streamed through
cloud_http.stream_pcm (deadlines, sample alignment, errors), as for ElevenLabs and Deepgram.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import httpx

from callboard.config import Settings
from callboard.speech.tts.base import TtsError, TtsRequest
from callboard.speech.tts.cloud_http import HttpTimeouts, new_client, stream_pcm

log = logging.getLogger(__name__)

OUTPUT_FORMAT = "raw-16khz-16bit-mono-pcm"
USER_AGENT = "callboard"
SSML_NS = "http://www.w3.org/2001/10/synthesis"


def language_of(voice: str, language: str | None) -> str:
    """The request's language, else the voice name's locale (`en-US-AvaNeural`), else en-US."""
    if language:
        return language
    parts = voice.split("-")
    if len(parts) >= 3 and all(parts[:3]):
        return f"{parts[0]}-{parts[1]}"
    return "en-US"


# Characters XML 1.0 forbids even when escaped; left in, they make the SSML unparsable.
_NOT_XML = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF])


def ssml(text: str, voice: str, language: str) -> str:
    """One voice speaking `text` as plain text: markup characters in it are escaped."""
    body = escape(text.translate(_NOT_XML), {'"': "&quot;", "'": "&apos;"})
    return (
        f"<speak version='1.0' xmlns='{SSML_NS}' xml:lang={quoteattr(language)}>"
        f"<voice name={quoteattr(voice)}>{body}</voice></speak>"
    )


def _read_error(body: Any) -> str | None:
    """The message of the gateway's JSON error (`{"error": {"code", "message"}}`); the speech
    service itself often answers an error with an empty or plain-text body, which
    `status_error` shows as it is."""
    return str(body["error"]["message"])


class AzureTts:
    name = "azure"
    needs_voice = True

    def __init__(
        self,
        settings: Settings,
        *,
        timeouts: HttpTimeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._key = settings.azure_speech_key
        self._region = settings.azure_speech_region
        self._base = settings.azure_tts_base_url
        self._timeouts = timeouts or HttpTimeouts()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _url(self) -> str | None:
        if self._base:
            return self._base.rstrip("/") + "/cognitiveservices/v1"
        if self._region:
            return f"https://{self._region}.tts.speech.microsoft.com/cognitiveservices/v1"
        return None

    def configured(self, request: TtsRequest) -> bool:
        return bool(request.api_key or self._key) and self._url() is not None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[bytes]:
        key, url = request.api_key or self._key, self._url()
        if not key or url is None:
            raise TtsError("azure: needs AZURE_SPEECH_KEY (or api_key) and AZURE_SPEECH_REGION")
        if not request.voice:
            raise TtsError("azure: a voice is required")
        lang = language_of(request.voice, request.language)
        log.debug("azure tts: voice %s (%s), %d chars", request.voice, lang, len(request.text))
        if self._client is None:
            self._client = new_client(self._timeouts, self._transport)
        http_request = self._client.build_request(
            "POST",
            url,
            content=ssml(request.text, request.voice, lang).encode(),
            headers={
                "Ocp-Apim-Subscription-Key": key,
                "Content-Type": "application/ssml+xml",
                "X-Microsoft-OutputFormat": OUTPUT_FORMAT,
                "User-Agent": USER_AGENT,
            },
        )
        async for chunk in stream_pcm(
            self._client,
            http_request,
            provider="azure",
            timeouts=self._timeouts,
            read_error=_read_error,
        ):
            yield chunk
