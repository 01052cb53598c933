"""Real Pipecat bots (pipecat-ai 1.14) for Callboard's Pipecat client to call: the bot is the
WebSocket server (`SingleClientWebsocketServerTransport`, one client at a time) and every
message, both ways, is one protobuf `pipecat.Frame` (`ProtobufFrameSerializer`).

    python -m tests.helpers.pipecat_bots --kind tone|echo --port P [--count N]

prints one line `ready P P+1 ... P+N-1` on stdout once every transport listens, then serves
until SIGTERM/SIGINT. `--count N` runs N independent pipelines (one per port) in this process.

- `echo`: input audio comes back as output audio, bit for bit at 16 kHz (the pipeline's rate
  both ways; the output transport resamples audio sent at another rate to 16 kHz), in the
  transport's 40 ms chunks; a text or transcription frame comes back as the message
  `{"echo": text}`. No RTVI.
- `tone`: the agent stand-ins' ToneAgent (tests/helpers/standins/agent_common.py) behind a real
  pipeline. Input 16 kHz, output 24 kHz (pipecat's default, so the client resamples). A burst
  of a tone is answered with the RTVI messages `user-transcription` ("tone <Hz>") and
  `bot-output` ("I heard tone <Hz>"), in pipecat 1.14's own shapes, then `--reply-seconds` of
  a `--reply-frequency` sine. A burst heard while the reply is still playing is a barge-in:
  the bot interrupts the way pipecat's own user-turn processors do
  (`FrameProcessor.broadcast_interruption`), so the transport drops the queued reply and sends
  the client an `InterruptionFrame`. A text or transcription frame from the client is an
  injection: the message `{"injected": text}`, then a reply. `--greeting` speaks a reply as
  soon as a client connects.

Messages go out as `OutputTransportMessageUrgentFrame`s, as pipecat's RTVIProcessor sends
its own: at once, not queued behind the bot's audio and never dropped by an interruption.
"""

# ruff: noqa: E402 - loguru is quietened before pipecat's import-time banner

from __future__ import annotations

import sys
from typing import Any

from loguru import logger


def quiet_shutdown(record: Any) -> bool:
    """Drop the output transport's one warning per pipeline at shutdown: it hands the
    serializer its CancelFrame/EndFrame, which the protobuf schema cannot carry."""
    message = record["message"]
    return not (
        record["name"] == "pipecat.serializers.protobuf"
        and ("CancelFrame" in message or "EndFrame" in message)
    )


if __name__ == "__main__":
    logger.remove()
    logger.add(sys.stderr, level="WARNING", filter=quiet_shutdown)

import argparse
import asyncio
import contextlib
import json
import select
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import websockets

with warnings.catch_warnings():
    # pipecat 1.14 imports audioop and websockets' legacy server classes, both deprecated.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pipecat.frames.frames import (
        Frame,
        InputAudioRawFrame,
        InterruptionFrame,
        OutputAudioRawFrame,
        OutputTransportMessageFrame,
        OutputTransportMessageUrgentFrame,
        TextFrame,
        TTSAudioRawFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
    )
    from pipecat.frames.protobufs import frames_pb2
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.processors.frameworks.rtvi import models as rtvi
    from pipecat.serializers.protobuf import ProtobufFrameSerializer
    from pipecat.transports.websocket.server import (
        SingleClientWebsocketServerParams,
        SingleClientWebsocketServerTransport,
    )
    from pipecat.utils.time import time_now_iso8601
    from pipecat.workers.runner import WorkerRunner

from tests.helpers.standins.agent_common import (
    AgentKnobs,
    AgentText,
    Interrupt,
    Reply,
    ToneAgent,
    UserTranscript,
)

# The generated protobuf module builds its classes at import: type checkers cannot see them.
ProtoFrame: Any = frames_pb2.Frame  # type: ignore[attr-defined]

HOST = "127.0.0.1"
IN_RATE = 16000  # what both bots expect from the client (pipecat's default input rate)
TONE_OUT_RATE = 24000  # pipecat's default output rate
ECHO_OUT_RATE = 16000
READY_TIMEOUT = 10.0  # s (plus 0.5 s a pipeline) to listen on every port; else one is taken


def user_transcription_message(text: str) -> dict[str, Any]:
    """What pipecat's RTVIObserver sends for a final TranscriptionFrame (protocol 2.2.0)."""
    data = rtvi.UserTranscriptionMessageData(
        text=text, user_id="", timestamp=time_now_iso8601(), final=True
    )
    return rtvi.UserTranscriptionMessage(data=data).model_dump(exclude_none=True)


