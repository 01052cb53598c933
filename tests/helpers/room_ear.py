"""A WebSocket participant of a room that keeps every 20 ms frame it hears with its arrival
time, so tests can cut out and analyse what a room member heard in a time window; it can
also speak (`say`)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from typing import Any

import numpy as np
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.helpers.server import ServerProcess

RATE = 16000
FRAME_SAMPLES = 320


class RoomEar:
    def __init__(self, server: ServerProcess, room_id: str) -> None:
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(
            connect(f"{server.ws}/v1/rooms/{room_id}/ws", proxy=None, open_timeout=5)
        )
        hello = json.loads(self.ws.recv(timeout=5))
        assert hello.get("type") == "connected", hello
        self.id = str(hello["participant_id"])
        self._arrivals: list[float] = []
        self._frames: list[bytes] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            while True:
                message: dict[str, Any] = json.loads(self.ws.recv())
                if "audio" in message:
                    raw = base64.b64decode(message["audio"])
                    with self._lock:
                        self._arrivals.append(time.monotonic())
                        self._frames.append(raw)
                elif message.get("type") == "ping":
                    self.ws.send(json.dumps({"type": "pong", "event_id": message["event_id"]}))

    def heard(self, start: float, end: float | None = None) -> np.ndarray:
        """Float samples of the frames that arrived between `start` and `end` (monotonic)."""
        with self._lock:
            arrivals = np.array(self._arrivals)
            frames = list(self._frames)
        chosen = [
            raw
            for t, raw in zip(arrivals, frames, strict=True)
            if t >= start and (end is None or t < end)
        ]
        if not chosen:
            return np.zeros(0)
        return np.frombuffer(b"".join(chosen), dtype="<i2").astype(np.float64) / 32768.0

    def listen(self, seconds: float, start: float | None = None) -> np.ndarray:
        """Wait until `seconds` after `start` (default: now) and return what was heard."""
        begin = time.monotonic() if start is None else start
        time.sleep(max(0.0, begin + seconds - time.monotonic()))
        return self.heard(begin, begin + seconds)

    def say(self, pcm: np.ndarray) -> threading.Thread:
        """Speak `pcm` (16 kHz int16) into the room at real time, 20 ms a message, from a
        thread of its own (joined by the caller when it must wait for the end)."""
        data = np.asarray(pcm, dtype="<i2").tobytes()
        frame_bytes = FRAME_SAMPLES * 2
        data += b"\0" * (-len(data) % frame_bytes)

        def send() -> None:
            start = time.monotonic()
            with contextlib.suppress(ConnectionClosed, OSError):
                for index in range(len(data) // frame_bytes):
                    time.sleep(max(0.0, start + index * 0.02 - time.monotonic()))
                    chunk = data[index * frame_bytes : (index + 1) * frame_bytes]
                    self.ws.send(json.dumps({"audio": base64.b64encode(chunk).decode()}))

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._stack.close()
        self._thread.join(timeout=3)
