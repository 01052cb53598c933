"""Running one provider WebSocket for an agent session: open it (a refused handshake becomes
an AgentError with the provider's message), then a sender task streams the call's audio
(straight into the socket's buffer; a provider that leaves SEND_DEADLINE seconds of it
untaken has stopped reading, and the session fails instead of stalling) while the receiver
hands every message to the client's handler.

The protocol's own pings (every PING_INTERVAL, answered within PING_TIMEOUT) find a provider
that has gone away without closing. A message the handler cannot make sense of is logged and
skipped: garbage from a provider never ends a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.protocol import State
from websockets.typing import Data

from callboard.agents.base import (
    CLOSE_TIMEOUT,
    OPEN_TIMEOUT,
    SAMPLE_RATE,
    SEND_DEADLINE,
    AgentError,
    AgentLink,
)
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


# Audio the provider has not taken yet, in the socket's write buffer: past this it has stopped
# reading (about SEND_DEADLINE seconds of 16 kHz PCM), and the session fails.
MAX_UNSENT = int(SEND_DEADLINE * SAMPLE_RATE * 2)
KEEPALIVE_CHECK = 1.0  # seconds between checks that something was sent lately


async def bridge(
    socket: ClientConnection,
    provider: str,
    link: AgentLink,
    encode: Callable[[np.ndarray], Data | None],
    handle: Callable[[Data], Awaitable[None] | None],
    keepalive: tuple[float, Data] | None = None,
) -> None:
    """Send what the link hears (each frame as `encode` makes it; None skips it) while
    handing each message received to `handle`, until the provider closes (a normal close
    returns, any other raises AgentError) or sending fails. With `keepalive` (seconds,
    message), the message goes whenever nothing else was sent for that long."""
    loop = asyncio.get_running_loop()
    sent = [loop.time()]
    failed: asyncio.Future[None] = loop.create_future()
    transport = socket.transport

    def consume(frame: np.ndarray) -> None:
        data = encode(frame)
        if data is None or not _write(socket, data):
            return  # not yet, or closing (the receiver says why)
        sent[0] = loop.time()
        if transport.get_write_buffer_size() > MAX_UNSENT:
            raise AgentError(f"{provider} stopped reading ({SEND_DEADLINE:g} s of audio not taken)")

    def fail(exc: BaseException) -> None:
        if not failed.done():
            failed.set_exception(exc)

    def check() -> None:
        idle = keepalive is not None and loop.time() - sent[0] >= keepalive[0]
        if idle and keepalive is not None and _write(socket, keepalive[1]):
            sent[0] = loop.time()
        timers[0] = loop.call_later(KEEPALIVE_CHECK, check)

    receiver = loop.create_task(_receive_all(socket, provider, handle))
    timers = [loop.call_later(KEEPALIVE_CHECK, check)]
    link.listen(consume, fail)
    try:
        await asyncio.wait({failed, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if failed.done():
            failed.result()  # raises the sender's error
        await receiver
    finally:
        link.listen(None)
        timers[0].cancel()
        if not failed.done():
            failed.cancel()
        receiver.cancel()
        with contextlib.suppress(BaseException):
            await receiver
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await socket.close()


def _write(socket: ClientConnection, data: Data) -> bool:
    """One message straight into the socket's buffer, without the connection's async send
    (its locks and context switches cost more than the write, 50 times a second). False once
    the connection is closing."""
    protocol = socket.protocol
    if protocol.state is not State.OPEN:
        return False
    if isinstance(data, str):
        protocol.send_text(data.encode())
    else:
        protocol.send_binary(data)
    socket.send_data()
    return True


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
