"""DTMF as RTP events (RFC 4733): payload codec, a sender pacing events onto the 20 ms
tick, and a receiver that reports each key press exactly once."""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

DIGITS = "0123456789*#ABCD"
_EVENT_OF = {digit: event for event, digit in enumerate(DIGITS)}
_EVENT = struct.Struct("!BBH")

DEFAULT_VOLUME = 10  # -10 dBm0
END_RETRANSMISSIONS = 3  # end packets sent per event (RFC 4733 2.5.1.4)
INTER_DIGIT_GAP_MS = 60
MIN_DURATION_MS = 40
MAX_DURATION_MS = 5000


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    event: int
    end: bool
    volume: int
    duration: int  # timestamp units

    @property
    def digit(self) -> str | None:
        return DIGITS[self.event] if self.event < len(DIGITS) else None


def digit_to_event(digit: str) -> int:
    try:
        return _EVENT_OF[digit.upper()]
    except KeyError:
        raise ValueError(f"not a DTMF digit: {digit!r}") from None


def event_to_digit(event: int) -> str:
    if not 0 <= event < len(DIGITS):
        raise ValueError(f"not a DTMF event: {event}")
    return DIGITS[event]


def encode_event(event: int, end: bool, volume: int, duration: int) -> bytes:
    if not 0 <= event <= 255 or not 0 <= volume <= 63 or not 0 <= duration <= 0xFFFF:
        raise ValueError("DTMF event field out of range")
    return _EVENT.pack(event, (0x80 if end else 0) | volume, duration)


def decode_event(payload: bytes) -> DtmfEvent:
    if len(payload) < 4:
        raise ValueError("telephone-event payload shorter than 4 bytes")
    event, flags, duration = _EVENT.unpack_from(payload)
    return DtmfEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """What the session sends in one tick while an event is active."""

    payload: bytes
    timestamp: int  # the event's start timestamp, the same for all its packets
    marker: bool


class DtmfSender:
    """Turns queued digits into one packet per tick.

    Per digit: a first packet with the marker bit, updates every tick with a growing
    duration and the same timestamp, three end packets with the final duration, then a
    gap in which `next_packet` returns None (the caller sends audio again).
    """

    def __init__(self, clock_rate: int = 8000, ptime_ms: int = 20) -> None:
        self.clock_rate = clock_rate
        self._step = clock_rate * ptime_ms // 1000
        self._gap_ticks = max(1, INTER_DIGIT_GAP_MS // ptime_ms)
        self._ptime_ms = ptime_ms
        self._queue: deque[tuple[int, int]] = deque()  # (event, duration in ts units)
        self._event: int | None = None
        self._start_ts = 0
        self._duration = 0
        self._target = 0
        self._ends_sent = 0
        self._gap = 0

    @property
    def active(self) -> bool:
        """An event is being sent (audio must be suppressed in this tick)."""
        return self._event is not None or (bool(self._queue) and self._gap == 0)

    @property
    def busy(self) -> bool:
        return self._event is not None or bool(self._queue) or self._gap > 0

    def queue(self, digits: str, duration_ms: int = 100) -> None:
        events = [digit_to_event(d) for d in digits]  # validate all before queueing any
        duration_ms = min(MAX_DURATION_MS, max(MIN_DURATION_MS, duration_ms))
        # Whole ticks, so the final duration is one the updates actually reach.
        ticks = max(1, -(-duration_ms // self._ptime_ms))
        self._queue.extend((event, ticks * self._step) for event in events)

    def clear(self) -> None:
        self._queue.clear()
        self._event = None
        self._gap = 0

    def next_packet(self, timestamp: int) -> DtmfPacket | None:
        """The event packet for the tick whose audio would carry `timestamp`, if any."""
        if self._event is None:
            if self._gap:
                self._gap -= 1
                return None
            if not self._queue:
                return None
            self._event, self._target = self._queue.popleft()
            self._start_ts = timestamp
            self._duration = self._step
            self._ends_sent = 0
            return DtmfPacket(
                encode_event(self._event, False, DEFAULT_VOLUME, self._duration),
                self._start_ts,
                True,
            )
        if self._duration < self._target:
            self._duration += self._step
        if self._duration < self._target:
            return DtmfPacket(
                encode_event(self._event, False, DEFAULT_VOLUME, self._duration),
                self._start_ts,
                False,
            )
        packet = DtmfPacket(
            encode_event(self._event, True, DEFAULT_VOLUME, self._duration), self._start_ts, False
        )
        self._ends_sent += 1
        if self._ends_sent >= END_RETRANSMISSIONS:
            self._event = None
            self._gap = self._gap_ticks
        return packet


class DtmfReceiver:
    """Reports each event once, keyed by its RTP timestamp.

    The first packet seen for a new timestamp reports the digit, whichever it is (start,
    update, or end when the earlier ones were lost); retransmitted end packets and updates
    of an event already reported are ignored. The same digit pressed again arrives with a
    new timestamp and is reported again.
    """

    def __init__(self, memory: int = 16) -> None:
        self._seen: deque[int] = deque(maxlen=memory)

    def feed(self, timestamp: int, payload: bytes) -> str | None:
        event = decode_event(payload)
        digit = event.digit
        if digit is None or timestamp in self._seen:
            return None
        self._seen.append(timestamp)
        return digit
