"""The per-tick media work: pull a frame from every leg, mix every room, push to every leg.

The engine knows legs only as `MediaEndpoint`s (anything that gives and takes 20 ms frames of
PCM at its stated rate), so SIP/RTP, WebRTC and WebSocket participants are all the same to it.
Each room mixes at its own rate (8, 16 or 48 kHz); a participant's "mix rate" is its room's,
or 16 kHz outside rooms. Endpoints at another rate than their mix rate are converted here, all
legs of one (endpoint rate, mix rate) pair in one batch per direction (see lanes.py), rather
than by each transport; an endpoint at its room's rate (G.711 in an 8 kHz room, Opus in a
48 kHz one) is not resampled at all. Rooms of one rate are mixed in one batch. Sources
(tones, playback) give 16 kHz frames, converted where a mix rate differs. Room membership and
the muted/deaf flags live here as plain attributes that the core sets between ticks, so a
change applies atomically before the next mixed frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

import numpy as np

from callboard.media.attachments import (
    Analyser,
    AttachmentHandle,
    ForwardingEndpoint,
    FrameSource,
    G711Endpoint,
    LegTap,
    MediaEndpoint,
    RoomTap,
)
from callboard.media.frames import SAMPLE_RATE, samples_per_frame, saturate16
from callboard.media.g711 import G711Law
from callboard.media.lanes import LaneSeat, RateLane
from callboard.media.mixer import BatchMixer
from callboard.media.resample import Resampler
from callboard.media.speaking import frame_dbfs, frames_dbfs

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MIX_RATE",
    "MIX_RATES",
    "Analyser",
    "AttachmentHandle",
    "FrameSource",
    "G711Endpoint",
    "LegTap",
    "MediaEndpoint",
    "MediaEngine",
    "RoomTap",
]

MIX_RATES = (8000, 16000, 48000)
DEFAULT_MIX_RATE = SAMPLE_RATE  # outside rooms, and the sources' rate

_SILENCE = {rate: np.zeros(samples_per_frame(rate), dtype=np.int16) for rate in MIX_RATES}
for _frame in _SILENCE.values():
    _frame.setflags(write=False)


def _sum_sources(
    sources: list[FrameSource], on_finished: Callable[[FrameSource], None] | None
) -> np.ndarray | None:
    total: np.ndarray | None = None
    for source in list(sources):
        frame = source.next_frame()
        if frame is None:
            sources.remove(source)
            if on_finished is not None:
                on_finished(source)
            continue
        if total is None:
            total = frame.astype(np.int32)
        else:
            total += frame
    return total


def _to_rate(total: np.ndarray, resampler: Resampler) -> np.ndarray:
    """A 16 kHz int32 sum of sources, at the resampler's output rate (int32)."""
    frame = saturate16(total)
    return resampler.process(frame).astype(np.int32)


