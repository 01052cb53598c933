"""The event side of the VSI stream, independent of the WebSocket that carries it.

A subscriber is a bounded buffer between the bus (synchronous, must never wait) and one
client's sender task (asynchronous, as slow as the client). A slow client loses events, is
told how many, and never stalls the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import deque
from typing import Any

from callboard.events.bus import Envelope, event_json, utc_timestamp

logger = logging.getLogger(__name__)

# Remembered app_id verdicts per subscriber; app_ids are few, and a client-supplied regex is
# the costly part of the filter. Cleared wholesale when full rather than tracked as an LRU.
_MATCH_CACHE_SIZE = 1024
# Control messages (pings, command replies) are few and paced by the client's own commands;
# the cap only guards against a client that sends commands but never reads the replies.
MAX_CONTROLS = 1024


class VsiClosed(Exception):
    """The subscriber was closed; its sender should stop."""


class _Outgoing:
    """One event on its way to subscribers; serialised at most once for all of them."""

    __slots__ = ("_text", "event")

    def __init__(self, event: Envelope) -> None:
        self.event = event
        self._text: str | None = None

    def text(self) -> str:
        # Serialised lazily by the first sender, off the publisher's stack.
        if self._text is None:
            self._text = event_json(self.event)
        return self._text


class _DropMarker:
    """Stands in the buffer exactly where events were lost, counting them."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


def dropped_notice(count: int) -> str:
    # A timestamp like every event's, so clients that parse every message as one (the
    # VoiceBlender SDK's parse_event) take the notice too.
    notice = {"type": "events_dropped", "count": count, "timestamp": utc_timestamp()}
    return json.dumps(notice, separators=(",", ":"))


class VsiSubscriber:
    def __init__(self, app_id_pattern: str | None = None, max_buffer: int = 256) -> None:
        """Raises ValueError for an invalid regex or a max_buffer below 1."""
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        try:
            # An empty pattern (`?app_id=`) means no filter, not "events that have an app_id".
            self._pattern = re.compile(app_id_pattern) if app_id_pattern else None
        except re.error as exc:
            raise ValueError(f"invalid app_id regex: {exc}") from exc
        self._max_buffer = max_buffer
        # One FIFO for events and control texts so that the client sees them in the order
        # they were offered; only events count against max_buffer.
        self._buffer: deque[_Outgoing | _DropMarker | str] = deque()
        self._events_buffered = 0
        self._controls_buffered = 0
        self.dropped_total = 0
        self.controls_dropped = 0
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._verdicts: dict[str, bool] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> int:
        """Messages (events and controls) waiting for next_message."""
        return len(self._buffer)

    def matches(self, event: Envelope) -> bool:
        if self._pattern is None:
            return True
        app_id = event.get("app_id")
        if not isinstance(app_id, str):
            return False
        verdict = self._verdicts.get(app_id)
        if verdict is None:
            if len(self._verdicts) >= _MATCH_CACHE_SIZE:
                self._verdicts.clear()
            verdict = self._pattern.search(app_id) is not None
            self._verdicts[app_id] = verdict
        return verdict

    def offer(self, event: Envelope) -> None:
        """Filter and buffer one event. Never blocks."""
        self._offer(_Outgoing(event))

    def _offer(self, outgoing: _Outgoing) -> None:
        if self._closed or not self.matches(outgoing.event):
            return
        if self._events_buffered >= self._max_buffer:
            # The notice goes where the gap is: after the older events still buffered and
            # before the next event delivered, so a client that resyncs on it sees no stale
            # events afterwards.
            marker = self._buffer[-1] if self._buffer else None
            if not isinstance(marker, _DropMarker):
                marker = _DropMarker()
                self._buffer.append(marker)
            marker.count += 1
            self.dropped_total += 1
            return
        self._buffer.append(outgoing)
        self._events_buffered += 1
        self._wake()

    def offer_control(self, message: dict[str, Any]) -> None:
        """Queue a non-event message (ping, command reply): never filtered, not counted
        against max_buffer, sent in FIFO order with the events."""
        if self._closed:
            return
        if self._controls_buffered >= MAX_CONTROLS:
            self.controls_dropped += 1
            if self.controls_dropped == 1:
                logger.warning("VSI client is not reading; dropping control messages")
            return
        self._buffer.append(event_json(message))
        self._controls_buffered += 1
        self._wake()

    async def next_message(self) -> str:
        """The next JSON text to send; waits while there is none. Raises VsiClosed."""
        while True:
            if self._closed:
                raise VsiClosed
            if self._buffer:
                entry = self._buffer.popleft()
                if isinstance(entry, _DropMarker):
                    return dropped_notice(entry.count)
                if isinstance(entry, str):
                    self._controls_buffered -= 1
                    return entry
                self._events_buffered -= 1
                return entry.text()
            if self._waiter is not None:
                raise RuntimeError("VsiSubscriber.next_message has one consumer at a time")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Stop buffering and wake the sender, whose next_message then raises VsiClosed."""
        self._closed = True
        self._buffer.clear()
        self._events_buffered = self._controls_buffered = 0
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class VsiHub:
    """A bus sink that fans events out to every connected VSI subscriber."""

    def __init__(self) -> None:
        # Copy-on-write so that a subscriber leaving mid fan-out cannot break the iteration.
        self._subscribers: tuple[VsiSubscriber, ...] = ()

    def __call__(self, event: Envelope) -> None:
        if not self._subscribers:
            return
        outgoing = _Outgoing(event)
        for subscriber in self._subscribers:
            subscriber._offer(outgoing)

    def subscribe(self, sub: VsiSubscriber) -> None:
        if sub not in self._subscribers:
            self._subscribers = (*self._subscribers, sub)

    def unsubscribe(self, sub: VsiSubscriber) -> None:
        self._subscribers = tuple(s for s in self._subscribers if s is not sub)

    @property
    def count(self) -> int:
        return len(self._subscribers)

    def close_all(self) -> None:
        """On shutdown: close and forget every subscriber, waking their senders."""
        subscribers, self._subscribers = self._subscribers, ()
        for sub in subscribers:
            sub.close()
