"""Google Cloud Text-to-Speech v1 (`POST {base}/v1/text:synthesize`) as a TTS provider.

One unary request per synthesis: LINEAR16 at 16 kHz, answered as JSON whose base64
`audioContent` is a WAV file; the RIFF chunks are walked to `data` (the header is not assumed to
be 44 bytes) and the PCM is yielded in slices so the caller can start playing at once.

Credentials: an API key (the request's `api_key`, else `GOOGLE_API_KEY`) goes in `?key=`;
without one, Application Default Credentials through google-auth, if that package is installed.
A choice: `configured()` is always True, because API-NOTES says google (like aws) uses its own
credential chain and never answers 503, and ADC can only be known to work by trying. With
neither a key nor google-auth, the synthesis fails at once with a clear, final `TtsError`
(surfacing as `tts.error`) instead of reaching Google unauthenticated; `has_credentials()` tells
the two cases apart for anyone who wants to know beforehand.

Voices: a full name such as `en-US-Neural2-F` carries its language (the first two segments);
a Gemini-TTS short name such as `Kore` needs the request's `language`, and may take `prompt`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx

from callboard.config import Settings
from callboard.speech.tts.base import SAMPLE_RATE, TtsError, TtsRequest
from callboard.speech.tts.cloud_http import (
    HttpTimeouts,
    ProviderHttpError,
    new_client,
    status_error,
    transport_error,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 6400  # 200 ms of PCM16 at 16 kHz per yielded slice
_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _adc_available() -> bool:
    try:
        import google.auth  # noqa: F401  (optional dependency)
    except ImportError:
        return False
    return True


def language_of(voice: str, language: str | None) -> str:
    """The languageCode to send: the request's, else a full voice name's first two segments."""
    if language:
        return language
    parts = voice.split("-")
    if len(parts) >= 3 and all(parts[:3]):
        return f"{parts[0]}-{parts[1]}"
    raise TtsError(
        f"google voice {voice!r} is a short (Gemini-TTS) name: give `language` (e.g. en-US)"
    )


def wav_pcm(data: bytes) -> bytes:
    """PCM16 mono 16 kHz samples of a WAV file (walks the RIFF chunks to `data`).

    Bytes without a RIFF header are taken as headerless PCM (the `PCM` encoding)."""
    if data[:4] != b"RIFF":
        return data[: len(data) - len(data) % 2]
    if len(data) < 12 or data[8:12] != b"WAVE":
        raise TtsError("google: audioContent is RIFF but not WAVE")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt " and size >= 16 and body + 16 <= len(data):
            fmt = struct.unpack_from("<HHIIHH", data, body)
        elif cid == b"data":
            if fmt is None:
                raise TtsError("google: WAV has no fmt chunk before data")
            tag, channels, rate, _, _, bits = fmt
            # 0xFFFE is WAVE_FORMAT_EXTENSIBLE, which still carries integer PCM here.
            if tag not in (1, 0xFFFE) or channels != 1 or rate != SAMPLE_RATE or bits != 16:
                raise TtsError(
                    f"google: unexpected WAV format (tag {tag}, {channels} ch, {rate} Hz, "
                    f"{bits} bit); asked for 16 kHz mono LINEAR16"
                )
            # A streamed WAV may carry 0 or 0xFFFFFFFF as the size: take what is there.
            end = len(data) if size in (0, 0xFFFFFFFF) else min(len(data), body + size)
            pcm = data[body:end]
            return pcm[: len(pcm) - len(pcm) % 2]
        pos = body + size + (size & 1)  # chunks are padded to an even length
    raise TtsError("google: WAV has no data chunk")


def _read_error(body: Any) -> str | None:
    """`STATUS: message` from Google's error JSON (`{"error": {"code", "message", "status"}}`)."""
    err = body["error"]
    status = err.get("status")
    return f"{status}: {err['message']}" if status else str(err["message"])