class LegMedia:
    """The engine's record of one participant with media."""

    __slots__ = (
        "analysers",
        "bound_mix",
        "coded",
        "deaf",
        "endpoint",
        "has_input",
        "key",
        "last_in",
        "law",
        "mix_rate",
        "muted",
        "on_finished",
        "own_resampler",
        "rate",
        "room",
        "room_out",
        "seat",
        "sources",
        "taps",
        "voices",
    )

    def __init__(self, key: str, endpoint: MediaEndpoint) -> None:
        self.key = key
        self.endpoint = endpoint
        self.sources: list[FrameSource] = []
        # Audio spoken on this leg's behalf (an agent attached to it): heard by the leg alone
        # when it is in no room, else added to its room's mix so that everyone hears it.
        self.voices: list[FrameSource] = []
        self.last_in: np.ndarray | None = None
        self.on_finished: Callable[[FrameSource], None] | None = None
        self.muted = False
        self.deaf = False
        self.taps: list[LegTap] = []
        self.room: RoomMedia | None = None
        self.room_out: np.ndarray | None = None
        self.analysers: list[Analyser] = []  # through MediaEngine.add_analyser
        # The rate its frames are mixed at (its room's), and the endpoint's rate as last
        # seen; a seat in the lane of that pair unless they are equal.
        self.mix_rate = DEFAULT_MIX_RATE
        self.bound_mix = 0
        self.rate = 0
        self.seat: LaneSeat[LegMedia] | None = None
        self.own_resampler: Resampler | None = None  # its 16 kHz sources at mix_rate
        self.has_input = False
        # The endpoint's G.711 law as last seen, and the endpoint as a G711Endpoint then.
        self.law: G711Law | None = None
        self.coded: G711Endpoint | None = None

    def heard_frame(self) -> np.ndarray:
        """What this leg hears this tick, at its mix rate: its room's mix (unless deaf) plus
        its own sources."""
        room_part = None if self.deaf else self.room_out
        voiced = len(self.voices) if self.room is None else 0
        if (
            room_part is None
            and self.mix_rate == DEFAULT_MIX_RATE
            and len(self.sources) + voiced == 1
        ):
            # One source alone (a playback, TTS, a tone or an agent's voice, outside rooms):
            # its frame is what the leg hears, with no sum to widen and clip 50 times a second.
            return self._lone_frame(self.sources or self.voices)
        own = _sum_sources(self.sources, self.on_finished) if self.sources else None
        if self.voices and self.room is None:
            voice = _sum_sources(self.voices, None)
            if voice is not None:
                own = voice if own is None else own + voice
        if own is None:
            return _SILENCE[self.mix_rate] if room_part is None else room_part
        if self.mix_rate != DEFAULT_MIX_RATE:
            resampler = self.own_resampler
            if resampler is None or resampler.out_rate != self.mix_rate:
                resampler = self.own_resampler = Resampler(DEFAULT_MIX_RATE, self.mix_rate)
            own = _to_rate(own, resampler)
        if room_part is not None:
            own += room_part
        return saturate16(own, in_place=True)  # own is this tick's temporary sum

    def _lone_frame(self, sources: list[FrameSource]) -> np.ndarray:
        source = sources[0]
        frame = source.next_frame()
        if frame is None:  # finished: dropped (and reported) as _sum_sources does
            del sources[0]
            if sources is self.sources and self.on_finished is not None:
                self.on_finished(source)
            return _SILENCE[self.mix_rate]
        return frame.copy()  # sources reuse their buffers; a tap may keep this frame


class RoomMedia:
    """A room as the engine sees it: its mixing rate, members in a stable order, and its own
    sources."""

    __slots__ = ("key", "members", "on_finished", "rate", "source_resampler", "sources", "taps")

    def __init__(self, key: str, rate: int = DEFAULT_MIX_RATE) -> None:
        if rate not in MIX_RATES:
            raise ValueError(f"a room mixes at one of {MIX_RATES}, not {rate}")
        self.key = key
        self.rate = rate
        self.members: list[LegMedia] = []
        self.sources: list[FrameSource] = []
        self.on_finished: Callable[[FrameSource], None] | None = None
        self.taps: list[RoomTap] = []
        self.source_resampler = Resampler(DEFAULT_MIX_RATE, rate) if rate != SAMPLE_RATE else None

    def sources_frame(self, voices: np.ndarray | None = None) -> np.ndarray | None:
        """This tick's sum of the room's sources and its members' `voices` (a 16 kHz int32
        sum) at its rate (int32), if any plays."""
        extra = _sum_sources(self.sources, self.on_finished) if self.sources else None
        if voices is not None:
            extra = voices if extra is None else extra + voices
        if extra is not None and self.source_resampler is not None:
            extra = _to_rate(extra, self.source_resampler)
        return extra


class _MixGroup:
    """Every room of one rate, mixed in one batch: the rooms with members, their members
    grouped room by room, and each room's row in the mixer's totals."""

    def __init__(self, rate: int) -> None:
        self.mixer = BatchMixer(samples_per_frame(rate))
        self.rooms: list[RoomMedia] = []
        self.members: list[LegMedia] = []
        self.index: dict[str, int] = {}

    def set_rooms(self, rooms: list[RoomMedia]) -> None:
        self.rooms = rooms
        self.members = [m for room in rooms for m in room.members]
        self.mixer.set_layout([len(room.members) for room in rooms])
        self.index = {room.key: i for i, room in enumerate(rooms)}


