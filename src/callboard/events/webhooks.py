"""Webhook delivery: a bus sink that POSTs each event to the URL its resolver picks.

Scheduling model (why it looks like this):

- Every pending event sits in a *lane* keyed by its ordering key (leg_id, else room_id, else
  URL). Only the head of a lane is ever in flight, so events of one key arrive in publish
  order and a retrying event holds back the rest of its lane.
- A lane exists only while it holds events; an idle key costs nothing. A key is at any moment
  in exactly one place: the ready queue, a worker, or a backoff timer.
- A fixed pool of `concurrency` workers takes ready keys and makes ONE attempt each. Backoff
  waits are timers, not sleeping workers, so a dead endpoint in backoff does not occupy the
  slots that other keys need.
- After an attempt the key goes to the back of the ready queue, so one busy leg cannot starve
  the others.
- Each destination (scheme, host and port) has a circuit breaker: after BREAKER_THRESHOLD
  failed attempts in a row it opens for a cool-down (doubling up to BREAKER_MAX_COOLDOWN);
  its lanes then wait on a timer without attempting, and the first attempt after the
  cool-down probes it. A tripped destination holds at most half the queue, so one that is
  down for minutes cannot crowd out the others; past that its new events are dropped and
  counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import httpx

from callboard.events.bus import Envelope, event_json
from callboard.outbound_guard import GuardedTransport
from callboard.tls import client_context

logger = logging.getLogger(__name__)

USER_AGENT = "callboard"
# Webhook receivers answer with a few bytes; reading more would let one buy our memory.
_MAX_RESPONSE_BYTES = 64 * 1024
# Queue-full warnings are rate limited: under overload the log must not become the load.
_DROP_WARNING_INTERVAL = 5.0
# Backoff delays are stretched by up to this fraction so that retries to one endpoint spread out.
_JITTER = 0.1
BREAKER_THRESHOLD = 5  # failed attempts in a row that open a destination's breaker
BREAKER_COOLDOWN = 5.0  # first open period, seconds; doubles while probes keep failing
BREAKER_MAX_COOLDOWN = 60.0
MAX_QUEUED_S = 15 * 60  # an event still undelivered this long after it was queued is given up
_MAX_DESTINATIONS = 1024  # destinations remembered for stats; idle ones are forgotten first


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str | None = None

    def __repr__(self) -> str:
        # Keep the secret out of any log line or traceback that formats a target.
        hidden = None if self.secret is None else "***"
        return f"WebhookTarget(url={self.url!r}, secret={hidden!r})"


def sign(body: bytes, secret: str) -> str:
    """The `X-Signature-256` value: "sha256=" + hex HMAC-SHA256 of the exact body bytes."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def redact_url(url: str) -> str:
    """The URL for logs: no userinfo, no query (both are common places for tokens)."""
    try:
        parsed = httpx.URL(url)
        shown = str(parsed.copy_with(username=None, password=None, query=None, fragment=None))
        return shown + ("?..." if parsed.query else "")
    except Exception:
        return "<unparseable url>"


@dataclass
class WebhookStats:
    delivered: int = 0
    failed: int = 0  # gave up after all attempts
    dropped: int = 0  # queue full, or still undelivered when close() gave up
    retried: int = 0  # attempts after the first


@dataclass
class Destination:
    """One receiver (scheme://host:port): its counters and its circuit breaker."""

    threshold: int = BREAKER_THRESHOLD
    first_cooldown: float = BREAKER_COOLDOWN
    stats: WebhookStats = field(default_factory=WebhookStats)
    outstanding: int = 0
    failures_in_a_row: int = 0
    open_until: float = 0.0  # loop time; the breaker is open before it
    cooldown: float = BREAKER_COOLDOWN

    def is_open(self, now: float) -> bool:
        return now < self.open_until

    @property
    def tripped(self) -> bool:
        """Open, or probing after being open: not known to be back."""
        return self.failures_in_a_row >= self.threshold

    def succeeded(self) -> None:
        self.failures_in_a_row = 0
        self.cooldown = self.first_cooldown

    def failed(self, now: float) -> bool:
        """Count a failed attempt; True when it opens the breaker. Attempts that were in
        flight when it opened do not open it again (nor lengthen the cool-down)."""
        if self.is_open(now):
            return False
        self.failures_in_a_row += 1
        if self.failures_in_a_row < self.threshold:
            return False
        self.open_until = now + self.cooldown
        self.cooldown = min(self.cooldown * 2, BREAKER_MAX_COOLDOWN)
        return True


