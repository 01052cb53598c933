"""Who may use the HTTP API and its WebSockets: `ALLOWED_IPS` (with `TRUST_PROXY_HEADERS`
deciding whether the leftmost X-Forwarded-For is the client) and bearer keys (`API_KEYS`;
browsers' WebSockets, which cannot set headers, may send the key as a `token` query parameter).

`AccessPolicy` decides (no I/O); `AccessControl` is the ASGI middleware that asks it before
any route runs, for HTTP and WebSocket alike. Keys are compared in constant time and never
logged.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from callboard.config import Settings
from callboard.netaddr import IpAddress, IpNetwork, in_any, parse_ip

log = logging.getLogger(__name__)


# Open without a key: a health probe, and the console's static page (it asks for the key).
_PUBLIC_PATHS = ("/v1/health",)
_PUBLIC_PREFIXES = ("/console",)


@dataclass(frozen=True)
class Denial:
    status: int  # 401 (no valid key) or 403 (address not allowed)
    message: str


class AccessPolicy:
    def __init__(
        self,
        *,
        api_keys: Iterable[str] = (),
        allowed: Iterable[IpNetwork] = (),
        trust_proxy_headers: bool = False,
        metrics_public: bool = False,
    ) -> None:
        self._keys = [key.encode() for key in api_keys]
        self._allowed = list(allowed)
        self.trust_proxy_headers = trust_proxy_headers
        self.metrics_public = metrics_public

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        return cls(
            api_keys=settings.api_keys,
            allowed=settings.allowed_ips,
            trust_proxy_headers=settings.trust_proxy_headers,
            metrics_public=settings.metrics_public,
        )

    @property
    def active(self) -> bool:
        return bool(self._keys or self._allowed)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> IpAddress | None:
        """The client's address: the leftmost X-Forwarded-For when proxies are trusted (the
        proxy put it there), else the socket's peer; None when neither parses."""
        candidate = peer
        if self.trust_proxy_headers and forwarded_for:
            candidate = forwarded_for.split(",", 1)[0]
        return parse_ip(candidate) if candidate else None

    def ip_allowed(self, address: IpAddress | None) -> bool:
        if not self._allowed:
            return True
        return address is not None and in_any(address, self._allowed)

    def key_valid(self, presented: str | None) -> bool:
        """Constant time in the presented key: every configured key is compared."""
        if not self._keys:
            return True
        given = (presented or "").encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(given, key)
        return matched and bool(given)

    def needs_key(self, path: str) -> bool:
        if not self._keys or path in _PUBLIC_PATHS:
            return False
        if path == "/metrics":
            return not self.metrics_public
        return not any(path == p or path.startswith(p + "/") for p in _PUBLIC_PREFIXES)

    def check(
        self,
        *,
        path: str,
        peer: str | None,
        headers: dict[str, str],
        query_token: str | None,
    ) -> Denial | None:
        address = self.client_ip(peer, headers.get("x-forwarded-for"))
        if not self.ip_allowed(address):
            log.info("HTTP %s refused: client %s not in ALLOWED_IPS", path, address or peer)
            return Denial(403, "forbidden: client address not allowed")
        if self.needs_key(path) and not self.key_valid(bearer(headers) or query_token):
            log.info("HTTP %s refused: no valid API key (client %s)", path, address or peer)
            return Denial(401, "unauthorized: a valid API key is required")
        return None


def bearer(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class AccessControl:
    """ASGI middleware: refuses a request the policy denies before any route sees it."""

    def __init__(self, app: ASGIApp, *, policy: AccessPolicy, instance_id: str) -> None:
        self.app = app
        self.policy = policy
        self.instance_id = instance_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.policy.active:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        token = None
        if scope["type"] == "websocket":
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            token = values[0] if values else None
        client = scope.get("client")
        denial = self.policy.check(
            path=scope["path"],
            peer=client[0] if client else None,
            headers=headers,
            query_token=token,
        )
        if denial is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"instance_id": self.instance_id, "error": denial.message}).encode()
        response_headers = [(b"content-type", b"application/json")]
        if denial.status == 401:
            response_headers.append((b"www-authenticate", b'Bearer realm="callboard"'))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": denial.status,
                        "headers": response_headers})  # fmt: skip
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": denial.status,
                        "headers": response_headers})  # fmt: skip
            await send({"type": "websocket.http.response.body", "body": body})
        else:
            await send({"type": "websocket.close", "code": 1008})