def bot_output_message(text: str) -> dict[str, Any]:
    """What pipecat's RTVIObserver sends for a sentence the bot is about to speak."""
    data = rtvi.BotOutputMessageData(
        text=text,
        output_type="sentence",
        will_be_spoken=True,
        spoken_status="new",
        spoken_progress=rtvi.SpokenProgressData(accumulated_text="", remaining_text=text),
    )
    return rtvi.BotOutputMessage(data=data).model_dump(exclude_none=True)


class BotProcessor(FrameProcessor):
    """What both bots share: a clean slate for each client.

    Output still queued for a client that left must not reach the next one, so leaving
    interrupts the pipeline. The transport runs its connect and disconnect handlers as
    separate tasks, and a client that closes and reconnects at once can have its new
    connection handled before its old one's departure: then the connect interrupts instead
    (the new client then starts with an InterruptionFrame) and the late departure does
    nothing, so it cannot cut the new client's greeting.
    """

    def __init__(self) -> None:
        super().__init__()
        self._client: object | None = None
        self._turnover = asyncio.Lock()

    async def client_connected(self, websocket: object) -> None:
        async with self._turnover:
            stale = self._client is not None
            self._client = websocket
            if stale:
                await self.broadcast_interruption()
            await self.on_client()

    async def client_disconnected(self, websocket: object) -> None:
        async with self._turnover:
            if websocket is not self._client:
                return
            self._client = None
            await self.broadcast_interruption()
            await self.on_client_gone()

    async def on_client(self) -> None:
        pass

    async def on_client_gone(self) -> None:
        pass

    async def send_message(self, message: dict[str, Any]) -> None:
        await self.push_frame(OutputTransportMessageUrgentFrame(message=message))


class EchoBot(BotProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            echo = OutputAudioRawFrame(
                audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels
            )
            await self.push_frame(echo)
        elif isinstance(frame, TextFrame) and direction == FrameDirection.DOWNSTREAM:
            # TranscriptionFrame is a TextFrame too. Queued with the audio, as the notes say.
            await self.push_frame(OutputTransportMessageFrame(message={"echo": frame.text}))
        else:
            await self.push_frame(frame, direction)


class ToneBot(BotProcessor):
    def __init__(self, knobs: AgentKnobs) -> None:
        super().__init__()
        self.knobs = knobs
        self._agent = self._new_agent()
        self._warned_rate = False

    def _new_agent(self) -> ToneAgent:
        return ToneAgent(IN_RATE, TONE_OUT_RATE, self.knobs)

    async def on_client(self) -> None:
        self.knobs.connections += 1
        self.knobs.note("connected")
        self._agent = self._new_agent()
        if self.knobs.greeting:
            await self._speak(self._agent.speak())

    async def on_client_gone(self) -> None:
        self.knobs.note("disconnected")
        self._agent = self._new_agent()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            await self._hear(frame)
        elif isinstance(frame, TextFrame) and direction == FrameDirection.DOWNSTREAM:
            self.knobs.injected.append(frame.text)
            self.knobs.note("injected", frame.text)
            await self.send_message({"injected": frame.text})
            await self._speak(self._agent.speak())
        else:
            if isinstance(frame, InterruptionFrame):
                self._agent.playing_until = 0.0  # the client (or we) cut the reply short
            await self.push_frame(frame, direction)

    async def _hear(self, frame: InputAudioRawFrame) -> None:
        if frame.sample_rate != IN_RATE:
            # The transport does not resample: a real bot would mishear this, so we ignore it.
            if not self._warned_rate:
                self._warned_rate = True
                logger.warning(f"{self}: ignoring input audio at {frame.sample_rate} Hz")
            return
        samples = np.frombuffer(frame.audio, dtype="<i2")
        if frame.num_channels > 1:
            samples = samples[:: frame.num_channels]
        for action in self._agent.feed(samples):
            if isinstance(action, Interrupt):
                await self.broadcast_interruption()
            elif isinstance(action, UserTranscript):
                await self.send_message(user_transcription_message(action.text))
            elif isinstance(action, AgentText):
                await self.send_message(bot_output_message(action.text))
            elif isinstance(action, Reply):
                await self._speak(action)

    async def _speak(self, reply: Reply) -> None:
        # As a TTS service frames its audio: the output transport then tracks the bot as
        # speaking and flushes the last partial 40 ms chunk at TTSStoppedFrame.
        await self.push_frame(TTSStartedFrame())
        for chunk in reply.chunks:
            await self.push_frame(TTSAudioRawFrame(chunk, TONE_OUT_RATE, 1))
        await self.push_frame(TTSStoppedFrame())


def build_worker(
    processor: BotProcessor,
    port: int,
    out_rate: int,
    on_ready: Callable[[], None],
    host: str = HOST,
) -> PipelineWorker:
    transport = SingleClientWebsocketServerTransport(
        params=SingleClientWebsocketServerParams(
            serializer=ProtobufFrameSerializer(),
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_in_sample_rate=IN_RATE,
            audio_out_sample_rate=out_rate,
        ),
        host=host,
        port=port,
    )

    @transport.event_handler("on_websocket_ready")
    async def _ready(_transport: Any) -> None:
        on_ready()

    @transport.event_handler("on_client_connected")
    async def _connected(_transport: Any, websocket: Any) -> None:
        await processor.client_connected(websocket)

    @transport.event_handler("on_client_disconnected")
    async def _disconnected(_transport: Any, websocket: Any) -> None:
        await processor.client_disconnected(websocket)

    pipeline = Pipeline([transport.input(), processor, transport.output()])
    return PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=out_rate),
        enable_rtvi=False,  # keeps the wire to our own messages
        cancel_on_idle_timeout=False,  # a bot waits for its next caller however long
        idle_timeout_secs=None,
        check_dangling_tasks=False,
    )