class GoogleTts:
    name = "google"
    needs_voice = True

    def __init__(
        self,
        settings: Settings,
        *,
        timeouts: HttpTimeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = settings.google_tts_base_url.rstrip("/")
        self._key = settings.google_api_key
        self._timeouts = timeouts or HttpTimeouts()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._adc: Any = None  # google.auth credentials, loaded at first use
        self._adc_lock = asyncio.Lock()

    def configured(self, request: TtsRequest) -> bool:
        return True  # never a 503: a missing credential is a TtsError at synthesis

    def has_credentials(self, request: TtsRequest) -> bool:
        """A key, or google-auth to look for Application Default Credentials with."""
        return bool(request.api_key or self._key) or _adc_available()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _body(self, request: TtsRequest) -> dict[str, Any]:
        if not request.voice:
            raise TtsError("google: a voice is required")
        text_input: dict[str, str] = {"text": request.text}
        if request.prompt:
            text_input["prompt"] = request.prompt
        voice: dict[str, str] = {
            "languageCode": language_of(request.voice, request.language),
            "name": request.voice,
        }
        if request.model_id:
            voice["modelName"] = request.model_id
        return {
            "input": text_input,
            "voice": voice,
            "audioConfig": {"audioEncoding": "LINEAR16", "sampleRateHertz": SAMPLE_RATE},
        }

    async def _auth(self, request: TtsRequest) -> tuple[dict[str, str], dict[str, str]]:
        """(query params, headers) that authenticate this request."""
        key = request.api_key or self._key
        if key:
            return {"key": key}, {}
        if not _adc_available():
            raise TtsError(
                "google: no credentials: pass api_key, set GOOGLE_API_KEY, or install "
                "google-auth and configure Application Default Credentials"
            )
        return {}, await self._adc_headers()

    async def _adc_headers(self) -> dict[str, str]:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests

        def refresh(creds: Any) -> Any:
            if creds is None:
                creds, _ = google.auth.default(scopes=[_SCOPE])
            if not creds.valid:
                creds.refresh(google.auth.transport.requests.Request())
            return creds

        async with self._adc_lock:
            try:
                # Finding and refreshing credentials does blocking I/O: keep it off the loop.
                self._adc = await asyncio.to_thread(refresh, self._adc)
            except google.auth.exceptions.TransportError as exc:
                raise TtsError(
                    f"google: credentials refresh failed: {exc}", transient=True
                ) from exc
            except google.auth.exceptions.GoogleAuthError as exc:
                raise TtsError(f"google: Application Default Credentials: {exc}") from exc
        headers = {"Authorization": f"Bearer {self._adc.token}"}
        project = getattr(self._adc, "quota_project_id", None)
        if project:
            headers["x-goog-user-project"] = project
        return headers

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[bytes]:
        body = self._body(request)
        params, headers = await self._auth(request)
        log.debug("google tts: voice %s, %d chars", request.voice, len(request.text))
        if self._client is None:
            self._client = new_client(self._timeouts, self._transport)
        raw = await self._fetch(
            self._client,
            self._client.build_request(
                "POST",
                f"{self._base}/v1/text:synthesize",
                params=params,
                headers=headers,
                json=body,
            ),
        )
        pcm = self._decode(raw)
        if not pcm:  # as cloud_http.stream_pcm: nothing to play is a failure
            raise TtsError("google: the answer held no audio")
        log.debug("google tts: %d bytes of audio", len(pcm))
        for pos in range(0, len(pcm), CHUNK_BYTES):
            yield pcm[pos : pos + CHUNK_BYTES]

    async def _fetch(self, client: httpx.AsyncClient, request: httpx.Request) -> bytes:
        """The whole answer body: the status line within the first-byte deadline, then no gap
        between body chunks longer than the between-chunks one. Errors never show the URL
        (it may carry the key)."""
        timeouts = self._timeouts
        try:
            async with asyncio.timeout(timeouts.first_byte):
                response = await client.send(request, stream=True)
        except TimeoutError:
            raise ProviderHttpError(
                f"google: no answer within {timeouts.first_byte:g} s", transient=True
            ) from None
        except httpx.HTTPError as exc:
            raise transport_error("google", exc) from None
        parts: list[bytes] = []
        try:
            chunks = response.aiter_bytes()  # decoded: Google may gzip
            while True:
                async with asyncio.timeout(timeouts.between_chunks):
                    part = await anext(chunks, None)
                if part is None:
                    break
                parts.append(part)
        except TimeoutError:
            raise ProviderHttpError(
                f"google: the answer stalled for {timeouts.between_chunks:g} s", transient=True
            ) from None
        except httpx.HTTPError as exc:
            raise transport_error("google", exc) from None
        finally:
            await response.aclose()
        raw = b"".join(parts)
        if not response.is_success:
            raise status_error("google", response, raw, _read_error)
        return raw

    @staticmethod
    def _decode(raw: bytes) -> bytes:
        try:
            content = json.loads(raw)["audioContent"]
            audio = base64.b64decode(content, validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise TtsError(f"google: malformed answer ({type(exc).__name__})") from None
        return wav_pcm(audio)
