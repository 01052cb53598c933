"""Streaming HTTP(S) downloads for playback: bytes go to a sink as they arrive.

Limits are enforced while streaming (a size cap, connect and read timeouts), a non-2xx answer
is an error naming the status, and a slow reader holds the download back instead of
buffering an unbounded amount.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from callboard.core.errors import BadRequest
from callboard.outbound_guard import GuardedTransport, policy
from callboard.tls import client_context

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 4096


class DownloadError(Exception):
    """The URL could not be fetched; the message says why (status, timeout, size...)."""


@dataclass(frozen=True, slots=True)
class DownloadLimits:
    max_bytes: int = 50 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 15.0  # longest wait for the next bytes
    max_redirects: int = 5
    # Bytes allowed to pile up unread before the download pauses (a decoder is fed in real
    # time, so a long file would otherwise sit in memory all at once).
    high_water: int = 8 * 1024 * 1024


def configured_limits() -> DownloadLimits:
    """The limits FETCH_MAX_BYTES and FETCH_TIMEOUT set (outbound_guard's policy)."""
    fetch = policy()
    return DownloadLimits(
        max_bytes=fetch.max_bytes, connect_timeout=fetch.timeout, read_timeout=fetch.timeout
    )


class ByteSink(Protocol):
    @property
    def buffered(self) -> int: ...

    @property
    def aborted(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None: ...


def check_url(url: str) -> str:
    """Reject what can never be downloaded: raises BadRequest (400)."""
    if len(url) > MAX_URL_LENGTH:
        raise BadRequest(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise BadRequest("url is not a valid URL") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise BadRequest("url must be an http:// or https:// URL with a host")
    return url


def shown_url(url: str) -> str:
    """The URL for messages and logs, without its query (signed URLs carry credentials
    there) or user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


async def download(
    url: str,
    sink: ByteSink,
    limits: DownloadLimits | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> int:
    """Stream `url` into `sink` and finish it; returns the byte count. Raises DownloadError
    (the sink is then left unfinished: the caller aborts it)."""
    where = shown_url(url)
    limits = limits or configured_limits()
    timeout = httpx.Timeout(
        limits.read_timeout, connect=limits.connect_timeout, pool=limits.connect_timeout
    )
    received = 0
    try:
        async with (
            httpx.AsyncClient(
                follow_redirects=True,
                max_redirects=limits.max_redirects,
                verify=client_context(),
                timeout=timeout,
                transport=transport or GuardedTransport(),
            ) as client,
            client.stream("GET", url) as response,
        ):
            if not response.is_success:
                raise DownloadError(
                    f"download failed: HTTP {response.status_code} "
                    f"{response.reason_phrase} from {where}".replace("  ", " ")
                )
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise DownloadError(
                    f"download failed: {where} is {declared} bytes, over the "
                    f"{limits.max_bytes} byte limit"
                )
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > limits.max_bytes:
                    raise DownloadError(
                        f"download failed: {where} is over the {limits.max_bytes} byte limit"
                    )
                sink.write(chunk)
                while sink.buffered > limits.high_water and not sink.aborted:
                    await asyncio.sleep(0.05)
                if sink.aborted:  # the decoder is done with it (stopped, or not audio)
                    return received
    except httpx.TimeoutException as exc:
        raise DownloadError(f"download failed: {where} timed out ({_kind(exc)})") from None
    except httpx.TooManyRedirects:
        raise DownloadError(f"download failed: too many redirects from {where}") from None
    except httpx.HTTPError as exc:
        raise DownloadError(f"download failed: {where}: {_kind(exc)}: {exc}") from None
    sink.finish()
    log.debug("downloaded %d bytes from %s", received, where)
    return received


def _kind(exc: Exception) -> str:
    name = type(exc).__name__
    return {
        "ConnectTimeout": "connect timeout",
        "ReadTimeout": "read timeout",
        "PoolTimeout": "connect timeout",
        "ConnectError": "cannot connect",
        "RemoteProtocolError": "connection broken",
    }.get(name, name)
