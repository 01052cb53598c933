"""The room WebSocket's wire format (GET /v1/rooms/{id}/ws): JSON text both ways, audio as
base64 of 20 ms 16 kHz s16le frames. Sans-IO: the route moves the messages, an AudioBridge
(media/bridge.py) carries the audio."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from callboard.media.frames import FRAME_SAMPLES, SAMPLE_RATE

FRAME_BYTES = FRAME_SAMPLES * 2


@dataclass(frozen=True)
class WsMessage:
    """A parsed client message: `audio` (s16le bytes), or a control `kind` (stop, pong)."""

    kind: str
    audio: bytes = b""


class RoomWsFraming:
    """JSON text both ways; audio as `{"audio": "<base64 of 640 bytes>"}`."""

    @staticmethod
    def hello(participant_id: str) -> str:
        return json.dumps(
            {
                "type": "connected",
                "participant_id": participant_id,
                "sample_rate": SAMPLE_RATE,
                "format": "pcm_s16le",
            }
        )

    @staticmethod
    def audio(frame: bytes) -> str:
        return json.dumps({"audio": base64.b64encode(frame).decode()})

    @staticmethod
    def ping(event_id: int) -> str:
        return json.dumps({"type": "ping", "event_id": event_id})

    @staticmethod
    def error(message: str) -> str:
        return json.dumps({"type": "error", "error": message[:200]})

    @staticmethod
    def parse(text: str) -> WsMessage:
        """One client message; ValueError (with a message for the client) if it is bad."""
        try:
            message = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: a nesting bomb
            raise ValueError("message is not valid JSON") from None
        if not isinstance(message, dict):
            raise ValueError("message must be a JSON object")
        if "audio" in message:
            try:
                data = base64.b64decode(message["audio"], validate=True)
            except (binascii.Error, TypeError, ValueError):
                raise ValueError("audio is not valid base64") from None
            if len(data) != FRAME_BYTES:
                raise ValueError(f"audio must be {FRAME_BYTES} bytes (20 ms of 16 kHz s16le)")
            return WsMessage("audio", data)
        kind = message.get("type")
        if kind in ("stop", "pong"):
            return WsMessage(kind)
        raise ValueError(f"unknown message type {kind!r}")
