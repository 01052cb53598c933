"""Deepgram Aura text-to-speech: the REST speak endpoint, asked for headerless 16 kHz PCM16.

`POST {base}/v1/speak?model=<voice>&encoding=linear16&sample_rate=16000&container=none` with
`Authorization: Token <key>` and `{"text": ...}`; the answer is streamed audio. `voice` is the
model name (`aura-2-thalia-en`); `model_id` and `language` have no meaning here (the model
names its language). Errors: `{"err_code", "err_msg"}` or the newer
`{"category", "message", "details"}`; 429 and 5xx may be retried.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx

from callboard.config import Settings
from callboard.speech.tts.base import TtsError, TtsRequest
from callboard.speech.tts.cloud_http import HttpTimeouts, new_client, stream_pcm

log = logging.getLogger(__name__)

# Always all three: the documented defaults contradict each other (linear16/wav/24000 vs mp3),
# and without container=none a WAV header would precede the samples.
AUDIO_PARAMS = {"encoding": "linear16", "sample_rate": "16000", "container": "none"}


class DeepgramTts:
    name = "deepgram"
    needs_voice = True

    def __init__(
        self,
        settings: Settings,
        *,
        timeouts: HttpTimeouts | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = settings.deepgram_base_url.rstrip("/")
        self._key = settings.deepgram_api_key
        self._timeouts = timeouts or HttpTimeouts()
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def configured(self, request: TtsRequest) -> bool:
        return bool(request.api_key or self._key)

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[bytes]:
        key = request.api_key or self._key
        if not key:
            raise TtsError("no deepgram API key provided")
        if not request.voice or not request.voice.strip():
            raise TtsError("deepgram needs a voice (the Aura model name)")
        if self._client is None:
            self._client = new_client(self._timeouts, self._transport)
        model = request.voice.strip()
        http_request = self._client.build_request(
            "POST",
            f"{self._base}/v1/speak",
            params={"model": model, **AUDIO_PARAMS},
            # The scheme is case-insensitive (RFC 9110); `Token` is how Deepgram documents it.
            headers={"Authorization": f"Token {key}"},
            json={"text": request.text},
        )
        log.debug("deepgram: model %s, %d characters", model, len(request.text))
        async for chunk in stream_pcm(
            self._client,
            http_request,
            provider=self.name,
            timeouts=self._timeouts,
            read_error=read_error,
        ):
            yield chunk

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def read_error(body: Any) -> str | None:
    """The message of a Deepgram error body, in either of its shapes."""
    if not isinstance(body, dict):
        return None
    message = body.get("err_msg") or body.get("message")
    details = body.get("details")
    if message and isinstance(details, str) and details and details != message:
        return f"{message}: {details}"
    message = message or details or body.get("err_code") or body.get("category")
    return str(message) if message else None
