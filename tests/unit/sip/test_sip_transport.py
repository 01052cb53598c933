"""SipTransport over real loopback sockets (UDP and TCP)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import uvloop

from callboard.sip.header_map import Headers
from callboard.sip.identifiers import generate_branch
from callboard.sip.message import SipRequest, make_response, parse_message
from callboard.sip.transaction import (
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransportFailure,
    TxEvent,
)
from callboard.sip.transport import SipTransport

LOCALHOST = "127.0.0.1"


@dataclass
class Endpoint:
    """A transport whose TU answers every OPTIONS with 200 and records all events."""

    layer: TransactionLayer
    transport: SipTransport = field(init=False)
    events: list[TxEvent] = field(default_factory=list)
    raise_after_handling: bool = False

    def on_events(self, events: list[TxEvent]) -> None:
        self.events += events
        for event in events:
            if isinstance(event, RequestReceived) and event.request.method == "OPTIONS":
                self.transport.send_response(make_response(event.request, 200, to_tag="t"))
        if self.raise_after_handling:
            raise RuntimeError("TU bug")

    def responses(self) -> list[int]:
        return [e.response.status for e in self.events if isinstance(e, ResponseReceived)]

    def requests(self) -> list[SipRequest]:
        return [e.request for e in self.events if isinstance(e, RequestReceived)]


async def make_endpoint(layer: TransactionLayer | None = None) -> Endpoint:
    endpoint = Endpoint(layer if layer is not None else TransactionLayer())
    endpoint.transport = SipTransport(
        endpoint.layer, endpoint.on_events, listen_ip=LOCALHOST, port=0
    )
    await endpoint.transport.start()
    return endpoint


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Endpoint, Endpoint]]:
    a, b = await make_endpoint(), await make_endpoint()
    yield a, b
    await a.transport.close()
    await b.transport.close()


def options(sender_port: int, transport: str = "UDP") -> SipRequest:
    branch = generate_branch()
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {LOCALHOST}:{sender_port};branch={branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:a@{LOCALHOST}>;tag=f1"),
            ("To", f"<sip:b@{LOCALHOST}>"),
            ("Call-ID", generate_branch()),
            ("CSeq", "1 OPTIONS"),
        ]
    )
    return SipRequest("OPTIONS", f"sip:b@{LOCALHOST}", headers)


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def exchange(a: Endpoint, b: Endpoint, transport: str) -> None:
    before = a.responses().count(200)
    a.transport.send_request(
        options(a.transport.port, transport.upper()), (LOCALHOST, b.transport.port), transport
    )
    await eventually(lambda: a.responses().count(200) == before + 1)


async def test_udp_options_exchange(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    await exchange(a, b, "udp")
    (received,) = b.requests()
    via = received.top_via
    assert via.params["rport"] == str(a.transport.port)
    assert via.params["received"] == LOCALHOST
    assert a.transport.stats["udp_received"] >= 1 and b.transport.stats["sent"] >= 1


async def test_tcp_options_exchange_reuses_the_connection(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    await exchange(a, b, "tcp")
    await exchange(a, b, "tcp")
    assert a.transport.stats["tcp_connections"] == 1
    assert b.transport.stats["tcp_connections"] == 1
    assert a.transport.stats["udp_received"] == 0
    # over TCP both transactions end with the final response
    assert len(a.layer) == 0 and len(b.layer) == 0


async def test_ephemeral_port_is_shared_and_busy_port_raises(
    pair: tuple[Endpoint, Endpoint],
) -> None:
    a, _ = pair
    port = a.transport.port
    assert port > 0
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe, pytest.raises(OSError):
            probe.bind((LOCALHOST, port))
    clash = SipTransport(TransactionLayer(), lambda events: None, listen_ip=LOCALHOST, port=port)
    with pytest.raises(OSError):
        await clash.start()


async def test_malformed_datagrams_are_answered_or_dropped(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind((LOCALHOST, 0))
        raw.setblocking(False)
        dest = (LOCALHOST, b.transport.port)
        await loop.sock_sendto(raw, b"\x00\xffthis is not SIP at all", dest)
        await eventually(lambda: b.transport.stats["dropped"] == 1)
        bad = (
            options(raw.getsockname()[1])
            .to_bytes()
            .replace(b"Content-Length: 0", b"Content-Length: 12x")
        )
        await loop.sock_sendto(raw, bad, dest)
        data = await asyncio.wait_for(loop.sock_recv(raw, 65535), 3)
    reply = parse_message(data)
    assert reply.start_line() == "SIP/2.0 400 Bad Request"
    assert "Content-Length" in (reply.headers.get("Warning") or "")
    assert b.transport.stats["parse_errors"] == 2
    assert b.transport.stats["bad_requests_answered"] == 1
    assert b.requests() == []
    await exchange(a, b, "udp")  # still working


async def test_tcp_junk_closes_only_that_connection(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    await exchange(a, b, "tcp")
    reader, writer = await asyncio.open_connection(LOCALHOST, b.transport.port)
    junk = bytes(range(256)) * 4096  # 1 MiB
    try:
        for offset in range(0, len(junk), 65536):
            writer.write(junk[offset : offset + 65536])
            await writer.drain()
    except ConnectionError:
        pass  # the server may reset us while we are still writing
    with contextlib.suppress(ConnectionError):
        assert await asyncio.wait_for(reader.read(), 3) == b""
    writer.close()
    await eventually(lambda: b.transport.stats["tcp_closed_bad_input"] == 1)
    assert b.transport.tcp_connection_count == 1  # A's connection survives
    await exchange(a, b, "tcp")
    assert a.transport.stats["tcp_connections"] == 1


async def test_exception_in_event_handler_is_contained(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    b.raise_after_handling = True
    await exchange(a, b, "udp")
    await exchange(a, b, "udp")
    assert b.transport.stats["callback_errors"] == 2


async def test_tcp_connect_failure_reports_transport_failure(
    pair: tuple[Endpoint, Endpoint],
) -> None:
    a, _ = pair
    with socket.socket() as s:
        s.bind((LOCALHOST, 0))
        closed_port = s.getsockname()[1]
    key = a.transport.send_request(
        options(a.transport.port, "TCP"), (LOCALHOST, closed_port), "tcp"
    )
    await eventually(lambda: any(isinstance(e, TransportFailure) for e in a.events))
    assert [e.tx_key for e in a.events if isinstance(e, TransportFailure)] == [key]
    assert a.transport.stats["tcp_connect_failures"] == 1
    assert len(a.layer) == 0


async def test_unsupported_transport_fails_after_the_key_is_returned(
    pair: tuple[Endpoint, Endpoint],
) -> None:
    a, _ = pair
    key = a.transport.send_request(options(a.transport.port, "TLS"), (LOCALHOST, 5061), "tls")
    assert a.events == []
    await eventually(
        lambda: [e.tx_key for e in a.events if isinstance(e, TransportFailure)] == [key]
    )
    assert len(a.layer) == 0


async def test_timer_drives_udp_retransmissions() -> None:
    a = await make_endpoint(TransactionLayer(t1=0.05, t2=0.2, t4=0.1))
    loop = asyncio.get_running_loop()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind((LOCALHOST, 0))
            raw.setblocking(False)
            a.transport.send_request(options(a.transport.port), raw.getsockname(), "udp")
            copies = [await asyncio.wait_for(loop.sock_recv(raw, 65535), 2) for _ in range(4)]
            request = parse_message(copies[0])
            assert isinstance(request, SipRequest)
            assert all(copy == copies[0] for copy in copies)
            ok = make_response(request, 200, to_tag="x").to_bytes()
            await loop.sock_sendto(raw, ok, (LOCALHOST, a.transport.port))
            await eventually(lambda: a.responses() == [200])
            with contextlib.suppress(BlockingIOError):
                while True:  # whatever was already in flight
                    raw.recv(65535)
            await asyncio.sleep(0.5)  # more than T2: a live Timer E would have fired
            with pytest.raises(BlockingIOError):
                raw.recv(65535)
        await eventually(lambda: len(a.layer) == 0)  # Timer K (T4) ends the transaction
    finally:
        await a.transport.close()


def run_on_uvloop(test: Callable[[], Awaitable[None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(test())  # type: ignore[arg-type]


def test_works_on_uvloop() -> None:
    async def scenario() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        a, b = await make_endpoint(), await make_endpoint()
        try:
            await exchange(a, b, "udp")
            await exchange(a, b, "tcp")
        finally:
            await a.transport.close()
            await b.transport.close()

    run_on_uvloop(scenario)
