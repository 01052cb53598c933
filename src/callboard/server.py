"""Wires the layers together and runs them on one uvloop event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import uvicorn
from starlette.types import ASGIApp

from callboard import tls
from callboard.api.access import AccessPolicy
from callboard.api.app import create_app
from callboard.api.commands import Commands
from callboard.config import Settings
from callboard.core.service import CallService
from callboard.events.bus import EventBus
from callboard.events.metrics import Metrics
from callboard.events.vsi import VsiHub
from callboard.events.webhooks import WebhookSink
from callboard.media.clock import MediaClock
from callboard.media.codecs import SUPPORTED_CODECS, create_codec
from callboard.media.engine import MediaEngine
from callboard.outbound_guard import FetchPolicy, set_policy
from callboard.sip.call_model import TimerSettings
from callboard.sip.inbound_gate import InboundGate
from callboard.sip.ua import SipUserAgent
from callboard.storage import s3
from callboard.threads import limit_blas_threads

log = logging.getLogger(__name__)

# Seconds from SIGTERM to exit: legs hung up, recordings final, webhooks flushed or reported.
SHUTDOWN_BUDGET = 8.0


# Kernel send buffer of every HTTP/WebSocket connection. Left to autotuning it grows to
# megabytes, and a room WebSocket client that stops reading would soak up a minute of audio
# before the participant's own one-second bound noticed it was too slow.
HTTP_SEND_BUFFER = 32 * 1024


# Modules httpx's async transport imports on its first request (anyio's asyncio backend and
# streams). Importing them then blocked the event loop for tens of milliseconds, which the
# first call of a fresh process heard as a media stall.
_FIRST_REQUEST_MODULES = (
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.stapled",
    "anyio.streams.tls",
    "httpcore._backends.anyio",
)


WARM_UP_MISS = "/v1/warm-up/no-such-route"  # matched against every route, then 404


async def warm_up_app(app: ASGIApp) -> None:
    """Requests through the whole ASGI stack in-process: FastAPI and Starlette build things
    on the first request (about 100 ms on the event loop, measured), and FastAPI builds each
    included router's routes the first time a request of each kind (HTTP, WebSocket) is
    matched against them (the first VSI connection held the clock 26-68 ms). A path that
    matches nothing walks every route, for both kinds."""
    transport = httpx.ASGITransport(app=app)
    httpx_log = logging.getLogger("httpx")
    level = httpx_log.level
    httpx_log.setLevel(logging.WARNING)  # not a request anyone made: keep it out of the log
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://warm-up") as client:
            await client.get("/v1/legs")
            await client.get(WARM_UP_MISS)
    finally:
        httpx_log.setLevel(level)
    await _warm_up_websocket(app)


async def _warm_up_websocket(app: ASGIApp) -> None:
    """A WebSocket that asks for a path no route has: the router refuses it (a close)."""
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": WARM_UP_MISS,
        "raw_path": WARM_UP_MISS.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"warm-up")],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        "subprotocols": [],
    }
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"} if not sent else {"type": "websocket.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    with contextlib.suppress(Exception):  # a warm-up, never a reason not to start
        await app(scope, receive, send)


def warm_up() -> None:
    """Pay one-time costs before the media clock runs rather than on the first call."""
    for name in _FIRST_REQUEST_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for name in SUPPORTED_CODECS:  # loads each FFmpeg codec and builds its tables
        codec = create_codec(name)
        codec.decode(codec.encode(np.zeros(codec.sample_rate // 50, dtype=np.int16)))
    s3.warm_up()
    tls.client_context()  # the CA bundle, loaded once


class _Uvicorn(uvicorn.Server):
    """Uvicorn without its own signal handling: shutdown order is ours (legs first)."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # Accepted connections inherit the listener's (fixed) send buffer size.
        for server in self.servers:
            for sock in server.sockets:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, HTTP_SEND_BUFFER)
        self._on_listening()


