"""Running one provider WebSocket for an agent session: open it (a refused handshake becomes
an AgentError with the provider's message), then stream the call's audio into it (straight
into the socket's buffer; a provider that leaves SEND_DEADLINE seconds of it untaken has
stopped reading, and the session fails instead of stalling) while every message received is
handed to the client's handler as it is parsed.

Both directions skip the connection's async API: at 25 to 50 messages a second each way per
session, its locks, queues and task wake-ups cost more than the writes and the parsing.

The protocol's own pings (every PING_INTERVAL, answered within PING_TIMEOUT) find a provider
that has gone away without closing. A message the handler cannot make sense of is logged and
skipped: garbage from a provider never ends a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, InvalidURI, WebSocketException
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import Event, State
from websockets.typing import Data

from callboard.agents.base import (
    CLOSE_TIMEOUT,
    OPEN_TIMEOUT,
    SAMPLE_RATE,
    SEND_DEADLINE,
    AgentError,
    AgentLink,
)
from callboard.outbound_guard import FetchRefused, check_url
from callboard.tls import websocket_ssl

log = logging.getLogger(__name__)

PING_INTERVAL = 10.0
PING_TIMEOUT = 10.0
MAX_MESSAGE = 16 * 1024 * 1024  # a provider may send seconds of audio in one message


MessageHandler = Callable[[Data], None]


class AgentSocket(ClientConnection):
    """A client connection that hands each whole message (text as str, binary as bytes) to
    one handler right from `data_received`, instead of queueing it for `recv`. Messages that
    come before a handler is set (a greeting sent with the handshake's answer) wait for it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._handler: MessageHandler | None = None
        self._early: list[Data] = []
        self._parts: list[bytes] = []
        self._text = False

    def set_handler(self, handler: MessageHandler | None) -> None:
        self._handler = handler
        early, self._early = self._early, []
        if handler is not None:
            for message in early:
                handler(message)

    def process_event(self, event: Event) -> None:
        if self.response is None or not isinstance(event, Frame):
            super().process_event(event)  # the handshake's answer
            return
        opcode = event.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            self._text = opcode is Opcode.TEXT
            self._parts = []
        elif opcode is not Opcode.CONT:
            super().process_event(event)  # control frames: a pong ends the keepalive's wait
            return
        self._parts.append(bytes(event.data))
        if not event.fin:
            return  # the protocol bounds a fragmented message's size (max_size)
        data = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts = []
        message: Data = data.decode("utf-8", "replace") if self._text else data
        if self._handler is None:
            self._early.append(message)
        else:
            self._handler(message)


async def open_socket(
    url: str,
    provider: str,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
) -> AgentSocket:
    try:
        await check_url(url)
        return await connect(  # type: ignore[return-value]
            url,
            create_connection=AgentSocket,
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
    except FetchRefused as exc:
        raise AgentError(f"{provider}: {exc}") from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise AgentError(f"{provider}: cannot connect: {exc or type(exc).__name__}") from None


# Audio the provider has not taken yet, in the socket's write buffer: past this it has stopped
# reading (about SEND_DEADLINE seconds of 16 kHz PCM), and the session fails.
MAX_UNSENT = int(SEND_DEADLINE * SAMPLE_RATE * 2)
KEEPALIVE_CHECK = 1.0  # seconds between checks that something was sent lately


def client_frame(payload: bytes, text: bool) -> bytes:
    """One whole message as a masked client frame (RFC 6455 5.2, a fresh random key each,
    5.3): what the protocol's own send builds, without its frame objects, 50 times a second
    per session."""
    size = len(payload)
    first = b"\x81" if text else b"\x82"
    if size < 126:
        head = first + bytes((0x80 | size,))
    elif size < 65536:
        head = first + b"\xfe" + size.to_bytes(2, "big")
    else:
        head = first + b"\xff" + size.to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + apply_mask(payload, mask)


def send(socket: ClientConnection, data: Data, provider: str) -> bool:
    """One message straight into the socket's buffer. False once the connection is closing
    (its closing says why); AgentError when the provider has stopped reading."""
    if socket.protocol.state is not State.OPEN:
        return False
    if isinstance(data, str):
        socket.transport.write(client_frame(data.encode(), text=True))
    else:
        socket.transport.write(client_frame(data, text=False))
    if socket.transport.get_write_buffer_size() > MAX_UNSENT:
        raise AgentError(f"{provider} stopped reading ({SEND_DEADLINE:g} s of audio not taken)")
    return True


def send_now(socket: ClientConnection, data: Data, provider: str) -> None:
    """A message that must go (a reply, an injection): AgentError when it cannot."""
    if not send(socket, data, provider):
        raise AgentError(f"{provider}: the connection is closing")


async def bridge(
    socket: AgentSocket,
    provider: str,
    link: AgentLink,
    encode: Callable[[np.ndarray], Data | None],
    handle: MessageHandler,
    keepalive: tuple[float, Data] | None = None,
) -> None:
    """Send what the link hears (each frame as `encode` makes it; None skips it) while
    handing each message received to `handle`, until the provider closes (a normal close
    returns, any other raises AgentError) or either side fails: `handle` raising AgentError
    ends the session, any other exception skips that message. With `keepalive` (seconds,
    message), the message goes whenever nothing else was sent for that long."""
    loop = asyncio.get_running_loop()
    sent = [loop.time()]
    failed: asyncio.Future[None] = loop.create_future()

    def consume(frame: np.ndarray) -> None:
        data = encode(frame)
        if data is not None and send(socket, data, provider):
            sent[0] = loop.time()

    def fail(exc: BaseException) -> None:
        if not failed.done():
            failed.set_exception(exc)

    def receive(message: Data) -> None:
        if failed.done():
            return
        try:
            handle(message)
        except AgentError as exc:
            fail(exc)
        except Exception as exc:  # garbage from the provider: skip it, keep the call
            log.warning("%s agent: unusable message skipped (%s)", provider, exc)

    def check() -> None:
        try:
            idle = keepalive is not None and loop.time() - sent[0] >= keepalive[0]
            if idle and keepalive is not None and send(socket, keepalive[1], provider):
                sent[0] = loop.time()
        except AgentError as exc:
            fail(exc)
        timers[0] = loop.call_later(KEEPALIVE_CHECK, check)

    closed = loop.create_task(socket.wait_closed())
    timers = [loop.call_later(KEEPALIVE_CHECK, check)]
    socket.set_handler(receive)
    link.listen(consume, fail)
    try:
        await asyncio.wait({failed, closed}, return_when=asyncio.FIRST_COMPLETED)
        if failed.done():
            failed.result()  # raises the session's error
    finally:
        link.listen(None)
        socket.set_handler(None)
        timers[0].cancel()
        if not failed.done():
            failed.cancel()
        closed.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await socket.close()
    code = socket.close_code if socket.close_code is not None else 1006
    if code not in (1000, 1001):
        reason = socket.close_reason or "connection lost"
        raise AgentError(f"{provider} closed the session ({code} {reason})")
