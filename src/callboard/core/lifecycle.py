"""The lifecycle hub: a feature that attaches something to a leg or a room (a recording,
speaking detection, a WebSocket participant; later STT, an agent, AMD) registers its own
cleanup here, so ending a leg or dropping a room never has to name the features.

Cleanups run synchronously, newest first, while the leg is still in its room and its media
still on the engine. A room cleanup may return an awaitable: the room's last event
(`room.deleted`) waits for all of them (a recording being finalised and uploaded).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

LegCleanup = Callable[[], object]  # a result is ignored
RoomCleanup = Callable[[], object]  # an awaitable result delays room.deleted


class Registration:
    """Handle of one registered cleanup; `cancel()` when the feature detaches by itself."""

    __slots__ = ("_key", "_owner", "_table")

    def __init__(self, table: dict[str, list[Any]], key: str, owner: Any) -> None:
        self._table, self._key, self._owner = table, key, owner

    def cancel(self) -> None:
        entries = self._table.get(self._key)
        if entries is None:
            return
        if self._owner in entries:
            entries.remove(self._owner)
        if not entries:
            del self._table[self._key]


class Lifecycle:
    def __init__(self) -> None:
        self._legs: dict[str, list[LegCleanup]] = {}
        self._rooms: dict[str, list[RoomCleanup]] = {}

    def on_leg_ended(self, leg_id: str, cleanup: LegCleanup) -> Registration:
        self._legs.setdefault(leg_id, []).append(cleanup)
        return Registration(self._legs, leg_id, cleanup)

    def on_room_dropped(self, room_id: str, cleanup: RoomCleanup) -> Registration:
        self._rooms.setdefault(room_id, []).append(cleanup)
        return Registration(self._rooms, room_id, cleanup)

    def leg_ended(self, leg_id: str) -> None:
        for cleanup in reversed(self._legs.pop(leg_id, [])):
            try:
                cleanup()
            except Exception:  # one feature's failure must not keep the leg alive
                log.exception("cleanup of leg %s failed", leg_id)

    def room_dropped(self, room_id: str) -> list[Awaitable[Any]]:
        """Run the room's cleanups; the awaitables the room's last event must wait for."""
        pending: list[Awaitable[Any]] = []
        for cleanup in reversed(self._rooms.pop(room_id, [])):
            try:
                result = cleanup()
            except Exception:
                log.exception("cleanup of room %s failed", room_id)
                continue
            if isinstance(result, Awaitable):
                pending.append(result)
        return pending

    def counts(self) -> tuple[int, int]:
        """Legs and rooms with cleanups registered (leak checks in tests)."""
        return len(self._legs), len(self._rooms)
