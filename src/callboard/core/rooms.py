"""Rooms: creation, membership (add, move, remove), deletion, and the DTMF broadcast rule.

The room manager is the one owner of membership: `Room.legs` and `Leg.room_id` are written
only here, and the engine's copy (which mix a leg's media is in) only by `sync_media`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from callboard.core.errors import BadRequest, CallboardError, Conflict, NotFound, Unavailable
from callboard.core.leg import Leg, LegState, LegType
from callboard.core.lifecycle import Lifecycle, Registration
from callboard.core.room import Room, check_sample_rate
from callboard.events.base import LegOrRoomEvent, RoomEvent
from callboard.events.bus import EventBus
from callboard.events.types import LegJoinedRoom, LegLeftRoom, RoomCreated, RoomDeleted
from callboard.events.webhooks import WebhookTarget
from callboard.media.engine import MediaEngine

log = logging.getLogger(__name__)

MAX_ROOM_ID = 128
ENDED_WEBHOOK_MEMORY = 1024


MemberHook = Callable[[Leg], None]


@dataclass(frozen=True)
class RoomJoin:
    """A leg's entry into a room; `moved_from` is the room it left for it, if any."""

    room_id: str
    moved_from: str | None = None


@dataclass(frozen=True)
class Place:
    """Where a leg stands, for another leg to take over after a transfer: its room (if any)
    and its flags."""

    room_id: str
    muted: bool
    deaf: bool
    accept_dtmf: bool

    @classmethod
    def of(cls, leg: Leg) -> Place:
        return cls(leg.room_id, leg.muted, leg.deaf, leg.accept_dtmf)

    def now(self, leg: Leg) -> Place:
        """`leg`'s place as it is now; this snapshot of it once the leg has ended (and left
        its room)."""
        return self if leg.ended else Place.of(leg)


