"""Running one provider WebSocket for an agent session: open it (a refused handshake becomes
an AgentError with the provider's message), then a sender task streams the call's audio
(each write bounded by SEND_DEADLINE, so a provider that stops reading fails the session
instead of stalling it) while the receiver hands every message to the client's handler.

The protocol's own pings (every PING_INTERVAL, answered within PING_TIMEOUT) find a provider
that has gone away without closing. A message the handler cannot make sense of is logged and
skipped: garbage from a provider never ends a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterable, Awaitable, Callable

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.typing import Data

from callboard.agents.base import CLOSE_TIMEOUT, OPEN_TIMEOUT, SEND_DEADLINE, AgentError
from callboard.tls import websocket_ssl

log = logging.getLogger(__name__)

PING_INTERVAL = 10.0
PING_TIMEOUT = 10.0
MAX_MESSAGE = 16 * 1024 * 1024  # a provider may send seconds of audio in one message


async def open_socket(
    url: str,
    provider: str,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
) -> ClientConnection:
    try:
        return await connect(
            url,
            additional_headers=headers or {},
            origin=origin,  # type: ignore[arg-type]
            open_timeout=OPEN_TIMEOUT,
            close_timeout=CLOSE_TIMEOUT,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            compression=None,  # audio hardly compresses; spare the CPU
            max_size=MAX_MESSAGE,
            **websocket_ssl(url),
        )
    except InvalidStatus as exc:
        response = exc.response
        body = bytes(response.body or b"")[:300].decode("utf-8", "replace").strip()
        detail = f": {body}" if body else ""
        raise AgentError(
            f"{provider} refused the connection (HTTP {response.status_code}){detail}"
        ) from None
    except InvalidURI as exc:
        raise AgentError(f"{provider}: bad URL: {exc}") from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise AgentError(f"{provider}: cannot connect: {exc or type(exc).__name__}") from None


async def send(socket: ClientConnection, data: Data, provider: str) -> None:
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
    try:
        async with asyncio.timeout(SEND_DEADLINE):
            await socket.send(data)
    except TimeoutError:
        raise AgentError(
            f"{provider} stopped reading (a write took over {SEND_DEADLINE:g} s)"
        ) from None


class _SendWatch:
    """The write deadline of the audio stream, checked once a second rather than armed around
    each of its 50 writes a second (a timer per write costs more than the write)."""

    def __init__(self) -> None:
        self.since: float | None = None  # loop time the pending write began
        self.expired = False


async def bridge(
    socket: ClientConnection,
    provider: str,
    outgoing: AsyncIterable[Data],
    handle: Callable[[Data], Awaitable[None] | None],
) -> None:
    """Send `outgoing` while handing each message received to `handle`, until the provider
    closes (a normal close returns, any other raises AgentError) or sending fails."""
    loop = asyncio.get_running_loop()
    watch = _SendWatch()
    sender = loop.create_task(_send_all(socket, outgoing, watch))
    receiver = loop.create_task(_receive_all(socket, provider, handle))
    timers: list[asyncio.TimerHandle] = []

    def check() -> None:
        if watch.since is not None and loop.time() - watch.since > SEND_DEADLINE:
            watch.expired = True
            sender.cancel()
        elif not sender.done():
            timers[0] = loop.call_later(1.0, check)

    timers.append(loop.call_later(1.0, check))
    try:
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if sender in done:
            if watch.expired:
                raise AgentError(
                    f"{provider} stopped reading (a write took over {SEND_DEADLINE:g} s)"
                )
            if sender.exception() is not None:
                raise sender.exception()  # type: ignore[misc]
        await receiver  # the sender only ends early on an error: the receiver tells the end
    finally:
        timers[0].cancel()
        for task in (sender, receiver):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await socket.close()


async def _send_all(
    socket: ClientConnection, outgoing: AsyncIterable[Data], watch: _SendWatch
) -> None:
    loop = asyncio.get_running_loop()
    try:
        async for data in outgoing:
            watch.since = loop.time()
            await socket.send(data)
            watch.since = None
    except ConnectionClosed:
        pass  # the receiver sees the close and says why
    # The call's audio only ends when the session is being stopped: wait to be cancelled.
    await asyncio.Event().wait()


async def _receive_all(
    socket: ClientConnection, provider: str, handle: Callable[[Data], Awaitable[None] | None]
) -> None:
    try:
        async for message in socket:
            try:
                result = handle(message)
                if result is not None:
                    await result
            except AgentError:
                raise
            except Exception as exc:  # garbage from the provider: skip it, keep the call
                log.warning("%s agent: unusable message skipped (%s)", provider, exc)
    except ConnectionClosed:
        pass
    code = socket.close_code if socket.close_code is not None else 1006
    if code not in (1000, 1001):
        reason = socket.close_reason or "connection lost"
        raise AgentError(f"{provider} closed the session ({code} {reason})")
