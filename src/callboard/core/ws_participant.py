"""Room participants over WebSocket: 20 ms frames of 16 kHz s16le both ways.

The socket is driven by the API layer; this module is the media side. Frames the client sends
wait in a short queue that the media tick drains one per tick; frames the client should hear
go into a bounded queue that the socket's sender task empties. A client that stops reading
fills that queue and is dropped, without the room ever waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from callboard.media.frames import FRAME_SAMPLES, SAMPLE_RATE

if TYPE_CHECKING:
    from callboard.core.service import CallService

log = logging.getLogger(__name__)

FRAME_BYTES = FRAME_SAMPLES * 2  # s16le
# Frames a client may run ahead before the oldest are dropped (keeps its latency bounded).
MAX_INBOUND = 10
# About one second of audio the client has not read yet: beyond that it is too slow.
MAX_OUTBOUND = 50


class WsEndpoint:
    """The MediaEndpoint of one WebSocket participant."""

    sample_rate = SAMPLE_RATE
    law = None  # frames travel as PCM

    def __init__(self, participant_id: str) -> None:
        self.id = participant_id
        self.inbound: deque[np.ndarray] = deque()
        self.outbound: asyncio.Queue[bytes] = asyncio.Queue(MAX_OUTBOUND)
        self.too_slow = asyncio.Event()
        self.frames_dropped = 0

    def push_audio(self, data: bytes) -> None:
        if len(data) != FRAME_BYTES:
            raise ValueError(f"audio must be {FRAME_BYTES} bytes (20 ms of 16 kHz s16le)")
        self.inbound.append(np.frombuffer(data, dtype="<i2").astype(np.int16))
        while len(self.inbound) > MAX_INBOUND:
            self.inbound.popleft()
            self.frames_dropped += 1

    def read_frame(self) -> np.ndarray | None:
        return self.inbound.popleft() if self.inbound else None

    def write_frame(self, pcm: np.ndarray) -> None:
        if self.too_slow.is_set():
            return
        try:
            self.outbound.put_nowait(pcm.astype("<i2").tobytes())
        except asyncio.QueueFull:
            self.too_slow.set()


class WsParticipants:
    """Every WebSocket participant of every room."""

    def __init__(self, service: CallService) -> None:
        self.service = service
        self.endpoints: dict[str, tuple[str, WsEndpoint]] = {}

    def join(self, room_id: str) -> WsEndpoint:
        room = self.service.rooms.get(room_id)
        endpoint = WsEndpoint(f"ws-{uuid.uuid4()}")
        self.endpoints[endpoint.id] = (room_id, endpoint)
        room.ws_participants.add(endpoint.id)
        media = self.service.engine.attach(endpoint.id, endpoint)
        self.service.engine.join_room(media, room_id)
        log.info("WebSocket participant %s joined room %s", endpoint.id, room_id)
        return endpoint

    def leave(self, participant_id: str) -> None:
        entry = self.endpoints.pop(participant_id, None)
        if entry is None:
            return
        room_id, endpoint = entry
        endpoint.too_slow.set()  # wakes the socket tasks so they finish
        self.service.engine.detach(participant_id)
        self.service.rooms.ws_left(room_id, participant_id)
        log.info("WebSocket participant %s left room %s", participant_id, room_id)

    def close(self, participant_id: str) -> None:
        """The room is going away: stop the participant (its socket closes)."""
        self.leave(participant_id)
