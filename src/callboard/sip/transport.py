"""The asyncio adapter around the sans-IO `TransactionLayer`: UDP and TCP sockets on one port,
one timer handle, and the bookkeeping for bad input. Works on any asyncio loop (uvloop too).

Every interaction follows the same path: feed the layer -> hand events to the TU -> put the
layer's outgoing messages on the wire -> re-arm the timer for the layer's next deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from callboard.sip.deadline_timer import DeadlineTimer
from callboard.sip.errors import SipParseError
from callboard.sip.inbound import error_response, salvage_request, stamp_via_source
from callboard.sip.message import (
    MAX_MESSAGE_SIZE,
    SipRequest,
    SipResponse,
    StreamFramer,
    generate_tag,
    make_response,
    parse_message,
)
from callboard.sip.transaction import TransactionLayer, TxEvent

if TYPE_CHECKING:
    from callboard.sip.inbound_gate import InboundGate

log = logging.getLogger(__name__)

Address = tuple[str, int]
_BIND_ATTEMPTS = 30
_CONNECT_TIMEOUT = 10.0
_STAT_NAMES = (
    "udp_received",
    "tcp_received",
    "keepalives",
    "parse_errors",
    "oversize",
    "dropped",
    "bad_requests_answered",
    "refused_by_policy",
    "dropped_by_policy",
    "sent",
    "send_errors",
    "tcp_connections",
    "tcp_closed_bad_input",
    "tcp_closed_idle",
    "tcp_connect_failures",
    "callback_errors",
)


class SipTransport:
    def __init__(
        self,
        layer: TransactionLayer,
        on_events: Callable[[list[TxEvent]], None],
        *,
        listen_ip: str,
        port: int,
        idle_timeout: float = 300.0,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self._layer = layer
        self._on_events = on_events
        self._listen_ip = listen_ip
        self._requested_port = port
        self._port = 0
        self._idle_timeout = idle_timeout
        self.max_message_size = max_message_size
        self.stats: dict[str, int] = dict.fromkeys(_STAT_NAMES, 0)
        self.gate: InboundGate | None = None  # screens new requests (sip/inbound_gate.py)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[Address, _TcpConnection] = {}
        self._connecting: dict[Address, list[bytes]] = {}  # queued until connected
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: DeadlineTimer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind UDP and TCP on the same port; with port 0 retry until both get one number."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        attempts = _BIND_ATTEMPTS if self._requested_port == 0 else 1
        for attempt in range(attempts):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(self._listen_ip, self._requested_port)
            )
            port = udp.get_extra_info("sockname")[1]
            try:
                self._server = await loop.create_server(
                    lambda: _TcpConnection(self, None), host=self._listen_ip, port=port
                )
            except OSError:
                udp.close()
                if attempt == attempts - 1:
                    raise
                continue
            self._udp = udp
            self._port = port
            break
        self._sweeper = loop.call_later(self._idle_timeout / 4, self._sweep_idle)
        log.info("SIP listening on %s:%d (udp, tcp)", self._listen_ip, self._port)

    async def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweeper = None
        for task in list(self._tasks):
            task.cancel()
        if self._udp is not None:
            self._udp.close()
        for conn in list(self._connections.values()):
            conn.close()
        self._connections.clear()
        self._connecting.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def port(self) -> int:
        return self._port

    # --- the TU's entry points -----------------------------------------------------------

    def send_request(self, request: SipRequest, dest: Address, transport: str) -> str:
        key = self._layer.send_request(request, dest, transport, self._now())
        self._pump()
        return key

    def send_response(self, response: SipResponse) -> None:
        self._layer.send_response(response, self._now())
        self._pump()

    def send_stateless(
        self, message: SipRequest | SipResponse, dest: Address, transport: str
    ) -> None:
        self._layer.send_stateless(message, dest, transport)
        self._pump()

    def cancel_request(self, tx_key: str) -> str | None:
        key = self._layer.cancel_request(tx_key, self._now())
        self._pump()
        return key

    # --- receiving -----------------------------------------------------------------------

    def _on_datagram(self, data: bytes, source: Address) -> None:
        self.stats["udp_received"] += 1
        if not data.strip(b"\r\n"):
            self.stats["keepalives"] += 1  # RFC 5626 style CRLF keepalive
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._reject_malformed(data, source, exc)
            return
        self._deliver(message, source, "udp")

    def _deliver(self, message: SipRequest | SipResponse, source: Address, transport: str) -> None:
        if self._closed:
            return
        try:
            if isinstance(message, SipRequest):
                stamp_via_source(message, source)
                if self._refused(message, source, transport):
                    return
            events = self._layer.receive(message, source, transport, self._now())
        except Exception:
            log.exception("transaction layer failed on a message from %s", source)
            return
        self._dispatch(events)
        self._pump()

    def _refused(self, request: SipRequest, source: Address, transport: str) -> bool:
        """Ask the gate about a request that is not a retransmission; answer (statelessly)
        or drop one it refuses."""
        gate = self.gate
        if gate is None or self._layer.has_server_transaction(request):
            return False
        refusal = gate.screen(request, source[0], self._now())
        if refusal is None:
            return False
        if refusal.status == 0:
            self.stats["dropped_by_policy"] += 1
            log.debug("dropped %s from %s: %s", request.method, source, refusal.reason)
            return True
        self.stats["refused_by_policy"] += 1
        log.debug("refused %s from %s: %d %s", request.method, source, refusal.status,
                  refusal.reason)  # fmt: skip
        headers = list(refusal.headers)
        if refusal.status == 503 and refusal.reason:
            headers.append(("Warning", f'399 callboard "{refusal.reason}"'))
        response = make_response(request, refusal.status, to_tag=generate_tag(),
                                 extra_headers=headers)  # fmt: skip
        self.send_stateless(response, source, transport)
        return True

    def _reject_malformed(self, data: bytes, source: Address, error: SipParseError) -> None:
        self.stats["oversize" if error.status == 513 else "parse_errors"] += 1
        request = salvage_request(data)
        if request is None:
            self.stats["dropped"] += 1
            log.debug("dropped malformed datagram from %s: %s", source, error)
            return
        log.debug(
            "answering malformed %s from %s with %d: %s",
            request.method,
            source,
            error.status,
            error,
        )
        self.stats["bad_requests_answered"] += 1
        self._layer.send_stateless(error_response(request, error, self._listen_ip), source, "udp")
        self._pump()

    def _on_stream_error(self, conn: _TcpConnection, error: SipParseError) -> None:
        self.stats["oversize" if error.status == 513 else "parse_errors"] += 1
        self.stats["tcp_closed_bad_input"] += 1
        log.debug("closing TCP connection from %s: %s", conn.key, error)
        conn.close()

    def _dispatch(self, events: list[TxEvent]) -> None:
        if not events:
            return
        try:
            self._on_events(events)
        except Exception:
            self.stats["callback_errors"] += 1
            log.exception("SIP event handler failed")

    # --- sending and the timer -----------------------------------------------------------

    def _pump(self) -> None:
        """Put everything the layer queued on the wire, then re-arm the timer."""
        while True:
            outgoing = self._layer.pop_outgoing()
            if not outgoing:
                break
            for out in outgoing:
                self._send(out.message, out.dest, out.transport)
        self._rearm_timer()

    def _send(self, message: SipRequest | SipResponse, dest: Address, transport: str) -> None:
        if self._closed:
            return
        data = message.to_bytes()
        if transport == "udp":
            if self._udp is None:
                return
            try:
                self._udp.sendto(data, dest)
                self.stats["sent"] += 1
            except (OSError, ValueError, OverflowError) as exc:  # unreachable or invalid dest
                self.stats["send_errors"] += 1
                log.debug("UDP send to %s failed: %s", dest, exc)
        elif transport == "tcp":
            self._send_tcp(data, dest, message)
        else:
            log.warning("cannot send over unsupported transport %r", transport)
            self.stats["send_errors"] += 1
            # later, so that send_request returns its key before the TU hears of the failure
            self._require_loop().call_soon(self._report_failure, dest, transport)

    def _send_tcp(self, data: bytes, dest: Address, message: SipRequest | SipResponse) -> None:
        conn = self._connections.get(dest)
        if conn is None and isinstance(message, SipResponse):
            # RFC 3261 18.2.2: the request's connection is gone; try its Via instead.
            fallback = _via_address(message)
            if fallback is not None:
                dest = fallback
                conn = self._connections.get(dest)
        if conn is not None:
            conn.write(data)
            self.stats["sent"] += 1
            return
        queued = self._connecting.get(dest)
        if queued is not None:
            queued.append(data)
            return
        self._connecting[dest] = [data]
        loop = self._require_loop()
        task = loop.create_task(self._connect(dest))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, dest: Address) -> None:
        loop = self._require_loop()
        try:
            await asyncio.wait_for(
                loop.create_connection(lambda: _TcpConnection(self, dest), dest[0], dest[1]),
                _CONNECT_TIMEOUT,
            )
        except (OSError, ValueError, OverflowError) as exc:  # TimeoutError is an OSError
            self._connecting.pop(dest, None)
            if self._closed:
                return
            self.stats["tcp_connect_failures"] += 1
            log.info("TCP connection to %s:%d failed: %s", dest[0], dest[1], exc or "timeout")
            self._report_failure(dest, "tcp")
            return
        # connection_made registered the connection and flushed the queue

    def _report_failure(self, dest: Address, transport: str) -> None:
        if self._closed:
            return
        self._dispatch(self._layer.report_transport_error(dest, transport, self._now()))
        self._pump()

    def _rearm_timer(self) -> None:
        if not self._closed:
            if self._timer is None:
                self._timer = DeadlineTimer(self._require_loop(), self._on_timer)
            self._timer.follow(self._layer.next_deadline())

    def _on_timer(self, now: float) -> None:
        try:
            events = self._layer.handle_timers(now)
        except Exception:
            log.exception("transaction timers failed")
            events = []
        self._dispatch(events)
        self._pump()

    # --- TCP connection registry ---------------------------------------------------------

    def _register(self, conn: _TcpConnection) -> None:
        self.stats["tcp_connections"] += 1
        old = self._connections.get(conn.key)
        self._connections[conn.key] = conn
        if old is not None and old is not conn:
            old.close()
        for data in self._connecting.pop(conn.key, []):
            conn.write(data)
            self.stats["sent"] += 1

    def _unregister(self, conn: _TcpConnection) -> None:
        if self._connections.get(conn.key) is conn:
            del self._connections[conn.key]

    def _sweep_idle(self) -> None:
        now = self._now()
        for conn in list(self._connections.values()):
            if now - conn.last_activity > self._idle_timeout:
                self.stats["tcp_closed_idle"] += 1
                conn.close()
        if not self._closed:
            self._sweeper = self._require_loop().call_later(
                self._idle_timeout / 4, self._sweep_idle
            )

    @property
    def tcp_connection_count(self) -> int:
        return len(self._connections)

    def _now(self) -> float:
        return self._require_loop().time()

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("SipTransport.start() has not been awaited")
        return self._loop


def _via_address(response: SipResponse) -> Address | None:
    try:
        via = response.top_via
    except SipParseError:
        return None
    host = via.params.get("received") or via.sent_by[0]
    rport = via.params.get("rport")
    port = int(rport) if rport and rport.isascii() and rport.isdigit() else via.sent_by[1]
    return (host, port) if 0 < port < 65536 else None


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        try:
            self._owner._on_datagram(data, (str(addr[0]), int(addr[1])))
        except Exception:  # never let one datagram break the endpoint
            log.exception("unexpected error handling a UDP datagram")

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    """One TCP connection, accepted (key = peer address) or opened by us (key = dest)."""

    def __init__(self, owner: SipTransport, key: Address | None) -> None:
        self._owner = owner
        self.key: Address = key or ("", 0)
        self._framer = StreamFramer(owner.max_message_size)
        self._transport: asyncio.Transport | None = None
        self.last_activity = 0.0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport but implement it
        self._transport = cast(asyncio.Transport, transport)
        if self.key == ("", 0):
            peer = transport.get_extra_info("peername")
            self.key = (str(peer[0]), int(peer[1]))
        self.last_activity = self._owner._now()
        self._owner._register(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        owner = self._owner
        self.last_activity = owner._now()
        try:
            messages = self._framer.feed(data)
        except SipParseError as exc:
            owner._on_stream_error(self, exc)
            return
        except Exception:
            log.exception("unexpected error framing TCP data from %s", self.key)
            self.close()
            return
        for message in messages:
            if self.closed:
                break
            owner.stats["tcp_received"] += 1
            owner._deliver(message, self.key, "tcp")
        if self._framer.error is not None and not self.closed:
            owner._on_stream_error(self, self._framer.error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._owner._unregister(self)

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self.closed:
            self._transport.write(data)
            self.last_activity = self._owner._now()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._owner._unregister(self)
            if self._transport is not None:
                self._transport.close()