def destination_of(url: str) -> str:
    """The receiver a URL names, for the breaker and the metrics' label."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return f"{parsed.scheme}://{parsed.host}:{port}"
    except Exception:
        return "<unparseable url>"


@dataclass(slots=True)
class _Delivery:
    target: WebhookTarget
    event: Envelope
    attempts: int = 0
    probes: int = 0  # attempts made as the probe of a tripped destination
    queued_at: float = field(default_factory=time.monotonic)
    last_outcome: str = ""
    # Serialised and signed once, on the first attempt, so every retry sends identical bytes.
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def ordering_key(event: Envelope, target: WebhookTarget) -> Hashable:
    leg_id = event.get("leg_id")
    if leg_id is not None:
        return ("leg", str(leg_id))
    room_id = event.get("room_id")
    if room_id is not None:
        return ("room", str(room_id))
    return ("url", target.url)


class WebhookSink:
    def __init__(
        self,
        resolve: Callable[[Envelope], WebhookTarget | None],
        *,
        timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 1.0,
        max_queue: int = 10000,
        concurrency: int = 32,
        client: httpx.AsyncClient | None = None,
        breaker_threshold: int = BREAKER_THRESHOLD,
        breaker_cooldown: float = BREAKER_COOLDOWN,
    ) -> None:
        if attempts < 1 or concurrency < 1 or max_queue < 1:
            raise ValueError("attempts, concurrency and max_queue must be at least 1")
        self._resolve = resolve
        self._timeout = timeout
        self._attempts = attempts
        self._backoff = backoff
        self._max_queue = max_queue
        self._concurrency = concurrency
        self._client = client
        self._owns_client = client is None
        self.stats = WebhookStats()
        self.destinations: dict[str, Destination] = {}
        self._breaker = (breaker_threshold, breaker_cooldown)
        self._per_destination = max(1, max_queue // 2)

        self._lanes: dict[Hashable, deque[_Delivery]] = {}
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._outstanding = 0  # accepted and not yet delivered, failed or abandoned
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True
        self._drops_unreported = 0
        self._last_drop_warning = -_DROP_WARNING_INTERVAL

    # -- the synchronous side: called by the bus on the publisher's stack -------------------

    def __call__(self, event: Envelope) -> None:
        """Route and enqueue one event. Never blocks and never raises."""
        try:
            target = self._resolve(event)
        except Exception:
            logger.exception("webhook resolver raised for %s; event not sent", event.get("type"))
            return
        if target is None:
            return
        try:
            self._enqueue(event, target)
        except Exception:
            logger.exception("webhook enqueue failed for %s", event.get("type"))

    def destination(self, url: str) -> Destination:
        name = destination_of(url)
        found = self.destinations.get(name)
        if found is None:
            if len(self.destinations) >= _MAX_DESTINATIONS:
                idle = next((k for k, d in self.destinations.items() if not d.outstanding), None)
                if idle is not None:
                    del self.destinations[idle]
            threshold, cooldown = self._breaker
            found = self.destinations[name] = Destination(threshold, cooldown, cooldown=cooldown)
        return found

    def _enqueue(self, event: Envelope, target: WebhookTarget) -> None:
        destination = self.destination(target.url)
        if (
            not self._accepting
            or self._outstanding >= self._max_queue
            or (destination.tripped and destination.outstanding >= self._per_destination)
        ):
            destination.stats.dropped += 1
            self._drop()
            return
        destination.outstanding += 1
        key = ordering_key(event, target)
        lane = self._lanes.get(key)
        if lane is None:
            # A new lane is idle by definition, so it becomes ready; an existing lane is
            # already ready, in flight or in backoff and will reach this event in turn.
            self._lanes[key] = deque((_Delivery(target, event),))
            self._ready.put_nowait(key)
        else:
            lane.append(_Delivery(target, event))
        self._outstanding += 1
        self._idle.clear()

    def _drop(self) -> None:
        self.stats.dropped += 1
        self._drops_unreported += 1
        now = time.monotonic()
        if now - self._last_drop_warning >= _DROP_WARNING_INTERVAL:
            logger.warning(
                "webhook queue %s: dropped %d event(s) (%d queued, limit %d)",
                "full" if self._accepting else "closed",
                self._drops_unreported,
                self._outstanding,
                self._max_queue,
            )
            self._last_drop_warning = now
            self._drops_unreported = 0

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Events accepted and not yet finished (including in flight and in backoff)."""
        return self._outstanding

    @property
    def active_keys(self) -> int:
        """Ordering keys that currently hold events; idle keys are not kept."""
        return len(self._lanes)

    async def start(self) -> None:
        if self._workers:
            return
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self._concurrency,
                max_keepalive_connections=self._concurrency,
            )
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                transport=GuardedTransport(limits=limits, verify=client_context()),
            )
        self._workers = [
            asyncio.create_task(self._work(), name=f"webhook-worker-{i}")
            for i in range(self._concurrency)
        ]

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Deliver what is queued (events published meanwhile included), then stop.

        Whatever is still undelivered after `drain_timeout` is counted as dropped.
        """
        if self._workers and self._outstanding:
            try:
                async with asyncio.timeout(drain_timeout):
                    await self._idle.wait()
            except TimeoutError:
                pass
        self._accepting = False
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if self._outstanding:
            logger.warning("webhook sink closed with %d undelivered event(s)", self._outstanding)
            self.stats.dropped += self._outstanding
        for lane in self._lanes.values():
            for delivery in lane:
                destination = self.destination(delivery.target.url)
                destination.stats.dropped += 1
                destination.outstanding -= 1
        self._outstanding = 0
        self._lanes.clear()
        self._idle.set()
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- the asynchronous side: workers, one attempt at a time ---------------------------------

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self._ready.get()
            lane = self._lanes.get(key)
            if not lane:
                continue  # defensive: a key is only queued while its lane holds events
            delivery = lane[0]
            destination = self.destination(delivery.target.url)
            now = loop.time()
            if destination.is_open(now):
                # Wait out the cool-down without an attempt; spread the lanes' probes.
                delay = destination.open_until - now + random.uniform(0.0, 1.0)
                self._timers[key] = loop.call_later(delay, self._backoff_done, key)
                continue
            if destination.tripped:
                delivery.probes += 1
            try:
                ok = await self._attempt(delivery)
            except Exception as exc:  # a bug must cost one attempt, never the worker
                logger.exception("webhook worker error")
                delivery.last_outcome = type(exc).__name__
                ok = False
            if ok:
                destination.succeeded()
                destination.stats.delivered += 1
                self.stats.delivered += 1
                self._finish_head(key)
                continue
            if destination.failed(loop.time()):
                logger.warning(
                    "webhook destination %s: %d failed attempts in a row (%s); pausing it "
                    "for %.0f s",
                    destination_of(delivery.target.url),
                    destination.failures_in_a_row,
                    delivery.last_outcome,
                    destination.open_until - loop.time(),
                )
            # A probe's failure is the destination's, not the event's: it waits for the next
            # probe instead of using up its attempts (within MAX_QUEUED_S).
            counted = delivery.attempts - delivery.probes
            fresh = time.monotonic() - delivery.queued_at < MAX_QUEUED_S
            if counted < self._attempts and fresh:
                self.stats.retried += 1
                destination.stats.retried += 1
                delay = self._backoff * 2 ** (delivery.attempts - 1)
                delay *= 1.0 + random.uniform(0.0, _JITTER)
                self._timers[key] = loop.call_later(delay, self._backoff_done, key)
            else:
                self.stats.failed += 1
                destination.stats.failed += 1
                logger.warning(
                    "webhook delivery failed after %d attempt(s): %s -> %s (event %s)",
                    delivery.attempts,
                    redact_url(delivery.target.url),
                    delivery.last_outcome,
                    delivery.event.get("type"),
                )
                self._finish_head(key)

    def _backoff_done(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self._ready.put_nowait(key)

    def _finish_head(self, key: Hashable) -> None:
        lane = self._lanes[key]
        done = lane.popleft()
        self.destination(done.target.url).outstanding -= 1
        if lane:
            self._ready.put_nowait(key)  # back of the queue: fairness across keys
        else:
            del self._lanes[key]
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()

    async def _attempt(self, delivery: _Delivery) -> bool:
        """One POST. True on 2xx; otherwise records why in `last_outcome`."""
        assert self._client is not None  # workers only run between start() and close()
        if delivery.body is None:
            delivery.body = event_json(delivery.event).encode("utf-8")
            delivery.headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
            event_id = delivery.event.get("event_id")
            if event_id:
                delivery.headers["X-Event-Id"] = str(event_id)
            if delivery.target.secret:
                delivery.headers["X-Signature-256"] = sign(delivery.body, delivery.target.secret)
        delivery.attempts += 1
        try:
            # httpx's timeout is per socket operation; asyncio.timeout bounds the whole
            # attempt, so a receiver that trickles bytes cannot hold a lane for longer.
            async with (
                asyncio.timeout(self._timeout),
                self._client.stream(
                    "POST",
                    delivery.target.url,
                    content=delivery.body,
                    headers=delivery.headers,
                    timeout=self._timeout,
                ) as response,
            ):
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > _MAX_RESPONSE_BYTES:
                        break
                status = response.status_code
        except (TimeoutError, httpx.TimeoutException):
            delivery.last_outcome = "timeout"
            return False
        except httpx.HTTPError as exc:
            delivery.last_outcome = type(exc).__name__
            return False
        except httpx.InvalidURL:
            delivery.last_outcome = "invalid URL"
            return False
        if 200 <= status < 300:
            return True
        delivery.last_outcome = f"HTTP {status}"
        logger.debug(
            "webhook attempt %d to %s answered %d",
            delivery.attempts,
            redact_url(delivery.target.url),
            status,
        )
        return False