class Callboard:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.bus = EventBus(settings.instance_id)
        self.metrics = Metrics()
        self.vsi_hub = VsiHub()
        self.clock = MediaClock()
        self.engine = MediaEngine()
        self.clock.add_tick_function(self.engine.tick)
        self.metrics.add_media_clock(self.clock.stats)
        self.metrics.add_forwarding(lambda: self.engine.forwarded)
        self.ua = SipUserAgent(
            listen_ip=settings.sip_listen_ip,
            advertised_ip=settings.sip_bind_ip,
            port=settings.sip_port,
            user_agent=settings.sip_host,
            timers=TimerSettings(
                session_expires=settings.session_expires, min_se=settings.session_min_se
            ),
        )
        self.service = CallService(settings, self.bus, self.metrics, self.ua, self.engine)
        set_policy(
            FetchPolicy(
                deny_private=settings.fetch_deny_private,
                max_bytes=settings.fetch_max_bytes,
                timeout=settings.fetch_timeout,
            )
        )
        self.webhooks = WebhookSink(self.service.resolve_webhook, timeout=settings.fetch_timeout)
        self.metrics.add_webhooks(self.webhooks)
        self.metrics.add_resources(
            lambda: self.service.sip.ports.in_use, lambda: len(asyncio.all_tasks())
        )
        self.metrics.add_sip_transport(self.ua.transport.stats)
        self.bus.add_sink(self.webhooks)
        self.bus.add_sink(self.vsi_hub)
        self.commands = Commands(self.service)
        self.app = create_app(
            self.commands,
            self.vsi_hub,
            self.metrics,
            AccessPolicy.from_settings(settings),
            max_request_bytes=settings.max_request_bytes,
        )
        self.ua.transport.gate = InboundGate(
            allowed=settings.sip_allowed_ips,
            silent_drop=settings.sip_silent_drop,
            users=dict(settings.sip_inbound_users),
            realm=settings.sip_host,
            invite_rate=settings.sip_invite_rate,
            invite_burst=settings.sip_invite_burst,
            in_dialog=self.ua.router.has_call,
            at_capacity=self.service.at_capacity,
        )
        self._stopping = False
        self._stop_started: float | None = None
        self._http: _Uvicorn | None = None

    async def run(self) -> None:
        limit_blas_threads()
        warm_up()
        await warm_up_app(self.app)
        # Everything built so far (modules, the app, codec tables) lives as long as the
        # process: moved out of the collector's view, a full collection no longer walks it
        # and holds the loop (measured: 30-50 ms pauses about a second into the first calls).
        gc.collect()
        gc.freeze()
        await self.webhooks.start()
        await self.ua.start()
        await self.service.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        config = uvicorn.Config(
            self.app,
            host=self.settings.http_host,
            port=self.settings.http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            ws_ping_interval=None,
            timeout_graceful_shutdown=3,
            # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default; only
            # TRUST_PROXY_HEADERS decides that here (api/access.py).
            proxy_headers=False,
            ws_max_size=self.settings.max_request_bytes,
        )
        # The clock starts once HTTP listens: uvicorn's start-up holds the loop for tens of
        # milliseconds, and no call can have media before the API can answer it.
        self._http = _Uvicorn(config, on_listening=self.clock.start)
        log.info(
            "callboard %s: HTTP %s:%d, SIP %s:%d (udp+tcp), RTP %d-%d",
            self.settings.instance_id,
            self.settings.http_host,
            self.settings.http_port,
            self.settings.sip_bind_ip,
            self.ua.port,
            self.settings.rtp_port_min,
            self.settings.rtp_port_max,
        )
        try:
            await self._http.serve()
        finally:
            await self._cleanup()

    def request_stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_started = asyncio.get_running_loop().time()
        log.info("shutting down: hanging up %d legs", len(self.service.legs))
        asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        await self.service.shutdown()
        # Let the VSI senders flush the final events before the sockets close.
        await asyncio.sleep(0.2)
        if self._http is not None:
            self._http.should_exit = True

    async def _cleanup(self) -> None:
        if not self._stopping:
            await self.service.shutdown()
        self.clock.stop()
        # Queued webhooks get what is left of the shutdown budget; the rest are counted as
        # dropped and logged (WebhookSink.close).
        budget = SHUTDOWN_BUDGET
        if self._stop_started is not None:
            budget -= asyncio.get_running_loop().time() - self._stop_started
        await self.webhooks.close(drain_timeout=max(1.0, budget))
        await self.ua.close()
