"""Events: typed events, the bus and its sinks (webhooks, the VSI stream, Prometheus metrics)."""

from callboard.events.base import Event, LegEvent, LegOrRoomEvent, RoomEvent
from callboard.events.bus import Envelope, EventBus, event_json, utc_timestamp
from callboard.events.metrics import Metrics
from callboard.events.types import EVENT_TYPES
from callboard.events.vsi import VsiClosed, VsiHub, VsiSubscriber
from callboard.events.webhooks import WebhookSink, WebhookStats, WebhookTarget, sign

__all__ = [
    "EVENT_TYPES",
    "Envelope",
    "Event",
    "EventBus",
    "LegEvent",
    "LegOrRoomEvent",
    "Metrics",
    "RoomEvent",
    "VsiClosed",
    "VsiHub",
    "VsiSubscriber",
    "WebhookSink",
    "WebhookStats",
    "WebhookTarget",
    "event_json",
    "sign",
    "utc_timestamp",
]
