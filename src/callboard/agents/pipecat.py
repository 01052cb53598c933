"""A self-hosted Pipecat bot: we connect as the client of its WebSocket server transport and
speak its protobuf frames (pipecat_frames.py).

The call's audio goes as 16 kHz mono AudioRawFrames of 20 ms (the bot's default
input rate; the transport does not resample); the bot's audio comes at the rate each frame
states (24 kHz by default). An InterruptionFrame from the bot (pipecat 1.3 and later) flushes its
queued speech. Transcripts come only through RTVI messages, when the bot runs RTVI: a final
`user-transcription` and the bot's `bot-output` / `bot-transcription` texts. A message is
injected as a TranscriptionFrame, which standard user aggregators take as the caller's words.
Pipecat has no conversation id: the websocket URL stands for it (as VoiceBlender does).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import numpy as np
from websockets.typing import Data

from callboard.agents import pipecat_frames as frames
from callboard.agents.base import SAMPLE_RATE, AgentError, AgentLink, pcm_array, pcm_bytes
from callboard.agents.socket import AgentSocket, bridge, open_socket, send_now

log = logging.getLogger(__name__)

PROVIDER = "pipecat"


class PipecatClient:
    provider = PROVIDER

    def __init__(self, websocket_url: str) -> None:
        self.url = websocket_url
        self._socket: AgentSocket | None = None

    async def run(self, link: AgentLink) -> None:
        self._socket = socket = await open_socket(self.url, PROVIDER)
        link.connected(self.url)
        await bridge(socket, PROVIDER, link, _encode, lambda m: self._handle(link, m))

    def _handle(self, link: AgentLink, message: Data) -> None:
        if isinstance(message, str):
            raise ValueError("a text frame; the protobuf serializer sends binary frames")
        frame = frames.decode(message)
        if isinstance(frame, frames.Audio):
            if frame.sample_rate <= 0:
                raise ValueError("audio without a sample rate")
            pcm = pcm_array(frame.audio)
            if frame.num_channels > 1:  # keep the first channel
                pcm = pcm[: len(pcm) - len(pcm) % frame.num_channels][:: frame.num_channels]
            link.play(pcm, frame.sample_rate)
        elif isinstance(frame, frames.Interruption):
            link.interrupt()
        elif isinstance(frame, frames.Message):
            _rtvi(link, frame.data)

    async def inject(self, message: str) -> None:
        if self._socket is None:
            raise AgentError("the Pipecat bot is not connected yet")
        stamp = datetime.now(UTC).isoformat()
        send_now(self._socket, frames.encode_transcription(message, "callboard", stamp), PROVIDER)

    async def goodbye(self) -> None:
        return None  # closing the socket is how a Pipecat client leaves


def _encode(frame: np.ndarray) -> bytes:
    return frames.encode_audio(pcm_bytes(frame), SAMPLE_RATE, 1)


def _rtvi(link: AgentLink, data: Any) -> None:
    if not isinstance(data, dict) or data.get("label") != "rtvi-ai":
        return
    kind = data.get("type")
    body = data.get("data")
    if not isinstance(body, dict):
        return
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return
    if kind == "user-transcription" and body.get("final", True):
        link.user_transcript(text.strip())
    elif kind in ("bot-output", "bot-transcription"):
        link.agent_response(text.strip())