# -- The client side, for tests: frames on the wire and a bot in a subprocess -----------------


def audio_frame(pcm: bytes, sample_rate: int = IN_RATE, num_channels: int = 1) -> bytes:
    """One WS message: caller audio (becomes an InputAudioRawFrame at the rate we declare)."""
    frame = ProtoFrame()
    frame.audio.audio = pcm
    frame.audio.sample_rate = sample_rate
    frame.audio.num_channels = num_channels
    return frame.SerializeToString()


def text_frame(text: str) -> bytes:
    frame = ProtoFrame()
    frame.text.text = text
    return frame.SerializeToString()


def transcription_frame(text: str, user_id: str = "caller") -> bytes:
    frame = ProtoFrame()
    frame.transcription.text = text
    frame.transcription.user_id = user_id
    frame.transcription.timestamp = time_now_iso8601()
    return frame.SerializeToString()


def interruption_frame() -> bytes:
    frame = ProtoFrame()
    frame.interruption.SetInParent()  # an empty message still selects the oneof
    return frame.SerializeToString()


@dataclass(frozen=True)
class Received:
    """One message from the bot, as the client sees it."""

    at: float  # monotonic time of arrival
    kind: str  # "audio", "message", "interruption" (the bot sends nothing else)
    audio: bytes = b""
    sample_rate: int = 0
    num_channels: int = 0
    message: Any = None  # the parsed JSON of a "message"


def parse_frame(data: bytes, at: float | None = None) -> Received:
    frame = ProtoFrame.FromString(data)
    kind = frame.WhichOneof("frame") or ""
    at = time.monotonic() if at is None else at
    if kind == "audio":
        a = frame.audio
        return Received(at, kind, a.audio, a.sample_rate, a.num_channels)
    if kind == "message":
        return Received(at, kind, message=json.loads(frame.message.data))
    return Received(at, kind)


class BotCall:
    """A raw `websockets` client on a bot: everything received is kept, in order."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.received: list[Received] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> BotCall:
        self._ws = await websockets.connect(self.url, max_size=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                self.received.append(parse_frame(data))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.closed.set()
            self._changed.set()

    async def send(self, data: bytes) -> None:
        await self._ws.send(data)

    async def play(self, pcm: bytes, rate: int = IN_RATE, frame_ms: int = 20) -> None:
        """Send `pcm` in `frame_ms` frames at real time, as a caller's audio arrives."""
        size = rate * frame_ms // 1000 * 2
        start = time.monotonic()
        for index, offset in enumerate(range(0, len(pcm), size)):
            await self.send(audio_frame(pcm[offset : offset + size], rate))
            delay = start + (index + 1) * frame_ms / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def wait_for(
        self, predicate: Callable[[Received], bool], timeout: float, after: int = 0
    ) -> int:
        """Index of the first message from index `after` on that matches; TimeoutError if
        none arrives in `timeout` s (or the socket closes first)."""
        deadline = time.monotonic() + timeout
        while True:
            for index in range(after, len(self.received)):
                if predicate(self.received[index]):
                    return index
            left = deadline - time.monotonic()
            if left <= 0 or self.closed.is_set():
                raise TimeoutError(f"nothing matched in {timeout} s; got {self.summary()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def wait_quiet(
        self, kind: str = "audio", quiet: float = 1.0, timeout: float = 20.0
    ) -> None:
        """Until no `kind` message has arrived for `quiet` s (at least one must have come)."""
        deadline = time.monotonic() + timeout
        await self.wait_for(lambda r: r.kind == kind, timeout)
        while time.monotonic() < deadline:
            last = max(r.at for r in self.received if r.kind == kind)
            if time.monotonic() - last >= quiet:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{kind} still arriving after {timeout} s")

    def messages(self, after: int = 0) -> list[Any]:
        return [r.message for r in self.received[after:] if r.kind == "message"]

    def audio(self, after: int = 0, until: int | None = None) -> tuple[bytes, int]:
        """The bot audio received in [after, until), joined, and its (single) rate."""
        frames = [r for r in self.received[after:until] if r.kind == "audio"]
        rates = {r.sample_rate for r in frames}
        if len(rates) > 1:
            raise AssertionError(f"audio at several rates: {rates}")
        return b"".join(r.audio for r in frames), rates.pop() if rates else 0

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for r in self.received:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        return f"{kinds} messages={self.messages()}"


