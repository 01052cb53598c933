"""HTTP plumbing shared by the cloud TTS providers that stream raw PCM over REST.

One request, one streamed body of headerless PCM16: `stream_pcm` enforces the deadlines
(connect, first audio byte, gap between chunks), keeps every yielded chunk sample-aligned, and
turns each failure into a `ProviderHttpError` that says whether a retry may help. Each provider
passes a function reading its own error body, so the message is the provider's own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from callboard.outbound_guard import GuardedTransport
from callboard.speech.tts.base import TtsError

log = logging.getLogger(__name__)

ErrorReader = Callable[[Any], str | None]  # parsed JSON error body -> the provider's message


@dataclass(frozen=True, slots=True)
class HttpTimeouts:
    connect: float = 5.0
    first_byte: float = 10.0  # from sending the request to the first audio byte
    between_chunks: float = 10.0  # longest silence of the stream once audio has started


class ProviderHttpError(TtsError):
    """A TtsError that knows the HTTP status (None when no answer came at all)."""

    def __init__(self, message: str, *, transient: bool, status: int | None = None) -> None:
        super().__init__(message, transient=transient)
        self.status = status


def new_client(
    timeouts: HttpTimeouts, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    # No httpx read timeout: it cannot tell the first byte from the next chunk, so both
    # deadlines are enforced around the awaits in stream_pcm instead.
    timeout = httpx.Timeout(
        connect=timeouts.connect, read=None, write=timeouts.between_chunks, pool=timeouts.connect
    )
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, transport=transport or GuardedTransport()
    )


def is_transient_status(status: int) -> bool:
    return status == 429 or status >= 500


async def stream_pcm(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    provider: str,
    timeouts: HttpTimeouts,
    read_error: ErrorReader,
) -> AsyncIterator[bytes]:
    """Send `request` and yield its body as even-length PCM16 chunks, as they arrive."""
    loop = asyncio.get_running_loop()
    first_deadline = loop.time() + timeouts.first_byte
    response: httpx.Response | None = None
    carry = b""  # an odd byte split off the last chunk, waiting for its other half
    audio_bytes = 0
    try:
        try:
            async with asyncio.timeout_at(first_deadline):
                response = await client.send(request, stream=True)
                if not response.is_success:
                    body = await response.aread()
                    raise status_error(provider, response, body, read_error)
        except TimeoutError:
            raise _no_first_byte(provider, timeouts) from None
        except httpx.HTTPError as exc:
            raise transport_error(provider, exc) from None
        chunks = response.aiter_bytes()
        while True:
            try:
                if audio_bytes == 0:
                    async with asyncio.timeout_at(first_deadline):
                        chunk = await anext(chunks, None)
                else:
                    async with asyncio.timeout(timeouts.between_chunks):
                        chunk = await anext(chunks, None)
            except TimeoutError:
                if audio_bytes == 0:
                    raise _no_first_byte(provider, timeouts) from None
                raise ProviderHttpError(
                    f"{provider}: the audio stream stalled for {timeouts.between_chunks:g} s",
                    transient=True,
                ) from None
            except httpx.HTTPError as exc:
                raise transport_error(provider, exc) from None
            if chunk is None:
                break
            if not chunk:
                continue
            data = carry + chunk if carry else chunk
            even = len(data) & ~1
            carry = data[even:]
            if even:
                audio_bytes += even
                yield data[:even]
    finally:
        if response is not None:
            await response.aclose()
    if audio_bytes == 0:
        raise ProviderHttpError(f"{provider}: the answer held no audio", transient=False)
    if carry:  # a provider bug; one byte is not a sample, so it cannot be played
        log.debug("%s: dropped an odd trailing byte", provider)
    log.debug("%s: %d bytes of audio", provider, audio_bytes)


async def fetch_json(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    provider: str,
    timeouts: HttpTimeouts,
    read_error: ErrorReader,
) -> Any:
    """A small JSON request (a lookup), under the first-byte deadline for the whole answer."""
    try:
        async with asyncio.timeout(timeouts.first_byte):
            response = await client.send(request)
    except TimeoutError:
        raise ProviderHttpError(
            f"{provider}: no answer within {timeouts.first_byte:g} s", transient=True
        ) from None
    except httpx.HTTPError as exc:
        raise transport_error(provider, exc) from None
    if not response.is_success:
        raise status_error(provider, response, response.content, read_error)
    try:
        return response.json()
    except ValueError:
        raise ProviderHttpError(
            f"{provider}: the answer to {request.url.path} is not JSON",
            transient=False,
            status=response.status_code,
        ) from None


def status_error(
    provider: str, response: httpx.Response, body: bytes, read_error: ErrorReader
) -> ProviderHttpError:
    """The error for a non-2xx answer, with the provider's message when its body has one."""
    status = response.status_code
    message: str | None = None
    try:
        message = read_error(json.loads(body))
    except ValueError:  # not JSON (a proxy's HTML page, say): show a little of it
        text = body.decode("utf-8", "replace").strip()
        message = " ".join(text.split())[:200] or None
    except (AttributeError, KeyError, TypeError, IndexError):  # JSON of an unexpected shape
        message = None
    if not message:
        message = response.reason_phrase or "error"
    return ProviderHttpError(
        f"{provider} HTTP {status}: {message}", transient=is_transient_status(status), status=status
    )


def transport_error(provider: str, exc: httpx.HTTPError) -> ProviderHttpError:
    """No (complete) answer: a broken or refused connection may work on a retry, a bad URL
    never will."""
    kind = {
        "ConnectTimeout": "connect timeout",
        "ConnectError": "cannot connect",
        "RemoteProtocolError": "connection broken",
        "ReadError": "connection broken",
        "WriteError": "connection broken",
    }.get(type(exc).__name__, type(exc).__name__)
    transient = isinstance(exc, httpx.TransportError) and not isinstance(
        exc, httpx.UnsupportedProtocol
    )
    detail = str(exc)
    return ProviderHttpError(
        f"{provider}: {kind}" + (f" ({detail})" if detail else ""), transient=transient
    )


def _no_first_byte(provider: str, timeouts: HttpTimeouts) -> ProviderHttpError:
    return ProviderHttpError(
        f"{provider}: no audio within {timeouts.first_byte:g} s", transient=True
    )
