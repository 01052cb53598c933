"""Where the server may connect on someone's behalf (playback URLs, webhooks, speech and agent
providers): never to link-local addresses (which hold the cloud metadata services), the
unspecified address or multicast; with FETCH_DENY_PRIVATE=true not to private, loopback or
carrier-grade NAT ranges either. A URL's host is resolved and every address checked; HTTP
requests over plain HTTP then connect to the checked address itself, so a name that resolves
differently a moment later (DNS rebinding) cannot slip through; over HTTPS the certificate
check does that job (pinning there would share pooled connections between names of one
address). WebSocket connections are checked the same way just before they open.

The policy also carries the size and time limits of playback downloads (FETCH_MAX_BYTES,
FETCH_TIMEOUT); webhook attempts use FETCH_TIMEOUT too.

One process-wide policy, set at start-up from the settings (as the TLS context is shared).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from callboard.netaddr import IpAddress, in_any, unmapped
from callboard.tls import client_context

_ALWAYS_DENIED = tuple(
    ipaddress.ip_network(net)
    for net in (
        "169.254.0.0/16",  # link-local: AWS, GCP, Azure, OpenStack metadata live here
        "fe80::/10",
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "255.255.255.255/32",
    )
)
_PRIVATE = tuple(
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "::1/128",
        "fc00::/7",
    )
)


class FetchRefused(Exception):
    """The destination is one the server must not connect to."""


@dataclass(frozen=True)
class FetchPolicy:
    deny_private: bool = False
    max_bytes: int = 50 * 1024 * 1024  # a playback download
    timeout: float = 15.0  # connect, and the longest wait for the next bytes

    def refusal(self, address: IpAddress) -> str | None:
        address = unmapped(address)
        if in_any(address, _ALWAYS_DENIED):
            return f"{address} is a link-local, metadata or non-unicast address"
        if self.deny_private and in_any(address, _PRIVATE):
            return f"{address} is a private address (FETCH_DENY_PRIVATE)"
        return None


_policy = FetchPolicy()


def set_policy(policy: FetchPolicy) -> None:
    global _policy
    _policy = policy


def policy() -> FetchPolicy:
    return _policy


async def checked_address(host: str, port: int) -> str:
    """An address of `host` the policy allows (every address it resolves to must be);
    FetchRefused otherwise, or when it does not resolve."""
    try:
        literal: IpAddress | None = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise FetchRefused(f"cannot resolve {host}: {exc.strerror or exc}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise FetchRefused(f"{host} has no address")
    for address in addresses:
        reason = _policy.refusal(address)
        if reason is not None:
            raise FetchRefused(f"refused to connect to {host}: {reason}")
    return str(addresses[0])


async def check_url(url: str) -> None:
    """For WebSocket clients: FetchRefused unless `url`'s host is allowed."""
    parsed = httpx.URL(url)
    default = 443 if parsed.scheme in ("https", "wss") else 80
    await checked_address(parsed.host, parsed.port or default)


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx transport that checks each request's destination (redirects included) and
    connects to the address it checked."""

    def __init__(self, **transport_options: Any) -> None:
        transport_options.setdefault("verify", client_context())
        self._inner = httpx.AsyncHTTPTransport(**transport_options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            address = await checked_address(url.host, port)
        except FetchRefused as exc:
            raise httpx.ConnectError(str(exc), request=request) from None
        if url.scheme == "http" and address != url.host:
            # The Host header stays the name's; the connection goes where we checked.
            request.url = url.copy_with(host=address)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(**options: Any) -> httpx.AsyncClient:
    """An httpx client whose every request goes through the policy."""
    return httpx.AsyncClient(transport=GuardedTransport(), **options)