class BotProcess:
    """A bot in a subprocess that prints `ready <port> ...` on stdout once it listens."""

    def __init__(self, command: list[str], ready_timeout: float = 30.0) -> None:
        self.command = command
        self.ready_timeout = ready_timeout
        self.ports: list[int] = []
        self.proc: subprocess.Popen[str] | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    def url(self, index: int = 0) -> str:
        return f"ws://{HOST}:{self.ports[index]}"

    def start(self) -> BotProcess:
        # The bot's stderr is the test's, so pytest shows the bot's log with a failure.
        self.proc = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2]
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("ready "):
                    self.ports = [int(p) for p in line.split()[1:] if p.isdigit()]
                    return self
                if not line and self.proc.poll() is not None:
                    break
        self.stop()
        raise RuntimeError(f"{self.command} did not get ready (exit code {self.proc.returncode})")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not exit in `timeout` s)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


@contextlib.contextmanager
def running_bot(*args: str) -> Iterator[BotProcess]:
    """`python -m tests.helpers.pipecat_bots ARGS...`, stopped (and checked clean) at exit."""
    bot = BotProcess([sys.executable, "-m", "tests.helpers.pipecat_bots", *args]).start()
    try:
        yield bot
    finally:
        code = bot.stop()
    assert code == 0, f"the bot exited with {code}"


def knobs_from(args: argparse.Namespace) -> AgentKnobs:
    return AgentKnobs(
        reply_frequency=args.reply_frequency,
        reply_seconds=args.reply_seconds,
        greeting=args.greeting,
    )


async def serve(args: argparse.Namespace) -> bool:
    """Run the bots until a signal; False if they never all listened (a port in use)."""
    ports = [args.port + i for i in range(args.count)]
    listening: set[int] = set()
    all_ready = asyncio.Event()

    def ready_callback(port: int) -> Callable[[], None]:
        def ready() -> None:
            listening.add(port)
            if len(listening) == len(ports):
                all_ready.set()

        return ready

    workers = []
    for port in ports:
        if args.kind == "echo":
            processor: BotProcessor = EchoBot()
            out_rate = ECHO_OUT_RATE
        else:
            processor = ToneBot(knobs_from(args))
            out_rate = TONE_OUT_RATE
        workers.append(build_worker(processor, port, out_rate, ready_callback(port), args.host))

    runner = WorkerRunner(handle_sigint=False, check_dangling_tasks=False)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(runner.cancel("signal")))
    await runner.add_workers(*workers)

    async def announce() -> None:
        timeout = READY_TIMEOUT + 0.5 * len(ports)
        try:
            await asyncio.wait_for(all_ready.wait(), timeout)
        except TimeoutError:
            missing = sorted(set(ports) - listening)
            logger.error(f"not listening after {timeout} s on ports {missing}")
            await runner.cancel("not ready")
            return
        print("ready " + " ".join(str(p) for p in ports), flush=True)

    announcer = asyncio.create_task(announce())
    try:
        await runner.run()
    finally:
        announcer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await announcer
    return all_ready.is_set()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=["tone", "echo"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1, help="pipelines on ports P..P+N-1")
    parser.add_argument("--host", default=HOST)
    parser.add_argument("--reply-frequency", type=float, default=AgentKnobs.reply_frequency)
    parser.add_argument("--reply-seconds", type=float, default=AgentKnobs.reply_seconds)
    parser.add_argument("--greeting", action="store_true", help="speak first, on connect")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level=args.log_level.upper(), filter=quiet_shutdown)
    if not asyncio.run(serve(args)):
        sys.exit(1)


if __name__ == "__main__":
    main()