class RoomManager:
    def __init__(
        self,
        *,
        engine: MediaEngine,
        bus: EventBus,
        lifecycle: Lifecycle,
        find_leg: Callable[[str], Leg],
        default_rate: int,
        max_rooms: int = 0,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.lifecycle = lifecycle
        self._find_leg = find_leg
        self.default_rate = default_rate
        self.max_rooms = max_rooms  # MAX_ROOMS; 0 = no limit
        self.rooms: dict[str, Room] = {}
        # Webhooks of deleted rooms, for events that end after them (recording.finished).
        self.ended_webhooks: OrderedDict[str, WebhookTarget | None] = OrderedDict()
        # Deleted rooms whose room.deleted waits for their recording: the id stays taken.
        self._closing: set[str] = set()
        # room id -> (on_join, on_leave) of features that follow a room's members (room STT).
        self._watchers: dict[str, list[tuple[MemberHook, MemberHook]]] = {}
        self._emptied: dict[str, list[Callable[[], None]]] = {}

    # ---- lookups ----

    def get(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            raise NotFound(f"room {room_id} not found")
        return room

    def list(self) -> list[Room]:
        return list(self.rooms.values())

    def publish(self, room: Room, event: RoomEvent | LegOrRoomEvent) -> None:
        """An event about `room`: it carries the room's id, and its app_id when it has one."""
        self.bus.publish(event, room_id=room.id, app_id=room.app_id or None)

    # ---- create / delete ----

    def create(
        self,
        room_id: str | None = None,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        app_id: str | None = None,
        auto_created: bool = False,
        sample_rate: int | None = None,
    ) -> Room:
        if room_id is not None:
            if (
                not room_id
                or len(room_id) > MAX_ROOM_ID
                or not room_id.isprintable()
                or "/" in room_id
            ):
                raise BadRequest(
                    f"room id must be 1..{MAX_ROOM_ID} printable characters without '/'"
                )
            if room_id in self.rooms:
                raise Conflict(f"room {room_id} already exists")
            if room_id in self._closing:
                raise Conflict(f"room {room_id} is still being deleted (its recording is ending)")
        if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
            raise BadRequest("webhook_url must be an http:// or https:// URL")
        self.check_room_capacity()
        rate = check_sample_rate(sample_rate, self.default_rate)
        webhook = WebhookTarget(webhook_url, webhook_secret) if webhook_url else None
        room = Room(
            room_id or str(uuid.uuid4()),
            webhook=webhook,
            app_id=app_id,
            auto_created=auto_created,
            sample_rate=rate,
        )
        self.rooms[room.id] = room
        self.engine.room(room.id, rate)
        self.lifecycle.on_room_dropped(room.id, partial(room.playbacks.stop_all, "room_deleted"))
        self.publish(room, RoomCreated())
        return room

    def delete(self, room_id: str) -> None:
        """Delete a room and hang up every leg in it."""
        room = self.get(room_id)
        for leg in list(room.legs.values()):
            leg.hangup("api_hangup")
        self._drop(room)

    def _drop(self, room: Room) -> None:
        if room.dropping or self.rooms.get(room.id) is not room:
            return
        # Still registered until its last event is out, so that the room's own webhook gets
        # the leg.left_room and room.deleted events of its teardown.
        room.dropping = True
        for leg in list(room.legs.values()):
            self._take_out(room, leg)
        # What features attached to the room (playbacks, WebSocket participants, a recording)
        # ends now, while its engine room still exists.
        pending = self.lifecycle.room_dropped(room.id)
        self.engine.drop_room(room.id)
        self.ended_webhooks[room.id] = room.webhook
        while len(self.ended_webhooks) > ENDED_WEBHOOK_MEMORY:
            self.ended_webhooks.popitem(last=False)
        del self.rooms[room.id]
        self._watchers.pop(room.id, None)
        self._emptied.pop(room.id, None)
        if not pending:
            self.publish(room, RoomDeleted())
        else:
            # room.deleted is the room's last event: it waits for recording.finished (the
            # file is finalised, and uploaded, off the loop), however long that takes. Until
            # then the id cannot be reused, so no event of a new room can be confused with it.
            self._closing.add(room.id)
            ending = asyncio.gather(*pending, return_exceptions=True)
            ending.add_done_callback(lambda _: self._closed(room))

    def _closed(self, room: Room) -> None:
        self._closing.discard(room.id)
        self.publish(room, RoomDeleted())

    def _drop_if_abandoned(self, room: Room) -> None:
        if room.auto_created and room.empty:
            self._drop(room)

    # ---- membership ----

    async def add_leg(
        self,
        room_id: str,
        leg_id: str,
        *,
        mute: bool | None = None,
        deaf: bool | None = None,
        accept_dtmf: bool | None = None,
    ) -> RoomJoin:
        leg = self._find_leg(leg_id)
        if leg.ended:
            raise Conflict(f"leg {leg_id} is hung up")
        previous = leg.room_id
        if previous == room_id:
            raise Conflict(f"leg {leg_id} is already in room {room_id}")
        room = self.rooms.get(room_id)
        if room is None:
            room = self.create(room_id, app_id=leg.app_id, auto_created=True)
        # Flags first, so the leg's first mixed frame already obeys them.
        if mute is not None:
            leg.set_muted(mute)
        if deaf is not None:
            leg.set_deaf(deaf)
        if accept_dtmf is not None:
            leg.accept_dtmf = accept_dtmf
        if leg.type is LegType.SIP_INBOUND and leg.state is LegState.RINGING:
            try:
                await leg.answer()
                if leg.ended:
                    raise Conflict(f"leg {leg_id} hung up while being answered")
            except CallboardError:
                self._drop_if_abandoned(room)  # a room made for this leg goes with the failure
                raise
        if room.id not in self.rooms:
            raise Conflict(f"room {room_id} was deleted meanwhile")
        # An outbound leg still ringing is a member now (room_id set, removable) and enters
        # the mix as soon as its media is up (CallService.attach_media).
        self._join(room, leg)
        return RoomJoin(room.id, previous or None)

    def check_room_capacity(self, room_id: str | None = None) -> None:
        """Unavailable (503) when a new room (not `room_id`, if it exists) would pass
        MAX_ROOMS."""
        if room_id is not None and room_id in self.rooms:
            return
        if self.max_rooms and len(self.rooms) >= self.max_rooms:
            raise Unavailable(f"too many rooms: MAX_ROOMS ({self.max_rooms}) reached")

    def hand_over(self, place: Place, leg: Leg) -> None:
        """`leg` takes `place`: the same flags, and the same room, which it joins before the
        leg it replaces leaves (so a room made for that one outlives the swap). Conflict
        when the room is gone meanwhile."""
        room = self.rooms.get(place.room_id) if place.room_id else None
        if place.room_id and (room is None or room.dropping):
            raise Conflict(f"room {place.room_id} is gone")
        leg.set_muted(place.muted)
        leg.set_deaf(place.deaf)
        leg.accept_dtmf = place.accept_dtmf
        if room is not None and leg.room_id != room.id:
            self._join(room, leg)

    def _join(self, room: Room, leg: Leg) -> None:
        previous = self.rooms.get(leg.room_id) if leg.room_id else None
        if previous is not None and previous is not room:
            previous.legs.pop(leg.id, None)
        room.legs[leg.id] = leg
        leg.room_id = room.id
        leg.pending_room = None
        # One synchronous step between two ticks: no frame is lost in a move.
        self.sync_media(leg)
        if previous is not None and previous is not room:
            leg.publish(LegLeftRoom(room_id=previous.id))
            self._notify(previous.id, leg, joined=False)
        leg.publish(LegJoinedRoom(room_id=room.id))
        self._notify(room.id, leg, joined=True)
        if previous is not None and previous is not room:
            self._drop_if_abandoned(previous)

    def _take_out(self, room: Room, leg: Leg) -> None:
        if room.legs.pop(leg.id, None) is None:
            return
        leg.room_id = ""
        self.sync_media(leg)
        leg.publish(LegLeftRoom(room_id=room.id))
        self._notify(room.id, leg, joined=False)
        self._check_emptied(room)

    def watch(self, room_id: str, on_join: MemberHook, on_leave: MemberHook) -> Registration:
        """Tell a feature about every leg that joins or leaves the room from now on (it
        enumerates the present ones itself). Cancel the registration to stop."""
        entry = (on_join, on_leave)
        self._watchers.setdefault(room_id, []).append(entry)
        return Registration(self._watchers, room_id, entry)

    def watch_emptied(self, room_id: str, on_empty: Callable[[], None]) -> Registration:
        """Tell a feature when the room's last participant (a leg or a WebSocket one) has
        left and the room stays (a room being deleted says so through the lifecycle hub)."""
        self._emptied.setdefault(room_id, []).append(on_empty)
        return Registration(self._emptied, room_id, on_empty)

    def _check_emptied(self, room: Room) -> None:
        if not room.empty or room.dropping or room.id not in self._emptied:
            return
        # Once the current step is over: deleting a room hangs up its legs first, and only
        # then marks it as dropping.
        asyncio.get_running_loop().call_soon(self._emptied_now, room)

    def _emptied_now(self, room: Room) -> None:
        if room.empty and not room.dropping and self.rooms.get(room.id) is room:
            for on_empty in list(self._emptied.get(room.id, ())):
                try:
                    on_empty()
                except Exception:  # one feature's failure must not break membership
                    log.exception("room %s emptied hook failed", room.id)

    def _notify(self, room_id: str, leg: Leg, joined: bool) -> None:
        for on_join, on_leave in list(self._watchers.get(room_id, ())):
            try:
                (on_join if joined else on_leave)(leg)
            except Exception:  # one feature's failure must not break membership
                log.exception("room %s member hook failed", room_id)

    def sync_media(self, leg: Leg) -> None:
        """Make the engine mix the leg's media in the room its membership names: the one
        place the engine's copy of membership is written."""
        media = self.engine.get(leg.id)
        if media is None:
            return
        current = media.room.key if media.room is not None else ""
        if current == leg.room_id:
            return
        if leg.room_id:
            self.engine.join_room(media, leg.room_id)  # leaves the old one in the same step
        else:
            self.engine.leave_room(media)

    def remove_leg(self, room_id: str, leg_id: str) -> None:
        room = self.get(room_id)
        leg = room.legs.get(leg_id)
        if leg is None:
            raise NotFound(f"leg {leg_id} is not in room {room_id}")
        self._take_out(room, leg)
        self._drop_if_abandoned(room)

    # ---- leg life-cycle hooks ----

    def media_ready(self, leg: Leg) -> None:
        target = leg.pending_room
        if not target:
            return
        room = self.rooms.get(target)
        if room is None:
            try:
                room = self.create(target, app_id=leg.app_id, auto_created=True)
            except CallboardError as exc:  # MAX_ROOMS reached since the leg was created
                log.warning("leg %s stays out of room %s: %s", leg.id, target, exc)
                leg.pending_room = None
                return
        self._join(room, leg)

    def leg_gone(self, leg: Leg) -> None:
        room = self.rooms.get(leg.room_id) if leg.room_id else None
        if room is not None:
            self._take_out(room, leg)
            self._drop_if_abandoned(room)

    def ws_left(self, room_id: str, ws_id: str) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            room.ws_participants.discard(ws_id)
            self._check_emptied(room)
            self._drop_if_abandoned(room)

    def broadcast_dtmf(self, source: Leg, digit: str) -> None:
        """Re-send a digit received on a leg to every other leg of its room that accepts DTMF."""
        room = self.rooms.get(source.room_id) if source.room_id else None
        if room is None:
            return
        for leg in room.legs.values():
            if leg is source or not leg.accept_dtmf or not leg.has_media:
                continue
            try:
                leg.send_dtmf(digit)
            except Exception as exc:  # one leg's failure must not stop the others
                log.info("DTMF broadcast to leg %s failed: %s", leg.id, exc)
