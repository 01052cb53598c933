"""Events: the bus and its sinks (webhooks, the VSI stream, Prometheus metrics)."""

from callboard.events.bus import Event, EventBus, event_json, utc_timestamp
from callboard.events.metrics import Metrics
from callboard.events.vsi import VsiClosed, VsiHub, VsiSubscriber
from callboard.events.webhooks import WebhookSink, WebhookStats, WebhookTarget, sign

__all__ = [
    "Event",
    "EventBus",
    "Metrics",
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
