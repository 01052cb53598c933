"""A real HTTP server that receives the server's webhooks and lets tests wait for events."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class WebhookRequest:
    """One POST exactly as it arrived."""

    index: int  # arrival order, from 0
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any  # parsed body, None if it was not JSON
    received_at: float  # time.time()
    monotonic: float  # time.monotonic()
    status: int  # what we answered

    def signature_valid(self, secret: str) -> bool:
        """X-Signature-256 is ``sha256=<hex HMAC-SHA256 of the exact body bytes>``."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(self.headers.get("x-signature-256", ""), expected)


class WebhookEvent(dict[str, Any]):
    """An event body (a dict) that also knows the request that delivered it."""

    request: WebhookRequest

    @property
    def type(self) -> str:
        return str(self.get("type", ""))


Predicate = Callable[[WebhookEvent], bool]


def _lookup(event: dict[str, Any], key: str) -> Any:
    """``cdr__reason`` reads ``event["cdr"]["reason"]``."""
    value: Any = event
    for part in key.split("__"):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


_MISSING = object()


@dataclass
class _Behaviour:
    fail_remaining: int = 0
    fail_status: int = 500
    delay: float = 0.0
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)


class WebhookReceiver:
    """Records every POST; ``url`` is what to give the server as WEBHOOK_URL.

    Failure injection: ``fail_first(n, status=500)`` answers the next ``n`` requests with an
    error; ``set_delay(seconds)`` holds every answer back (to exercise timeouts/backpressure).
    """

    def __init__(self, path: str = "/hooks") -> None:
        self.path = path
        self.requests: list[WebhookRequest] = []
        self._cond = threading.Condition()
        self._behaviour = _Behaviour()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver._handle(self)

            def do_PUT(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="webhook-receiver",
            daemon=True,
        )
        self._thread.start()

    # -- configuration -------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def url_for(self, path: str) -> str:
        """Another path on the same receiver (per-leg / per-room webhooks)."""
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_first(self, n: int, status: int = 500) -> None:
        with self._behaviour.lock:
            self._behaviour.fail_remaining = n
            self._behaviour.fail_status = status

    def set_delay(self, seconds: float) -> None:
        self._behaviour.delay = seconds

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- the handler ---------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = self._read_body(handler)
        behaviour = self._behaviour
        with behaviour.lock:
            if behaviour.fail_remaining > 0:
                behaviour.fail_remaining -= 1
                status = behaviour.fail_status
            else:
                status = behaviour.status
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = None
        with self._cond:
            request = WebhookRequest(
                index=len(self.requests),
                path=handler.path,
                headers={k.lower(): v for k, v in handler.headers.items()},
                body=body,
                json=parsed,
                received_at=time.time(),
                monotonic=time.monotonic(),
                status=status,
            )
            self.requests.append(request)
            self._cond.notify_all()
        if behaviour.delay:
            time.sleep(behaviour.delay)
        reply = b'{"ok":true}' if status < 400 else b'{"error":"injected failure"}'
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(reply)))
            handler.end_headers()
            handler.wfile.write(reply)
        except OSError:
            pass  # the sender gave up (timeout): that is its business

    @staticmethod
    def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
        if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(handler.rfile.read(size))
                handler.rfile.readline()
        length = int(handler.headers.get("Content-Length") or 0)
        return handler.rfile.read(length) if length else b""

    # -- queries -------------------------------------------------------------------------

    def mark(self) -> int:
        """A position to pass as ``since=`` to only look at what arrives afterwards."""
        with self._cond:
            return len(self.requests)

    def events(
        self,
        type: str | None = None,
        leg_id: str | None = None,
        *,
        since: int = 0,
        delivered_only: bool = True,
        **match: Any,
    ) -> list[WebhookEvent]:
        """Event bodies in arrival order, filtered by type / leg_id / other fields.

        Requests we failed on purpose are left out unless ``delivered_only=False`` (a retried
        event then appears once per attempt). ``match`` keys use ``__`` for nesting
        (``cdr__reason="busy"``).
        """
        with self._cond:
            requests = list(self.requests[since:])
        result = []
        for request in requests:
            if delivered_only and request.status >= 300:
                continue
            if not isinstance(request.json, dict):
                continue
            event = WebhookEvent(request.json)
            event.request = request
            if type is not None and event.get("type") != type:
                continue
            if leg_id is not None and event.get("leg_id") != leg_id:
                continue
            if all(_lookup(event, k) == v for k, v in match.items()):
                result.append(event)
        return result

    def types(self, leg_id: str | None = None, *, since: int = 0) -> list[str]:
        return [e.type for e in self.events(leg_id=leg_id, since=since)]

    def wait_for(
        self,
        predicate_or_type: str | Predicate | None = None,
        timeout: float = 10.0,
        *,
        since: int = 0,
        **match: Any,
    ) -> WebhookEvent:
        """The first (delivered) event matching a type or predicate and ``match``; polls."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._find(predicate_or_type, since, match)
            if found is not None:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._cond:
                self._cond.wait(timeout=min(remaining, 0.1))
        seen = [(e.type, e.get("leg_id") or e.get("room_id")) for e in self.events(since=since)]
        pytest.fail(
            f"no webhook event matching {predicate_or_type!r} {match} within {timeout:g}s; "
            f"received: {seen}",
            pytrace=False,
        )

    def wait_for_count(
        self, count: int, type: str | None = None, timeout: float = 10.0, **match: Any
    ) -> list[WebhookEvent]:
        """Wait until at least ``count`` events of ``type`` (and ``match``) have arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events(type, **match)
            if len(events) >= count:
                return events
            with self._cond:
                self._cond.wait(timeout=0.1)
        events = self.events(type, **match)
        pytest.fail(
            f"expected {count} {type or 'events'} {match}, got {len(events)}: "
            f"{[e.type for e in self.events()]}",
            pytrace=False,
        )

    def assert_no_event(self, type: str, within: float = 1.0, **match: Any) -> None:
        """Wait ``within`` seconds and fail if such an event arrived."""
        time.sleep(within)
        found = self.events(type, **match)
        assert not found, f"unexpected {type} events: {found}"

    def _find(
        self, predicate_or_type: str | Predicate | None, since: int, match: dict[str, Any]
    ) -> WebhookEvent | None:
        for event in self.events(since=since, **match):
            if predicate_or_type is None:
                return event
            if isinstance(predicate_or_type, str):
                if event.type == predicate_or_type:
                    return event
            elif predicate_or_type(event):
                return event
        return None
