"""One TLS client context for every outgoing connection (webhooks, downloads, speech and agent
providers). Building one loads the CA bundle: about 25 ms, measured, which on the event loop
makes the media clock late; so it is built once, before the clock runs (server warm-up), and
shared (an SSLContext is safe to share between connections)."""

from __future__ import annotations

import ssl
import threading
from typing import Any

_context: ssl.SSLContext | None = None
_lock = threading.Lock()


def client_context() -> ssl.SSLContext:
    """The shared context that verifies servers against the default CA bundle."""
    global _context
    if _context is None:
        with _lock:
            if _context is None:
                _context = ssl.create_default_context()
    return _context


def websocket_ssl(url: str) -> dict[str, Any]:
    """`connect()` keyword for `url`: the shared context for wss, nothing for ws (where an
    ssl argument is an error)."""
    return {"ssl": client_context()} if url.lower().startswith("wss://") else {}
