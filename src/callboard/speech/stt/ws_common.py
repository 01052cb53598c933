"""What the WebSocket speech-to-text clients share: opening the provider's socket (handshake
failures become SttErrors with the provider's message) and running it as a session, where a
sender task streams the audio (each write bounded by a deadline, keep-alives while no audio
flows, the provider's end-of-audio messages at the end) while the caller reads the results.

Errors: a handshake answered 429 or 5xx, a connection that cannot be made or drops, and a
write that misses its deadline are transient; other 4xx are final. Results and keys never
reach the log above debug.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    InvalidStatus,
    InvalidURI,
    WebSocketException,
)
from websockets.frames import Close
from websockets.typing import Data

from callboard.outbound_guard import FetchRefused, check_url
from callboard.speech.stt.base import SEND_DEADLINE, SttError
from callboard.tls import websocket_ssl

log = logging.getLogger(__name__)

OPEN_TIMEOUT = 10.0  # seconds for TCP, TLS and the WebSocket handshake
END_WAIT = 3.0  # after the end-of-audio message: seconds for the last results (core waits 5)
CLOSE_TIMEOUT = 1.0  # seconds for the closing handshake before the socket is dropped

# Socket close codes after which a new connection may well succeed.
TRANSIENT_CLOSE_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})

ErrorReader = Callable[[int, Headers, bytes], str | None]


def websocket_base(http_base: str) -> str:
    """`https://api.example.com/` -> `wss://api.example.com` (http -> ws): the provider's
    configured REST base URL also names its WebSocket host."""
    base = http_base.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :]
    if base.startswith("http://"):
        return "ws://" + base[len("http://") :]
    return base


def json_body(body: str | bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def transient_status(status: int) -> bool:
    return status == 429 or status >= 500


async def open_socket(
    url: str,
    headers: dict[str, str],
    *,
    provider: str,
    read_error: ErrorReader,
    open_timeout: float = OPEN_TIMEOUT,
) -> ClientConnection:
    """Connect, or raise the SttError the failure deserves."""
    try:
        await check_url(url)
        return await connect(
            url,
            additional_headers=headers,
            open_timeout=open_timeout,
            close_timeout=CLOSE_TIMEOUT,
            compression=None,  # PCM hardly compresses; spare the CPU
            max_size=4 * 1024 * 1024,
            **websocket_ssl(url),
        )
    except InvalidStatus as exc:
        response = exc.response
        message = read_error(response.status_code, response.headers, bytes(response.body or b""))
        message = message or response.reason_phrase or "handshake rejected"
        raise SttError(
            f"{provider}: {message} (HTTP {response.status_code})",
            transient=transient_status(response.status_code),
        ) from None
    except InvalidURI as exc:
        raise SttError(f"{provider}: bad base URL: {exc}") from None
    except FetchRefused as exc:
        raise SttError(f"{provider}: {exc}") from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise SttError(
            f"{provider}: cannot connect: {exc or type(exc).__name__}", transient=True
        ) from None


class SocketSession:
    """One open provider socket: `start` the sender, iterate `messages`, then `close`.

    The sender's failures (a missed write deadline, an error from the audio itself) win over
    the closed socket they cause. Once the end-of-audio messages are out (`ended`), a close by
    the server, or no close within `end_wait`, is the normal end; the receiver may also call it
    done (`finished`), or done once nothing more comes for `linger` seconds.
    """

    def __init__(
        self,
        socket: ClientConnection,
        *,
        provider: str,
        send_deadline: float = SEND_DEADLINE,
        end_wait: float = END_WAIT,
    ) -> None:
        self.socket = socket
        self.provider = provider
        self.send_deadline = send_deadline
        self.end_wait = end_wait
        self.ended = False
        self.finished = False
        self.linger: float | None = None  # set: the session ends after this long with no message
        self._error: BaseException | None = None
        self._sender: asyncio.Task[None] | None = None

    async def send(self, data: Data) -> None:
        """One message, or a transient SttError when it cannot be written in time."""
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the send completes, and the sender would never stop.
        try:
            async with asyncio.timeout(self.send_deadline):
                await self.socket.send(data)
        except TimeoutError:
            raise SttError(
                f"{self.provider}: sending audio timed out after {self.send_deadline:g} s",
                transient=True,
            ) from None

    def start(
        self,
        audio: AsyncIterable[bytes],
        encode: Callable[[bytes], Data | None],
        end_messages: Sequence[Data],
        keepalive: tuple[float, Data] | None = None,
    ) -> None:
        """Stream `audio` (each chunk as `encode` makes it; None skips it), a keep-alive
        message after every `keepalive[0]` seconds without audio, then `end_messages`."""
        self._sender = asyncio.get_running_loop().create_task(
            self._pump(audio, encode, end_messages, keepalive),
            name=f"{self.provider}-stt-sender",
        )

    async def _pump(
        self,
        audio: AsyncIterable[bytes],
        encode: Callable[[bytes], Data | None],
        end_messages: Sequence[Data],
        keepalive: tuple[float, Data] | None,
    ) -> None:
        try:
            await self._stream(audio, encode, keepalive)
            for message in end_messages:
                await self.send(message)
            self.ended = True
            try:
                async with asyncio.timeout(self.end_wait):
                    await self.socket.wait_closed()
            except TimeoutError:
                log.info(
                    "%s STT: no close %g s after the end of audio", self.provider, self.end_wait
                )
                self._abort()
        except ConnectionClosed:
            pass  # the receiver sees the close and tells why
        except Exception as exc:
            self._error = exc
            self._abort()  # wakes the receiver, which raises this error

    async def _stream(
        self,
        audio: AsyncIterable[bytes],
        encode: Callable[[bytes], Data | None],
        keepalive: tuple[float, Data] | None,
    ) -> None:
        chunks = aiter(audio)
        pending: asyncio.Future[bytes] | None = None
        try:
            while True:
                if pending is None:
                    # A task of its own: a keep-alive timeout must not cancel the audio source.
                    pending = asyncio.ensure_future(anext(chunks))
                if keepalive is not None:
                    done, _ = await asyncio.wait({pending}, timeout=keepalive[0])
                    if not done:
                        await self.send(keepalive[1])
                        continue
                try:
                    chunk = await pending
                except StopAsyncIteration:
                    return
                finally:
                    if pending.done():
                        pending = None
                data = encode(chunk) if chunk else None
                if data is not None:
                    await self.send(data)
        finally:
            if pending is not None and not pending.done():
                pending.cancel()

    async def messages(self, closed: Callable[[Close | None], SttError]) -> AsyncIterator[Data]:
        """What the provider sends, until the session ends: normally (returns), or with the
        sender's error, or with `closed(close frame received or None)`."""
        while not self.finished:
            try:
                async with asyncio.timeout(self.linger):  # None: no limit
                    message = await self.socket.recv()
            except TimeoutError:
                return  # quiet for `linger` s after the provider answered the end
            except ConnectionClosed as exc:
                if self._error is not None:
                    raise self._error from None
                if self.ended:
                    return
                raise closed(exc.rcvd) from None
            yield message

    def _abort(self) -> None:
        transport = self.socket.transport
        if transport is not None:
            transport.abort()

    async def close(self) -> None:
        """Stop the sender and close the socket: politely when it is healthy, at once when
        it is not (a stuck socket must not hold up the caller)."""
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            await asyncio.wait({self._sender}, timeout=CLOSE_TIMEOUT)
        if self._error is not None or (self._sender is not None and not self._sender.done()):
            self._abort()
            return
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT + 0.5):
                await self.socket.close()
        except (TimeoutError, OSError, WebSocketException):
            self._abort()


def close_description(frame: Close | None) -> str:
    if frame is None:
        return "connection lost"
    return f"{frame.reason} ({frame.code})" if frame.reason else f"closed ({frame.code})"
