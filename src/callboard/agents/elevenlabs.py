"""ElevenLabs Agents Platform (Conversational AI) over its WebSocket.

With an API key (the seed requires one) the client asks for a signed URL
(`GET /v1/convai/conversation/get-signed-url`, header `xi-api-key`) and opens it: the URL is
opaque and used once. It sends `conversation_initiation_client_data` at once (overrides:
first message and language; dynamic variables), waits for `conversation_initiation_metadata`
(the conversation id and both audio formats: never assumed), and only then streams the call,
as `user_audio_chunk` messages in the input format the agent declared. Every `ping` is
answered with its `event_id`. `interruption` flushes the queued speech and drops any audio
event numbered at or below it that still arrives. Messages are injected as
`contextual_update` (silent context, which the provider now documents); VoiceBlender answered
501 here.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from websockets.typing import Data

from callboard.agents.base import (
    OPEN_TIMEOUT,
    SAMPLE_RATE,
    AgentError,
    AgentLink,
    json_or_none,
    pcm_array,
    pcm_bytes,
)
from callboard.agents.socket import AgentSocket, bridge, open_socket, send_now
from callboard.media.g711 import ulaw_decode, ulaw_encode
from callboard.media.resample import Resampler
from callboard.outbound_guard import guarded_client

log = logging.getLogger(__name__)

PROVIDER = "elevenlabs"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"


@dataclass(frozen=True)
class ElevenLabsOptions:
    agent_id: str
    first_message: str | None = None
    language: str | None = None
    dynamic_variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AudioFormat:
    """One of ElevenLabs' `pcm_<rate>` / `ulaw_8000` names."""

    rate: int
    ulaw: bool

    @classmethod
    def parse(cls, name: object) -> AudioFormat:
        if name == "ulaw_8000":
            return cls(8000, True)
        if isinstance(name, str) and name.startswith("pcm_") and name[4:].isdigit():
            return cls(int(name[4:]), False)
        raise AgentError(f"elevenlabs: unknown audio format {name!r}")

    def decode(self, data: bytes) -> np.ndarray:
        return ulaw_decode(data) if self.ulaw else pcm_array(data)

    def encode(self, pcm: np.ndarray) -> bytes:
        return ulaw_encode(pcm) if self.ulaw else pcm_bytes(pcm)


def initiation(options: ElevenLabsOptions) -> dict[str, Any]:
    message: dict[str, Any] = {"type": "conversation_initiation_client_data"}
    agent: dict[str, Any] = {}
    if options.first_message:
        agent["first_message"] = options.first_message
    if options.language:
        agent["language"] = options.language
    if agent:
        message["conversation_config_override"] = {"agent": agent}
    if options.dynamic_variables:
        message["dynamic_variables"] = dict(options.dynamic_variables)
    return message


class ElevenLabsClient:
    provider = PROVIDER

    def __init__(self, base_url: str, api_key: str, options: ElevenLabsOptions) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.options = options
        self._socket: AgentSocket | None = None
        self._link: AgentLink | None = None
        self._input: AudioFormat | None = None  # known once the metadata came
        self._output: AudioFormat | None = None
        self._cut = -1  # audio events numbered up to this were interrupted
        self._to_agent: Resampler | None = None

    async def _signed_url(self) -> str:
        url = f"{self.base_url}{SIGNED_URL_PATH}?agent_id={quote(self.options.agent_id)}"
        try:
            async with guarded_client(timeout=OPEN_TIMEOUT) as http:
                response = await http.get(url, headers={"xi-api-key": self.api_key})
        except httpx.HTTPError as exc:
            raise AgentError(f"elevenlabs: cannot get a signed URL: {exc!r}") from None
        if response.status_code != 200:
            raise AgentError(f"elevenlabs: {_error_text(response)} (HTTP {response.status_code})")
        signed = json_or_none(response.text)
        if not isinstance(signed, dict) or not isinstance(signed.get("signed_url"), str):
            raise AgentError("elevenlabs: the signed-URL answer has no signed_url")
        return str(signed["signed_url"])

    async def run(self, link: AgentLink) -> None:
        self._link = link
        url = await self._signed_url()
        self._socket = socket = await open_socket(url, PROVIDER)
        send_now(socket, json.dumps(initiation(self.options)), PROVIDER)
        await bridge(socket, PROVIDER, link, self._encode, self._handle)

    def _encode(self, frame: np.ndarray) -> Data | None:
        fmt = self._input
        if fmt is None:
            return None  # audio only after the metadata: the format is the agent's to say
        if fmt.rate != SAMPLE_RATE:
            if self._to_agent is None or self._to_agent.out_rate != fmt.rate:
                self._to_agent = Resampler(SAMPLE_RATE, fmt.rate)
            frame = self._to_agent.process(frame)
        chunk = base64.b64encode(fmt.encode(frame)).decode()
        return '{"user_audio_chunk": "' + chunk + '"}'  # base64 needs no JSON escaping

    def _handle(self, message: Data) -> None:
        link = self._link
        assert link is not None
        data = json.loads(message)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kind = data.get("type")
        if kind == "audio":
            event = data.get("audio_event") or {}
            if self._output is None or int(event.get("event_id", 0)) <= self._cut:
                return
            audio = base64.b64decode(event.get("audio_base_64") or "", validate=True)
            link.play(self._output.decode(audio), self._output.rate)
        elif kind == "ping":
            event = data.get("ping_event") or {}
            assert self._socket is not None
            send_now(
                self._socket,
                json.dumps({"type": "pong", "event_id": event.get("event_id")}),
                PROVIDER,
            )
        elif kind == "interruption":
            event = data.get("interruption_event") or {}
            self._cut = max(self._cut, int(event.get("event_id", 0)))
            link.interrupt()
        elif kind == "conversation_initiation_metadata":
            meta = data.get("conversation_initiation_metadata_event") or {}
            self._output = AudioFormat.parse(meta.get("agent_output_audio_format", "pcm_16000"))
            self._input = AudioFormat.parse(meta.get("user_input_audio_format", "pcm_16000"))
            link.connected(meta.get("conversation_id"))
        elif kind == "user_transcript":
            text = (data.get("user_transcription_event") or {}).get("user_transcript")
            if isinstance(text, str) and text.strip():
                link.user_transcript(text.strip())
        elif kind == "agent_response":
            text = (data.get("agent_response_event") or {}).get("agent_response")
            if isinstance(text, str) and text.strip():
                link.agent_response(text.strip())
        # Other types (vad_score, tentative responses, tool calls, corrections) are not ours.

    async def inject(self, message: str) -> None:
        if self._socket is None or self._input is None:
            raise AgentError("the ElevenLabs conversation has not started yet")
        send_now(self._socket, json.dumps({"type": "contextual_update", "text": message}), PROVIDER)

    async def goodbye(self) -> None:
        return None  # closing the socket ends an ElevenLabs conversation


def _error_text(response: httpx.Response) -> str:
    """ElevenLabs' `{"detail": {"status", "message"}}` (or a plain `detail`), else the body."""
    body = json_or_none(response.text)
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, dict) and detail.get("message"):
            return str(detail["message"])
        if isinstance(detail, str):
            return detail
    return response.text.strip()[:200] or response.reason_phrase
