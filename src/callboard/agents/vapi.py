"""Vapi assistants over the WebSocket transport.

`POST {VAPI_BASE_URL}/call` (Bearer key) creates the call with transport `vapi.websocket` and
the audio format we choose (pcm_s16le, 16 kHz, raw); the answer gives the audio socket
(`transport.websocketCallUrl`) and the Live Call Control URL (`monitor.controlUrl`); the call
id is the conversation id. On the socket, binary frames are raw audio both ways; text frames
are JSON control messages. Silence is sent while the caller is quiet (Vapi ends a call that
sends nothing). Barge-in: `user-interrupted`, or a user `speech-update` with `started`,
flushes the queued speech. Messages are injected by POSTing `add-message` (role system) to
the control URL; ending from our side sends `end-call` on the socket.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from websockets.typing import Data

from callboard.agents.base import (
    OPEN_TIMEOUT,
    SAMPLE_RATE,
    AgentError,
    AgentLink,
    InjectionUnsupported,
    json_or_none,
    pcm_array,
    pcm_bytes,
)
from callboard.agents.socket import AgentSocket, bridge, open_socket, send_now
from callboard.outbound_guard import guarded_client

log = logging.getLogger(__name__)

PROVIDER = "vapi"
CONTROL_TIMEOUT = 5.0


def call_request(
    assistant_id: str, first_message: str | None, variable_values: dict[str, Any] | None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "assistantId": assistant_id,
        "transport": {
            "provider": "vapi.websocket",
            "audioFormat": {"format": "pcm_s16le", "container": "raw", "sampleRate": SAMPLE_RATE},
        },
    }
    overrides: dict[str, Any] = {}
    if first_message:
        overrides["firstMessage"] = first_message
    if variable_values:
        overrides["variableValues"] = dict(variable_values)
    if overrides:
        body["assistantOverrides"] = overrides
    return body


class VapiClient:
    provider = PROVIDER

    def __init__(
        self,
        base_url: str,
        api_key: str,
        assistant_id: str,
        first_message: str | None = None,
        variable_values: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.request = call_request(assistant_id, first_message, variable_values)
        self.control_url: str | None = None
        self._socket: AgentSocket | None = None
        self._link: AgentLink | None = None

    async def _create_call(self) -> tuple[str, str | None, str]:
        try:
            async with guarded_client(timeout=OPEN_TIMEOUT) as http:
                response = await http.post(
                    f"{self.base_url}/call",
                    json=self.request,
                    headers={"Authorization": f"Bearer {self.api_key}"},
                )
        except httpx.HTTPError as exc:
            raise AgentError(f"vapi: cannot create the call: {exc!r}") from None
        if response.status_code not in (200, 201):
            raise AgentError(f"vapi: {_error_text(response)} (HTTP {response.status_code})")
        call = json_or_none(response.text)
        transport = call.get("transport") if isinstance(call, dict) else None
        socket_url = transport.get("websocketCallUrl") if isinstance(transport, dict) else None
        if not isinstance(socket_url, str):
            raise AgentError("vapi: the call has no transport.websocketCallUrl")
        monitor = call.get("monitor") or {}
        control = monitor.get("controlUrl") if isinstance(monitor, dict) else None
        return str(call.get("id") or ""), control if isinstance(control, str) else None, socket_url

    async def run(self, link: AgentLink) -> None:
        self._link = link
        call_id, self.control_url, socket_url = await self._create_call()
        self._socket = socket = await open_socket(socket_url, PROVIDER)
        link.connected(call_id or None)
        await bridge(socket, PROVIDER, link, pcm_bytes, self._handle)

    def _handle(self, message: Data) -> None:
        link = self._link
        assert link is not None
        if isinstance(message, bytes):
            link.play(pcm_array(message), SAMPLE_RATE)
            return
        data = json.loads(message)
        if isinstance(data, dict) and isinstance(data.get("message"), dict):
            data = data["message"]  # some deployments wrap client messages
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kind = data.get("type")
        if kind == "user-interrupted" or (
            kind == "speech-update"
            and data.get("role") == "user"
            and data.get("status") == "started"
        ):
            link.interrupt()
        elif kind == "transcript" and data.get("transcriptType", "final") == "final":
            text = data.get("transcript")
            if isinstance(text, str) and text.strip():
                if data.get("role") == "user":
                    link.user_transcript(text.strip())
                elif data.get("role") == "assistant":
                    link.agent_response(text.strip())

    async def inject(self, message: str) -> None:
        if self.control_url is None:
            raise InjectionUnsupported("this VAPI call has no control URL (monitor plan off)")
        body = {"type": "add-message", "message": {"role": "system", "content": message}}
        try:
            async with guarded_client(timeout=CONTROL_TIMEOUT) as http:
                response = await http.post(
                    self.control_url, json=body, headers={"Authorization": f"Bearer {self.api_key}"}
                )
        except httpx.HTTPError as exc:
            raise AgentError(f"vapi control URL unreachable: {exc!r}") from None
        if not response.is_success:
            raise AgentError(f"vapi: {_error_text(response)} (HTTP {response.status_code})")

    async def goodbye(self) -> None:
        if self._socket is not None:
            send_now(self._socket, json.dumps({"type": "end-call"}), PROVIDER)


def _error_text(response: httpx.Response) -> str:
    """Vapi's `{"message": str | [str], "error", "statusCode"}`, else the body."""
    body = json_or_none(response.text)
    if isinstance(body, dict) and body.get("message"):
        message = body["message"]
        return "; ".join(map(str, message)) if isinstance(message, list) else str(message)
    return response.text.strip()[:200] or response.reason_phrase
