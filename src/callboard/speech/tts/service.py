"""Text-to-speech as the core uses it: pick the provider, answer from the cache, synthesise
identical concurrent requests once, retry a transient failure with a bounded back-off, and
fill the cache. Yields 16 kHz PCM16 chunks as they come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from callboard.config import Settings
from callboard.speech.registry import ProviderRegistry
from callboard.speech.tts.base import TtsError, TtsProvider, TtsRequest
from callboard.speech.tts.cache import TtsCache, cache_key

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.5, 1.5)  # after the first and second transient failure; then tts.error
CACHE_CHUNK = 3200  # bytes (100 ms) per chunk when playing from the cache


class TtsService(ProviderRegistry[TtsProvider]):
    table = {
        "elevenlabs": ("callboard.speech.tts.elevenlabs", "ElevenLabsTts"),
        "deepgram": ("callboard.speech.tts.deepgram", "DeepgramTts"),
        "google": ("callboard.speech.tts.google", "GoogleTts"),
        "aws": ("callboard.speech.tts.polly", "PollyTts"),
        "azure": ("callboard.speech.tts.azure", "AzureTts"),
        "local": ("callboard.speech.tts.local", "LocalTts"),
    }

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.tts_default_provider)
        self.cache = TtsCache(settings.tts_cache_dir) if settings.tts_cache_enabled else None
        self._in_flight: dict[str, asyncio.Future[bytes | None]] = {}
        self.retry_delays = RETRY_DELAYS

    async def warm_up(self) -> None:
        """TTS_LOCAL_PRELOAD: load the local voice now rather than at the first request."""
        if self.settings.tts_local_preload:
            local = self.provider("local")
            await local.load()  # type: ignore[attr-defined]

    async def stream(self, provider: TtsProvider, request: TtsRequest) -> AsyncIterator[bytes]:
        cache = self.cache
        if cache is None:
            async for chunk in self._synthesize(provider, request):
                yield chunk
            return
        key = cache_key(provider.name, request, self.settings.tts_cache_include_api_key)
        waiting = self._in_flight.get(key)
        if waiting is not None:
            # The same request is being synthesised: play its result, make no second call.
            audio = await asyncio.shield(waiting)
            if audio is not None:
                for chunk in _chunks(audio):
                    yield chunk
                return
        done: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = done  # before the first await: a twin must find it
        parts: list[bytes] = []
        try:
            audio = await cache.get(key)
            if audio is not None:
                log.debug("TTS cache hit %s", key[:12])
                parts.append(audio)
                for chunk in _chunks(audio):
                    yield chunk
            else:
                async for chunk in self._synthesize(provider, request):
                    parts.append(chunk)
                    yield chunk
                audio = b"".join(parts)
                await cache.put(key, audio)
        except BaseException:  # failed or stopped early: nothing cached, twins go on alone
            if self._in_flight.get(key) is done:
                del self._in_flight[key]
            if not done.done():
                done.set_result(None)
            raise
        if self._in_flight.get(key) is done:
            del self._in_flight[key]
        done.set_result(audio)

    async def _synthesize(self, provider: TtsProvider, request: TtsRequest) -> AsyncIterator[bytes]:
        """The provider's stream; a transient failure before any audio is retried."""
        attempt = 0
        while True:
            sent = False
            try:
                async for chunk in provider.synthesize(request):
                    if chunk:
                        sent = True
                        yield chunk
                return
            except TtsError as exc:
                if not exc.transient or sent or attempt >= len(self.retry_delays):
                    raise
                delay = self.retry_delays[attempt]
                attempt += 1
                log.info(
                    "%s TTS failed (%s); retry %d in %.1fs", provider.name, exc, attempt, delay
                )
                await asyncio.sleep(delay)


def _chunks(audio: bytes) -> list[bytes]:
    """Cached audio in 100 ms pieces, as a provider would stream it."""
    return [audio[start : start + CACHE_CHUNK] for start in range(0, len(audio), CACHE_CHUNK)]
