"""The disk cache of synthesised speech (TTS_CACHE_ENABLED, TTS_CACHE_DIR,
TTS_CACHE_INCLUDE_API_KEY).

One file per entry, named by a SHA-256 over provider, voice, model, language, prompt and text
(and the API key when asked): a first line with the MIME type, then the raw audio. Entries are
written to a temporary file and renamed, so a crash never leaves half an entry, and they
survive restarts. File work runs in worker threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from callboard.speech.tts.base import TtsRequest

log = logging.getLogger(__name__)

MIME = b"audio/L16;rate=16000;channels=1"


def cache_key(provider: str, request: TtsRequest, include_key: bool) -> str:
    parts = [
        provider,
        request.voice or "",
        request.model_id or "",
        request.language or "",
        request.prompt or "",
        request.text,
    ]
    if include_key:
        parts.append(request.api_key or "")
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()


class TtsCache:
    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pcm"

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._read, key)

    def _read(self, key: str) -> bytes | None:
        try:
            data = self._path(key).read_bytes()
        except OSError:
            return None
        mime, sep, audio = data.partition(b"\n")
        if not sep or mime != MIME:
            log.warning("TTS cache entry %s is not in the expected format: ignored", key[:12])
            return None
        return audio

    async def put(self, key: str, audio: bytes) -> None:
        try:
            await asyncio.to_thread(self._write, key, audio)
        except OSError as exc:
            log.warning("TTS cache write failed: %s", exc)

    def _write(self, key: str, audio: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pcm")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(MIME + b"\n")
                out.write(audio)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
