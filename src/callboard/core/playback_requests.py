"""A play request (url or tone, repeat, volume) turned into a running playback on a leg or
in a room: the request rules of API-NOTES in one place for both targets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from callboard.core.downloads import check_url
from callboard.core.errors import BadRequest, Conflict
from callboard.core.playback import Playback, Publish, TonePlayback, volume_gain
from callboard.core.url_playback import UrlPlayback

if TYPE_CHECKING:
    from callboard.core.leg import Leg
    from callboard.core.room import Room
    from callboard.core.rooms import RoomManager
    from callboard.media.engine import MediaEngine


@dataclass(frozen=True, slots=True)
class PlaybackSpec:
    url: str | None = None
    tone: str | None = None
    mime_type: str | None = None
    repeat: int = 0  # url only: 0 or 1 once, N times, -1 forever
    volume: int = 0


def new_playback(spec: PlaybackSpec, publish: Publish) -> Playback:
    """The playback a request asks for; raises BadRequest for what can never play."""
    if (spec.url is None) == (spec.tone is None):
        raise BadRequest("exactly one of url and tone is required")
    volume_gain(spec.volume)
    if spec.repeat < -1:
        raise BadRequest(f"repeat must be -1 (forever), 0 or more, got {spec.repeat}")
    if spec.tone is not None:
        return TonePlayback(publish, spec.tone, spec.volume)
    assert spec.url is not None
    if not spec.mime_type or not spec.mime_type.strip():
        raise BadRequest("mime_type is required with url")
    check_url(spec.url)
    return UrlPlayback(publish, spec.url, spec.mime_type, repeat=spec.repeat, volume=spec.volume)


def play_on_leg(engine: MediaEngine, leg: Leg, spec: PlaybackSpec) -> Playback:
    """Heard by the leg alone, on top of its room's mix."""
    playback = new_playback(spec, leg.publish)
    media = engine.get(leg.id)
    if media is None or leg.ended:
        raise Conflict(f"leg is {leg.state.value} and has no audio writer yet")
    return leg.playbacks.start(media, playback)


def play_in_room(rooms: RoomManager, room: Room, spec: PlaybackSpec) -> Playback:
    """Heard by every participant of the room."""
    playback = new_playback(spec, partial(rooms.publish, room))
    if room.dropping:
        raise Conflict(f"room {room.id} is being deleted")
    return room.playbacks.start(rooms.engine.room(room.id), playback)
