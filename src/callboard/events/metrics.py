"""Prometheus metrics for GET /metrics.

A private CollectorRegistry (not the library's global one) so that tests and several app
instances in one process never collide over metric names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from callboard.events.webhooks import WebhookSink

logger = logging.getLogger(__name__)

# Calls run from a second (a rejected or abandoned call) to hours (a conference); the
# buckets are denser where IVR and agent calls cluster and reach 2 h.
CALL_DURATION_BUCKETS: tuple[float, ...] = (
    1, 2, 5, 10, 15, 30, 45, 60, 90, 120, 180, 300, 450, 600, 900, 1200, 1800, 2700, 3600,
    5400, 7200,
)  # fmt: skip

GaugeSource = Callable[[], float]


class TickStatsSource(Protocol):
    skipped: int

    def lateness_percentile(self, q: float) -> float: ...

    def busy_percentile(self, q: float) -> float: ...


def _zero() -> int:
    return 0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

        self._active_legs_source: GaugeSource = _zero
        self._active_rooms_source: GaugeSource = _zero
        # Gauges read their source at scrape time, so the hot path never updates them.
        Gauge(
            "callboard_active_legs", "Legs that currently exist", registry=self.registry
        ).set_function(lambda: self._read("active_legs", self._active_legs_source))
        Gauge(
            "callboard_active_rooms", "Rooms that currently exist", registry=self.registry
        ).set_function(lambda: self._read("active_rooms", self._active_rooms_source))

        self._legs_total = Counter(
            "callboard_legs_total",
            "Legs entering each state, by leg type",
            ["type", "state"],
            registry=self.registry,
        )
        self._disconnect_reasons = Counter(
            "callboard_disconnect_reasons_total",
            "Ended legs by disconnect reason",
            ["type", "reason"],
            registry=self.registry,
        )
        self._call_duration = Histogram(
            "callboard_call_duration_seconds",
            "Answered duration of ended legs that were answered",
            ["type"],
            buckets=CALL_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._call_total_duration = Histogram(
            "callboard_call_total_duration_seconds",
            "Duration of ended legs from creation to end",
            ["type"],
            buckets=CALL_DURATION_BUCKETS,
            registry=self.registry,
        )

    def add_media_clock(self, stats: TickStatsSource) -> None:
        """Expose the media clock's recent tick lateness and busy time (read at scrape)."""
        quantiles = (("0.5", 50.0), ("0.99", 99.0))
        late = Gauge(
            "callboard_media_tick_lateness_seconds",
            "How late media ticks ran past their deadline (recent window)",
            ["quantile"],
            registry=self.registry,
        )
        busy = Gauge(
            "callboard_media_tick_busy_seconds",
            "Time spent inside one media tick (recent window)",
            ["quantile"],
            registry=self.registry,
        )
        for label, q in quantiles:
            late.labels(quantile=label).set_function(partial(stats.lateness_percentile, q))
            busy.labels(quantile=label).set_function(partial(stats.busy_percentile, q))
        Gauge(
            "callboard_media_ticks_skipped",
            "Media ticks skipped after a stall",
            registry=self.registry,
        ).set_function(lambda: stats.skipped)

    def add_forwarding(self, frames: Callable[[], int]) -> None:
        """Frames sent on as the one other leg's packets instead of re-encoded (read at
        scrape from the media engine's counter)."""
        Gauge(
            "callboard_media_frames_forwarded",
            "Frames a leg was sent as the packet of the one leg it hears, not re-encoded",
            registry=self.registry,
        ).set_function(frames)

    def add_resources(self, rtp_ports: Callable[[], int], tasks: Callable[[], int]) -> None:
        """What a finished call must give back, for leak checks: RTP port pairs held and
        asyncio tasks alive (file descriptors and memory are the process collector's)."""
        Gauge(
            "callboard_rtp_port_pairs_in_use",
            "RTP/RTCP port pairs bound by legs (SIP and WebRTC)",
            registry=self.registry,
        ).set_function(lambda: self._read("rtp_ports", rtp_ports))
        Gauge(
            "callboard_asyncio_tasks", "asyncio tasks alive in the server", registry=self.registry
        ).set_function(lambda: self._read("tasks", tasks))

    def add_webhooks(self, sink: WebhookSink) -> None:
        """Per-destination webhook counters and breaker state, read at scrape time."""
        self.registry.register(_WebhookCollector(sink))

    def add_sip_transport(self, stats: dict[str, int]) -> None:
        """SIP requests the inbound gate refused (answered) or dropped (SIP_SILENT_DROP)."""
        self.registry.register(_SipGateCollector(stats))

    def set_gauge_sources(
        self, active_legs: Callable[[], int], active_rooms: Callable[[], int]
    ) -> None:
        self._active_legs_source = active_legs
        self._active_rooms_source = active_rooms

    @staticmethod
    def _read(name: str, source: GaugeSource) -> float:
        # A failing source must not turn the whole scrape into a 500.
        try:
            return float(source())
        except Exception:
            logger.exception("metrics source %s raised", name)
            return math.nan

    def leg_state(self, leg_type: str, state: str) -> None:
        self._legs_total.labels(type=leg_type, state=state).inc()

    def leg_ended(
        self, leg_type: str, reason: str, answered_seconds: float, total_seconds: float
    ) -> None:
        self._disconnect_reasons.labels(type=leg_type, reason=reason).inc()
        if math.isfinite(answered_seconds) and answered_seconds > 0:
            self._call_duration.labels(type=leg_type).observe(answered_seconds)
        if math.isfinite(total_seconds):
            # Clock skew could give a tiny negative; a duration is never below zero.
            self._call_total_duration.labels(type=leg_type).observe(max(0.0, total_seconds))

    def render(self) -> tuple[bytes, str]:
        """Body and Content-Type for GET /metrics."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SipGateCollector(Collector):
    def __init__(self, stats: dict[str, int]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        screened = CounterMetricFamily(
            "callboard_sip_requests_screened",
            "Inbound SIP requests refused by policy (allow-list, rate limit, capacity, auth)",
            labels=["action"],
        )
        screened.add_metric(["refused"], self._stats.get("refused_by_policy", 0))
        screened.add_metric(["dropped"], self._stats.get("dropped_by_policy", 0))
        yield screened


class _WebhookCollector(Collector):
    def __init__(self, sink: WebhookSink) -> None:
        self._sink = sink

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "callboard_webhook_events",
            "Webhook events per destination: delivered, retried (attempts after the first), "
            "failed (all attempts used), dropped (queue full or closed)",
            labels=["destination", "outcome"],
        )
        tripped = GaugeMetricFamily(
            "callboard_webhook_circuit_open",
            "1 while a destination's circuit breaker is open or probing",
            labels=["destination"],
        )
        for name, destination in list(self._sink.destinations.items()):
            stats = destination.stats
            for outcome in ("delivered", "retried", "failed", "dropped"):
                events.add_metric([name, outcome], getattr(stats, outcome))
            tripped.add_metric([name], 1.0 if destination.tripped else 0.0)
        yield events
        yield tripped
        yield GaugeMetricFamily(
            "callboard_webhook_queued", "Webhook events waiting or in flight", self._sink.queued
        )
