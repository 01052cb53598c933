"""Deepgram Voice Agent API v1 over its WebSocket (`Authorization: Token <key>`).

Order: the server's `Welcome` (its request id is the conversation id), our `Settings`, the
server's `SettingsApplied`; only then audio, as linear16 16 kHz both ways (declared in
`Settings.audio`, integers). A given `settings` object is used as is except `type` and
`audio`; `language` and `greeting` go into `agent` (and the listen/speak providers'
`language`, since `agent.language` is deprecated). `UserStartedSpeaking` is the barge-in:
queued speech is flushed. `KeepAlive` goes every KEEPALIVE seconds, which also covers
stretches with no audio. Messages are injected with `InjectAgentMessage` (the agent says
it); a refusal (`InjectionRefused`) is logged, as the answer comes after the API's reply.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from typing import Any

import numpy as np
from websockets.typing import Data

from callboard.agents.base import SAMPLE_RATE, AgentError, AgentLink, pcm_array, pcm_bytes
from callboard.agents.socket import AgentSocket, bridge, open_socket, send_now

log = logging.getLogger(__name__)

PROVIDER = "deepgram"
KEEPALIVE = 8.0

DEFAULT_AGENT: dict[str, Any] = {
    "listen": {"provider": {"type": "deepgram", "model": "nova-3"}},
    "think": {"provider": {"type": "open_ai", "model": "gpt-4o-mini"}},
    "speak": {"provider": {"type": "deepgram", "model": "aura-2-asteria-en"}},
}


def build_settings(
    settings: dict[str, Any] | None, greeting: str | None, language: str | None
) -> dict[str, Any]:
    message: dict[str, Any] = (
        copy.deepcopy(settings) if settings else {"agent": copy.deepcopy(DEFAULT_AGENT)}
    )
    message["type"] = "Settings"
    message["audio"] = {
        "input": {"encoding": "linear16", "sample_rate": SAMPLE_RATE},
        "output": {"encoding": "linear16", "sample_rate": SAMPLE_RATE, "container": "none"},
    }
    agent = message.setdefault("agent", {})
    if not isinstance(agent, dict):
        raise ValueError("settings.agent must be an object")
    if greeting:
        agent["greeting"] = greeting
    if language:
        agent["language"] = language
        for part in ("listen", "speak"):
            provider = (agent.get(part) or {}).get("provider")
            if isinstance(provider, dict):
                provider["language"] = language
    return message


class DeepgramAgentClient:
    provider = PROVIDER

    def __init__(
        self,
        url: str,
        api_key: str,
        settings: dict[str, Any] | None = None,
        greeting: str | None = None,
        language: str | None = None,
    ) -> None:
        self.url = url
        self.api_key = api_key
        self.settings = build_settings(settings, greeting, language)
        self._socket: AgentSocket | None = None
        self._link: AgentLink | None = None
        self._applied = asyncio.Event()
        self._request_id: str | None = None

    async def run(self, link: AgentLink) -> None:
        self._link = link
        self._socket = socket = await open_socket(
            self.url, PROVIDER, {"Authorization": f"Token {self.api_key}"}
        )
        keepalive = (KEEPALIVE, json.dumps({"type": "KeepAlive"}))
        await bridge(socket, PROVIDER, link, self._encode, self._handle, keepalive)

    def _encode(self, frame: np.ndarray) -> bytes | None:
        return pcm_bytes(frame) if self._applied.is_set() else None  # no audio before it

    def _handle(self, message: Data) -> None:
        link = self._link
        assert link is not None and self._socket is not None
        if isinstance(message, bytes):
            if self._applied.is_set():
                link.play(pcm_array(message), SAMPLE_RATE)
            return
        data = json.loads(message)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kind = data.get("type")
        if kind == "Welcome":
            request_id = data.get("request_id")
            self._request_id = request_id if isinstance(request_id, str) else None
            send_now(self._socket, json.dumps(self.settings), PROVIDER)
        elif kind == "SettingsApplied":
            self._applied.set()
            link.connected(self._request_id)
        elif kind == "UserStartedSpeaking":
            link.interrupt()
        elif kind == "ConversationText":
            text = data.get("content")
            if isinstance(text, str) and text.strip():
                if data.get("role") == "user":
                    link.user_transcript(text.strip())
                elif data.get("role") == "assistant":
                    link.agent_response(text.strip())
        elif kind == "Error":
            description = data.get("description") or data.get("message") or "error"
            raise AgentError(f"deepgram: {description} ({data.get('code', 'no code')})")
        elif kind == "Warning":
            log.warning("deepgram agent warning: %s", data.get("description"))
        elif kind == "InjectionRefused":
            log.info("deepgram agent refused an injected message: %s", data.get("message"))

    async def inject(self, message: str) -> None:
        if self._socket is None or not self._applied.is_set():
            raise AgentError("the Deepgram agent is not ready yet")
        body = {"type": "InjectAgentMessage", "message": message}
        send_now(self._socket, json.dumps(body), PROVIDER)

    async def goodbye(self) -> None:
        return None  # closing the socket ends a Deepgram agent session