class MediaEngine:
    """Holds every participant with media and every room; runs one tick over all of them."""

    def __init__(self) -> None:
        self._legs: dict[str, LegMedia] = {}
        self._rooms: dict[str, RoomMedia] = {}
        self._layout_dirty = True
        self.forwarded = 0  # frames sent as another leg's packet (see _forwardable)
        self._voiced: dict[str, LegMedia] = {}  # legs that were given a voice (add_leg_voice)
        self._groups: dict[int, _MixGroup] = {}  # mix rate -> its rooms with members
        # (endpoint rate, mix rate) -> the lane converting between them
        self._lanes: dict[tuple[int, int], RateLane[LegMedia]] = {}

    def __len__(self) -> int:
        return len(self._legs)

    def attach(self, key: str, endpoint: MediaEndpoint) -> LegMedia:
        media = self._legs.get(key)
        if media is None:
            media = LegMedia(key, endpoint)
            self._legs[key] = media
        media.endpoint = endpoint
        return media

    def detach(self, key: str) -> None:
        media = self._legs.pop(key, None)
        self._voiced.pop(key, None)
        if media is not None:
            self.leave_room(media)
            self._unseat(media)

    # ---- sample rates ----

    def _rebind(self, media: LegMedia) -> None:
        """Follow an endpoint that changed codec, or a leg that moved to a room of another
        rate: a fresh seat in the lane of its new rates, and bulk G.711 coding if it is on
        G.711 (and in a lane)."""
        endpoint = media.endpoint
        endpoint.prefer_rate(media.mix_rate)
        law = endpoint.law
        if (
            endpoint.sample_rate != media.rate
            or media.mix_rate != media.bound_mix
            or (law is None) != (media.law is None)
        ):
            self._bind_rate(media, endpoint.sample_rate, law is not None)
        media.law = law
        media.coded = cast("G711Endpoint", endpoint) if law and media.seat else None

    def _bind_rate(self, media: LegMedia, rate: int, g711: bool) -> None:
        self._unseat(media)
        media.rate = rate
        media.bound_mix = mix = media.mix_rate
        # G.711 at its room's rate still gets a seat (in a lane that converts nothing): it is
        # decoded, measured and encoded in bulk with the lane's other legs.
        if rate != mix or g711:
            lane = self._lanes.get((rate, mix))
            if lane is None:
                lane = self._lanes[rate, mix] = RateLane(rate, mix)
            media.seat = lane.join(media)

    def _unseat(self, media: LegMedia) -> None:
        seat = media.seat
        if seat is not None:
            lane = seat.lane
            lane.leave(seat)
            media.seat = None
            if not lane.seats:
                del self._lanes[lane.rate, lane.mix_rate]

    def get(self, key: str) -> LegMedia | None:
        return self._legs.get(key)

    # ---- attachments ----

    def add_leg_tap(self, key: str, tap: LegTap) -> AttachmentHandle:
        """Feed `tap` with participant `key`'s audio from the next tick on."""
        media = self._require(key)
        media.taps.append(tap)
        return AttachmentHandle(media.taps, tap)

    def add_room_tap(self, room_key: str, tap: RoomTap) -> AttachmentHandle:
        """Feed `tap` with room `room_key`'s mix and members from the next tick on."""
        room = self._rooms.get(room_key)
        if room is None:
            raise KeyError(f"no room {room_key} in the engine")
        room.taps.append(tap)
        return AttachmentHandle(room.taps, tap)

    def add_leg_voice(self, key: str, source: FrameSource) -> AttachmentHandle:
        """Speak `source` on participant `key`'s behalf from the next tick on: into its room's
        mix while it is in one (everyone hears it, the leg too), else to the leg alone."""
        media = self._require(key)
        media.voices.append(source)
        self._voiced[key] = media
        return AttachmentHandle(media.voices, source)

    def add_analyser(self, key: str, analyser: Analyser) -> AttachmentHandle:
        """Let `analyser` hear what participant `key` says from the next tick on."""
        media = self._require(key)
        media.analysers.append(analyser)
        return AttachmentHandle(media.analysers, analyser)

    def _require(self, key: str) -> LegMedia:
        media = self._legs.get(key)
        if media is None:
            raise KeyError(f"no participant {key} in the engine")
        return media

    # ---- rooms ----

    def room(self, key: str, rate: int = DEFAULT_MIX_RATE) -> RoomMedia:
        """The room `key`, created at mixing rate `rate` if it does not exist yet."""
        room = self._rooms.get(key)
        if room is None:
            room = self._rooms[key] = RoomMedia(key, rate)
        return room

    def get_room(self, key: str) -> RoomMedia | None:
        return self._rooms.get(key)

    def drop_room(self, key: str) -> None:
        room = self._rooms.pop(key, None)
        if room is not None:
            for member in list(room.members):
                self.leave_room(member)
        self._layout_dirty = True

    def join_room(self, media: LegMedia, room_key: str) -> None:
        """Put a participant in a room, leaving its previous one in the same step."""
        target = self.room(room_key)
        if media.room is target:
            return
        self.leave_room(media)
        target.members.append(media)
        media.room = target
        media.mix_rate = target.rate  # a rate change rebinds the leg's lane on the next tick
        self._layout_dirty = True

    def leave_room(self, media: LegMedia) -> None:
        room = media.room
        if room is not None and media in room.members:
            room.members.remove(media)
        media.room = None
        media.room_out = None
        media.mix_rate = DEFAULT_MIX_RATE
        self._layout_dirty = True

    # ---- the tick ----

    def _mix_rooms(self) -> None:
        """Every room's mixed-minus-self, one batched step per mixing rate (see BatchMixer)."""
        if self._layout_dirty:
            by_rate: dict[int, list[RoomMedia]] = {}
            for room in self._rooms.values():
                if room.members:
                    by_rate.setdefault(room.rate, []).append(room)
            for rate in list(self._groups):
                if rate not in by_rate:
                    del self._groups[rate]
            for rate, rooms in by_rate.items():
                group = self._groups.get(rate)
                if group is None:
                    group = self._groups[rate] = _MixGroup(rate)
                group.set_rooms(rooms)
            self._layout_dirty = False
        voices: dict[str, np.ndarray] = {}  # room key -> its members' voices (16 kHz)
        for leg_key, media in list(self._voiced.items()) if self._voiced else ():
            if not media.voices:
                del self._voiced[leg_key]  # its voices were removed: no longer looked at
            elif media.room is not None:
                voice = _sum_sources(media.voices, None)
                if voice is not None:
                    room_key = media.room.key
                    known = voices.get(room_key)
                    voices[room_key] = voice if known is None else known + voice
        for group in self._groups.values():
            extras: dict[int, np.ndarray] = {}
            for index, room in enumerate(group.rooms):
                voice = voices.get(room.key) if voices else None
                if room.sources or voice is not None:
                    extra = room.sources_frame(voice)
                    if extra is not None:
                        extras[index] = extra
            members = group.members
            mixed = group.mixer.mix([None if m.muted else m.last_in for m in members], extras)
            for member, row in zip(members, mixed, strict=True):
                member.room_out = row

    @staticmethod
    def _forwardable(media: LegMedia) -> bytes | None:
        """The packet `media` can be sent as it is, instead of its heard frame encoded: it
        is in a room with one other leg on the same codec, whose whole packet is exactly
        what it hears this tick (nothing else plays, neither is muted/deaf). Transcoding
        nothing costs nothing and loses nothing."""
        room = media.room
        if room is None or len(room.members) != 2 or media.deaf or media.sources:
            return None
        first, second = room.members
        other = second if first is media else first
        if (
            other.muted
            or room.sources
            or media.voices
            or other.voices
            or other.endpoint.forward_key != media.endpoint.forward_key
        ):
            return None
        return cast("ForwardingEndpoint", other.endpoint).last_payload

    @staticmethod
    def _tap_leg(media: LegMedia, heard: np.ndarray) -> None:

        for tap in list(media.taps):
            try:
                tap.feed(media.last_in, heard, media.mix_rate)
            except Exception:  # a broken tap must not stop the clock for everyone
                log.exception("leg tap failed; removed")
                media.taps.remove(tap)

    def _tap_rooms(self) -> None:
        for room in self._rooms.values():
            if not room.taps:
                continue
            group = self._groups.get(room.rate) if room.members else None
            index = group.index.get(room.key) if group is not None else None
            if group is None or index is None:
                mix = _SILENCE[room.rate]
            else:
                mix = saturate16(group.mixer.totals[index])
            members = [(m.key, m.last_in) for m in room.members]
            for tap in list(room.taps):
                try:
                    tap.feed(mix, members, room.rate)
                except Exception:
                    log.exception("room tap failed; removed")
                    room.taps.remove(tap)

    @staticmethod
    def _analyse(media: LegMedia, frame: np.ndarray, level: float) -> None:
        for analyser in list(media.analysers):
            try:
                analyser.analyse(frame, media.mix_rate, level, media.muted)
            except Exception:  # a broken analyser must not stop the clock for everyone
                log.exception("analyser failed; removed")
                media.analysers.remove(analyser)

    def tick(self) -> None:
        legs = list(self._legs.values())
        for media in legs:
            endpoint = media.endpoint
            if (
                endpoint.sample_rate != media.rate
                or endpoint.law is not media.law
                or media.mix_rate != media.bound_mix
            ):
                self._rebind(media)
        lanes = list(self._lanes.values())

        for media in legs:
            seat = media.seat
            if seat is None:
                media.last_in = media.endpoint.read_frame()
                continue
            coded = media.coded
            frame: np.ndarray | bytes | None
            if coded is None:
                frame = media.endpoint.read_frame()
            else:
                frame = coded.read_encoded()
                if isinstance(frame, bytes):
                    assert media.law is not None
                    media.has_input = True
                    seat.lane.add_encoded(media.law, seat.row, frame)
                    continue
            media.has_input = frame is not None
            seat.lane.received[seat.row] = 0 if frame is None else frame
        for lane in lanes:
            lane.decode_encoded()
            # Levels for the analysers, all rows in one pass, taken at the lane's rate:
            # resampling keeps a speech band signal's power.
            levels = frames_dbfs(lane.received)
            converted = lane.into_rooms.run()
            for row, seat in enumerate(lane.seats):
                media = seat.owner
                if media.has_input:
                    media.last_in = said = converted[row]
                    if media.analysers:
                        self._analyse(media, said, float(levels[row]))
                else:
                    media.last_in = None
        for media in legs:  # the ones at their mix rate, measured one by one
            said_alone = media.last_in
            if media.analysers and said_alone is not None and media.seat is None:
                self._analyse(media, said_alone, frame_dbfs(said_alone))

        self._mix_rooms()
        self._tap_rooms()

        for media in legs:
            heard = media.heard_frame()
            if media.taps:
                self._tap_leg(media, heard)
            seat = media.seat
            if seat is None:
                payload = self._forwardable(media) if media.endpoint.forward_key else None
                if payload is None:
                    media.endpoint.write_frame(heard)
                else:
                    cast("ForwardingEndpoint", media.endpoint).forward(payload)
                    self.forwarded += 1
            else:
                seat.lane.to_send[seat.row] = heard
        for lane in lanes:
            converted = lane.from_rooms.run()
            size = lane.from_rooms.frame_out
            encoded: dict[G711Law, bytes] = {}
            for row, seat in enumerate(lane.seats):
                media = seat.owner
                coded = media.coded
                if coded is None:
                    media.endpoint.write_frame(converted[row])
                    continue
                assert media.law is not None
                data = encoded.get(media.law)
                if data is None:  # every row at once; rows on another law are ignored
                    data = encoded[media.law] = media.law.encode_rows(converted)
                coded.write_encoded(data[row * size : (row + 1) * size])
