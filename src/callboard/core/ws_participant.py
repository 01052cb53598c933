"""Room participants over WebSocket: the media side of each is an AudioBridge with a live
input policy (media/bridge.py); the API layer moves its messages (api/rooms.py). A client
that stops reading fills the bridge's outbound queue and is dropped, without the room ever
waiting for it.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from callboard.media.bridge import AudioBridge, LiveInput

if TYPE_CHECKING:
    from callboard.core.service import CallService

log = logging.getLogger(__name__)


class WsParticipants:
    """Every WebSocket participant of every room."""

    def __init__(self, service: CallService) -> None:
        self.service = service
        self.endpoints: dict[str, tuple[str, AudioBridge]] = {}

    def join(self, room_id: str) -> AudioBridge:
        room = self.service.rooms.get(room_id)
        endpoint = AudioBridge(f"ws-{uuid.uuid4()}", LiveInput())
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
        endpoint.close()  # wakes the socket tasks so they finish
        self.service.engine.detach(participant_id)
        self.service.rooms.ws_left(room_id, participant_id)
        log.info("WebSocket participant %s left room %s", participant_id, room_id)

    def close(self, participant_id: str) -> None:
        """The room is going away: stop the participant (its socket closes)."""
        self.leave(participant_id)
