"""Room participants over WebSocket: the media side of each is an AudioBridge with a live
input policy (media/bridge.py); the API layer moves its messages (api/rooms.py). A client
that stops reading fills the bridge's outbound queue and is dropped, without the room ever
waiting for it.
"""

from __future__ import annotations

import logging
import uuid

from callboard.core.lifecycle import Lifecycle, Registration
from callboard.core.rooms import RoomManager
from callboard.media.bridge import AudioBridge, LiveInput
from callboard.media.engine import MediaEngine

log = logging.getLogger(__name__)


class WsParticipants:
    """Every WebSocket participant of every room."""

    def __init__(self, engine: MediaEngine, rooms: RoomManager, lifecycle: Lifecycle) -> None:
        self.engine = engine
        self.rooms = rooms
        self.lifecycle = lifecycle
        self.endpoints: dict[str, tuple[str, AudioBridge, Registration]] = {}

    def join(self, room_id: str) -> AudioBridge:
        room = self.rooms.get(room_id)
        endpoint = AudioBridge(f"ws-{uuid.uuid4()}", LiveInput())
        # The room going away closes the participant (its socket closes).
        cleanup = self.lifecycle.on_room_dropped(room_id, lambda: self.leave(endpoint.id))
        self.endpoints[endpoint.id] = (room_id, endpoint, cleanup)
        room.ws_participants.add(endpoint.id)
        media = self.engine.attach(endpoint.id, endpoint)
        self.engine.join_room(media, room_id)
        log.info("WebSocket participant %s joined room %s", endpoint.id, room_id)
        return endpoint

    def leave(self, participant_id: str) -> None:
        entry = self.endpoints.pop(participant_id, None)
        if entry is None:
            return
        room_id, endpoint, cleanup = entry
        cleanup.cancel()
        endpoint.close()  # wakes the socket tasks so they finish
        self.engine.detach(participant_id)
        self.rooms.ws_left(room_id, participant_id)
        log.info("WebSocket participant %s left room %s", participant_id, room_id)
