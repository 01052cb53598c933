"""The in-process event bus: typed events in, one JSON envelope out, handed synchronously to
every sink.

Publishers include the media clock and SIP datagram callbacks, so `publish` is cheap, never
awaits and never raises. Sinks only enqueue; delivery (HTTP, WebSocket) happens in their own
tasks.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from callboard.events.base import Event, payload_keys

logger = logging.getLogger(__name__)

Envelope = dict[str, Any]
"""An event on the wire: `type`, `event_id` (a UUID), `timestamp`, `instance_id`, the ids of
the leg or room it is about, `app_id` when that leg or room has one, and the event's own
fields, flat."""

Sink = Callable[[Envelope], None]


def utc_timestamp(now: datetime | None = None) -> str:
    """RFC 3339 UTC with millisecond precision and a `Z` suffix."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    # Publishers should pass plain JSON types, but a stray Enum or set must not cost the event.
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    return str(value)


def _finite(value: Any) -> Any:
    """A copy of `value` with NaN/Infinity replaced by None (they are not valid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def event_json(event: Envelope) -> str:
    """The wire form shared by webhooks, VSI and anything else: compact JSON text."""
    try:
        return json.dumps(
            event, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        )
    except ValueError:
        # Only reached for NaN/Infinity (e.g. a MOS computed from no samples): send null.
        return json.dumps(
            _finite(event), separators=(",", ":"), ensure_ascii=False, default=_json_default
        )


class EventBus:
    """Builds envelopes and fans them out to sinks, synchronously and in publish order."""

    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        # Copy-on-write tuple: publish iterates without copying, and a sink added or removed
        # while an event is being fanned out takes effect from the next event.
        self._sinks: tuple[Sink, ...] = ()

    def add_sink(self, sink: Sink) -> None:
        self._sinks = (*self._sinks, sink)

    def remove_sink(self, sink: Sink) -> None:
        # Equality, not identity: `obj.method` builds a new bound method on every access.
        self._sinks = tuple(s for s in self._sinks if s != sink)

    @property
    def sink_count(self) -> int:
        return len(self._sinks)

    def publish(
        self,
        event: Event,
        *,
        leg_id: str | None = None,
        room_id: str | None = None,
        app_id: str | None = None,
    ) -> Envelope:
        """Build the envelope, hand it to every sink, return it. Never raises.

        The ids and `app_id` come from the owner's publish helper (see events/base.py); like
        the event's own fields, they are sent only when not None. Sinks share the returned
        dict and must treat it as read-only.
        """
        kind = event.type
        envelope: Envelope = {
            "type": kind,
            # Stable across webhook retries and the VSI: receivers drop duplicates by it.
            "event_id": str(uuid.uuid4()),
            "timestamp": utc_timestamp(),
            "instance_id": self.instance_id,
        }
        try:
            if leg_id is not None:
                envelope["leg_id"] = leg_id
            if room_id is not None:
                envelope["room_id"] = room_id
            if app_id is not None:
                envelope["app_id"] = app_id
            # The keys are worked out once per class: no dataclass reflection per event.
            for attribute, key in payload_keys(type(event)):
                value = getattr(event, attribute)
                if value is not None:
                    envelope[key] = value
            if logger.isEnabledFor(logging.DEBUG):
                # Debug only: events carry caller content (DTMF digits, transcripts).
                logger.debug("event %s", event_json(envelope))
        except Exception:
            logger.exception("event %s: could not build or log the envelope", kind)
        for sink in self._sinks:
            try:
                sink(envelope)
            except Exception:
                logger.exception("event sink %r raised on %s; skipped", sink, kind)
        return envelope
