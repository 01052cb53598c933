"""Adaptive jitter buffer of undecoded RTP payloads, played out one packet per tick.

Payloads are kept by extended sequence number and decoded by the caller at pop time, so
stateful decoders see packets strictly in order. Delay adapts between 1 and 6 frames:
the target grows at once when the spread of packet transit times grows, and shrinks by
one frame at a time after a quiet period; a buffer that stays fuller than its target for
a whole second drops one packet to give the latency back. So does one whose every packet,
for a whole second, waited more than a frame (plus a margin) between arriving and playing:
the frame a single late packet added stays otherwise, since the depth alone cannot tell it
from a stream that arrives just after the tick and needs it. With an `is_quiet` test
(G.711) the dropped packet is a quiet one within the next second where there is one, so the
cut falls in a pause rather than in the middle of a word.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Final, Literal


class Gap(enum.Enum):
    """Marker returned by pop() for a packet that should have played but is not there."""

    MISSING = "missing"


MISSING: Final = Gap.MISSING

PopResult = bytes | Literal[Gap.MISSING] | None

MAX_DEPTH_FRAMES = 6
CAPACITY = 16  # packets held at most; beyond that the oldest are dropped
RESYNC_JUMP = 50  # a sequence jump this big (1 s at 20 ms) means a new stream
_DELAY_WINDOW = 64  # transit-time samples kept for the jitter estimate
_EVALUATE_EVERY = 25  # packets between target re-evaluations (0.5 s at 20 ms)
_SHRINK_AFTER = 4  # evaluations below target before it shrinks by one frame (~2 s)
_DRAIN_WINDOW = 50  # pops over which a standing excess is measured (1 s)
_TIMELINE_JUMP_MS = 1000.0  # a transit step this big is a timestamp jump, not jitter
# Wait between a packet's arrival and its playing beyond one frame that still counts as
# needed: the clock's own lateness and the sender's pacing wobble by a few milliseconds.
_SLACK_MARGIN_MS = 5.0


class JitterBuffer:
    """Reorders, de-duplicates and paces RTP payloads for a 20 ms playout tick."""

    def __init__(self, clock_rate: int = 8000, frame_ms: int = 20) -> None:
        self._clock_rate = clock_rate
        self._ms_per_tick = 1000.0 / clock_rate
        self._frame_ms = frame_ms
        self._slots: dict[int, bytes] = {}
        self._arrived: dict[int, float] = {}  # arrival times, for the wait at pop
        self._next = 0  # extended sequence number due at the next pop
        self._highest = -1
        self._started = False  # any packet seen since the last resync
        self._playing = False
        self._underrun = False
        self.target = 1
        # Statistics.
        self.late = 0
        self.duplicate = 0
        self.overflow = 0
        self.lost = 0
        self.drained = 0
        self.resyncs = 0
        # Transit-time estimate: arrival minus media time, in ms, ring buffer.
        self._transit = [0.0] * _DELAY_WINDOW
        self._transit_count = 0
        self._last_transit = 0.0
        self._quiet_evaluations = 0
        self._window_pops = 0
        self._window_min_depth = CAPACITY
        self._window_min_wait = math.inf  # seconds, over the packets popped on time
        # Whether a payload is near silence (set by the owner when its codec allows telling);
        # and how many more pops a pending drain may wait for such a payload.
        self.is_quiet: Callable[[bytes], bool] | None = None
        self._drain_due = 0
        self._drain_floor = 1

    @property
    def depth(self) -> int:
        """Frames between the play point and the newest packet (including gaps)."""
        return max(0, self._highest - self._next + 1)

    @property
    def buffered(self) -> int:
        return len(self._slots)

    @property
    def playing(self) -> bool:
        return self._playing

    def set_clock_rate(self, clock_rate: int) -> None:
        """RTP clock of the payloads (after a codec change); used for the jitter estimate."""
        if clock_rate != self._clock_rate:
            self._clock_rate = clock_rate
            self._ms_per_tick = 1000.0 / clock_rate
            self._transit_count = 0

    def resync(self) -> None:
        """Forget the stream (new SSRC, big jump): the next packet starts playout afresh."""
        self._slots.clear()
        self._arrived.clear()
        self._started = False
        self._playing = False
        self._underrun = False
        self._transit_count = 0
        self._drain_due = 0
        self.resyncs += 1

    def push(self, seq: int, timestamp: int, payload: bytes, arrival: float) -> None:
        """Store a payload. An empty payload counts as a frame but not for timing."""
        if not self._started:
            self._started = True
            self._next = self._highest = seq
            self._slots[seq] = payload
            self._arrived[seq] = arrival
            self._note_transit(timestamp, payload, arrival)
            return
        delta = ((seq - self._next + 0x8000) & 0xFFFF) - 0x8000
        if delta < -RESYNC_JUMP or delta >= RESYNC_JUMP:
            self.resync()
            self.push(seq, timestamp, payload, arrival)
            return
        ext = self._next + delta
        if delta < 0:
            if self._playing:
                self.late += 1
                return
            self._next = ext  # reordered ahead of the first packet, before playout
        slots = self._slots
        if ext in slots:
            self.duplicate += 1
            return
        slots[ext] = payload
        self._arrived[ext] = arrival
        if len(self._arrived) > 2 * CAPACITY:  # entries of packets dropped or drained
            self._arrived = {k: v for k, v in self._arrived.items() if k >= self._next}
        if ext > self._highest:
            self._highest = ext
            if ext - self._next >= CAPACITY:
                self._drop_oldest()
        self._note_transit(timestamp, payload, arrival)

    def _drop_oldest(self) -> None:
        while self._highest - self._next + 1 > CAPACITY:
            if self._slots.pop(self._next, None) is not None:
                self.overflow += 1
            self._next += 1

    def pop(self, now: float | None = None) -> PopResult:
        """Next payload; MISSING when one is due but absent; None before playout starts.
        `now` (the clock `push` was given) lets a standing extra frame be seen and dropped."""
        if not self._playing:
            if not self._slots or self.depth < self.target:
                return None
            self._playing = True
            self._underrun = False
        depth = self._highest - self._next + 1
        if depth < self._window_min_depth:
            self._window_min_depth = depth
        self._window_pops += 1
        if self._window_pops >= _DRAIN_WINDOW:
            self._end_drain_window()
        payload = self._slots.pop(self._next, None)
        if payload is not None:
            arrival = self._arrived.pop(self._next, None)
            if now is not None and arrival is not None and now - arrival < self._window_min_wait:
                self._window_min_wait = now - arrival
            self._next += 1
            self._underrun = False
            if self._drain_due:
                return self._drain_if_quiet(payload)
            return payload
        if not self._slots:
            # Nothing buffered: the packet is late, not lost. Hold the play point so it
            # still plays when it comes (which adds a frame of delay).
            self._underrun = True
            return MISSING
        if self._underrun:
            # The stream resumed after a stall; the gap has already been concealed in
            # real time, so resume at the oldest buffered packet.
            self._next = min(self._slots)
            self._underrun = False
            payload = self._slots.pop(self._next)
            self._next += 1
            return payload
        if self.depth > self.target:
            self._next += 1
            self.lost += 1
            return MISSING
        return MISSING  # possibly reordered: wait one more tick for it

    def _end_drain_window(self) -> None:
        # A buffer that never ran below target + 1 for a second holds needless latency; so
        # does one whose every packet waited over a frame to play.
        deep = self._window_min_depth > self.target + 1
        waited = self._window_min_wait * 1000.0 > self._frame_ms + _SLACK_MARGIN_MS  # inf: none
        if (deep or (waited and self._window_min_wait != math.inf)) and self._slots:
            # The depth, after a pop, at which the excess is gone: the target, or one frame
            # less when the excess is the wait (the depth then only needs the next packet).
            self._drain_floor = self.target if deep else self.target - 1
            if self.is_quiet is not None:
                self._drain_due = _DRAIN_WINDOW  # cut at the next quiet packet (see pop)
            else:
                oldest = min(self._slots)
                del self._slots[oldest]
                self._next = max(self._next, oldest + 1)
                self.drained += 1
        self._window_pops = 0
        self._window_min_depth = CAPACITY
        self._window_min_wait = math.inf

    def _drain_if_quiet(self, payload: bytes) -> bytes:
        """During a pending drain: skip `payload` if it is quiet (or the wait is over) and
        the next packet is here to play instead."""
        self._drain_due -= 1
        if self.depth <= self._drain_floor:  # the excess has gone by itself
            self._drain_due = 0
            return payload
        assert self.is_quiet is not None
        if self._drain_due and not self.is_quiet(payload):
            return payload
        following = self._slots.pop(self._next, None)
        if following is None:  # nothing to play instead: keep looking
            self._drain_due = max(self._drain_due, 1)
            return payload
        self._next += 1
        self._drain_due = 0
        self.drained += 1
        return following

    def _note_transit(self, timestamp: int, payload: bytes, arrival: float) -> None:
        if not payload:  # placeholders may repeat a timestamp
            return
        transit = arrival * 1000.0 - timestamp * self._ms_per_tick
        count = self._transit_count
        if count and abs(transit - self._last_transit) > _TIMELINE_JUMP_MS:
            count = 0  # the sender's timestamps jumped (or wrapped): start a new window
        self._last_transit = transit
        self._transit[count & (_DELAY_WINDOW - 1)] = transit
        self._transit_count = count + 1
        if (count + 1) % _EVALUATE_EVERY == 0:
            self._evaluate_target()

    def _evaluate_target(self) -> None:
        count = min(self._transit_count, _DELAY_WINDOW)
        if count < 8:
            return
        samples = sorted(self._transit[:count])
        spread = samples[(count - 1) * 95 // 100] - samples[0]
        wanted = min(MAX_DEPTH_FRAMES, max(1, math.ceil(spread / self._frame_ms)))
        if wanted > self.target:
            self.target = wanted
            self._quiet_evaluations = 0
        elif wanted < self.target:
            self._quiet_evaluations += 1
            if self._quiet_evaluations >= _SHRINK_AFTER:
                self.target -= 1
                self._quiet_evaluations = 0
        else:
            self._quiet_evaluations = 0
