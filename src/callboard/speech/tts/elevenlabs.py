"""ElevenLabs text-to-speech: the streaming endpoint, asked for 16 kHz PCM16.

`POST {base}/v1/text-to-speech/{voice_id}/stream?output_format=pcm_16000` with `xi-api-key`
and a JSON body (`text`, `model_id`, `language_code`); the answer is headerless PCM, streamed
while it is generated. `voice` is a voice id, or a name looked up once per key through
`GET /v2/voices?search=` (ElevenLabs' path takes only ids). Errors come as `{"detail": ...}`
before any audio; the status decides whether a retry may help (429 and 5xx).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from callboard.config import Settings
from callboard.speech.tts.base import TtsError, TtsRequest
from callboard.speech.tts.cloud_http import (
    HttpTimeouts,
    ProviderHttpError,
    fetch_json,
    new_client,
    stream_pcm,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "eleven_multilingual_v2"
OUTPUT_FORMAT = "pcm_16000"
_VOICE_ID = re.compile(r"[A-Za-z0-9]{20}")  # ElevenLabs voice ids: 20 letters and digits
_SEARCH_PAGE_SIZE = 100  # the most /v2/voices gives per page
_SEARCH_MAX_PAGES = 5  # a search narrows the list; more pages than this is a runaway


class ElevenLabsTts:
    name = "elevenlabs"
    needs_voice = True

    def __init__(
        self,
        settings: Settings,
        *,
        timeouts: HttpTimeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = settings.elevenlabs_base_url.rstrip("/")
        self._key = settings.elevenlabs_api_key
        self._timeouts = timeouts or HttpTimeouts()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        # (digest of the key, folded name) -> voice id: voices belong to an account, so a
        # name may mean another voice, or none, under another key.
        self._voice_ids: dict[tuple[str, str], str] = {}

    def configured(self, request: TtsRequest) -> bool:
        return bool(request.api_key or self._key)

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[bytes]:
        key = request.api_key or self._key
        if not key:
            raise TtsError("no elevenlabs API key provided")
        if not request.voice or not request.voice.strip():
            raise TtsError("elevenlabs needs a voice")
        client = self._http()
        voice = request.voice.strip()
        voice_id = await self._voice_id(client, key, voice)
        body: dict[str, Any] = {"text": request.text, "model_id": request.model_id or DEFAULT_MODEL}
        if request.language:
            body["language_code"] = _iso_639_1(request.language)
        http_request = client.build_request(
            "POST",
            f"{self._base}/v1/text-to-speech/{quote(voice_id, safe='')}/stream",
            params={"output_format": OUTPUT_FORMAT},
            headers={"xi-api-key": key},
            json=body,
        )
        log.debug(
            "elevenlabs: voice %s, model %s, %d characters",
            voice_id,
            body["model_id"],
            len(request.text),
        )
        try:
            async for chunk in stream_pcm(
                client,
                http_request,
                provider=self.name,
                timeouts=self._timeouts,
                read_error=read_error,
            ):
                yield chunk
        except ProviderHttpError as exc:
            if exc.status == 404 and voice_id != voice:  # the named voice has gone: look again
                self._voice_ids.pop((_digest(key), voice.casefold()), None)
            raise

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(self._timeouts, self._transport)
        return self._client

    async def _voice_id(self, client: httpx.AsyncClient, key: str, voice: str) -> str:
        if _VOICE_ID.fullmatch(voice):
            return voice
        cache_key = (_digest(key), voice.casefold())
        found = self._voice_ids.get(cache_key)
        if found is None:
            found = await self._search_voice(client, key, voice)
            self._voice_ids[cache_key] = found
        return found

    async def _search_voice(self, client: httpx.AsyncClient, key: str, name: str) -> str:
        """The first voice whose name is `name` (case-insensitive); names are not unique, and
        the search also matches descriptions and labels, so the match is checked here."""
        wanted = name.casefold()
        token: str | None = None
        for _ in range(_SEARCH_MAX_PAGES):
            params = {"search": name, "page_size": str(_SEARCH_PAGE_SIZE)}
            if token:
                params["next_page_token"] = token
            page = await fetch_json(
                client,
                client.build_request(
                    "GET", f"{self._base}/v2/voices", params=params, headers={"xi-api-key": key}
                ),
                provider=self.name,
                timeouts=self._timeouts,
                read_error=read_error,
            )
            if not isinstance(page, dict) or not isinstance(page.get("voices"), list):
                raise TtsError("elevenlabs: unexpected answer from the voices search")
            for entry in page["voices"]:
                if not isinstance(entry, dict):
                    continue
                voice_id = entry.get("voice_id")
                if str(entry.get("name", "")).strip().casefold() == wanted and voice_id:
                    return str(voice_id)
            token = page.get("next_page_token")
            if not page.get("has_more") or not token:
                break
        raise TtsError(f"elevenlabs: no voice named {name!r}")


def read_error(body: Any) -> str | None:
    """The message of an ElevenLabs error body: `{"detail": {"message": ...}}` (current and
    legacy shapes), or FastAPI's validation list `{"detail": [{"loc": [...], "msg": ...}]}`."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        message = detail.get("message") or detail.get("code") or detail.get("status")
        return str(message) if message else None
    if isinstance(detail, list):
        problems = []
        for item in detail:
            if not isinstance(item, dict):
                continue
            where = ".".join(str(part) for part in item.get("loc", []))
            problems.append(f"{where}: {item.get('msg', 'invalid')}" if where else item.get("msg"))
        return "; ".join(str(p) for p in problems if p) or None
    return None


def _iso_639_1(language: str) -> str:
    """`en-US` -> `en`: ElevenLabs takes the ISO 639-1 code alone."""
    return language.replace("_", "-").split("-", 1)[0].strip().lower()


def _digest(key: str) -> str:
    # The cache keeps no plain key around longer than a request does.
    return hashlib.sha256(key.encode()).hexdigest()[:32]
