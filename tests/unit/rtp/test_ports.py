import asyncio
import socket

import pytest

from callboard.rtp.ports import PortAllocator


def test_even_ports_round_robin() -> None:
    ports = PortAllocator(30001, 30010)  # even ports 30002..30008 with RTCP <= 30010
    assert ports.capacity == 4
    first = [ports.reserve() for _ in range(4)]
    assert first == [30002, 30004, 30006, 30008]
    assert ports.in_use == 4
    with pytest.raises(OSError, match="no free RTP ports"):
        ports.reserve()
    ports.release(30004)
    ports.release(30004)  # idempotent
    assert ports.in_use == 3
    assert ports.reserve() == 30004


def test_freed_port_is_not_reused_at_once() -> None:
    ports = PortAllocator(30000, 30009)
    port = ports.reserve()
    ports.release(port)
    assert ports.reserve() != port


def test_invalid_range() -> None:
    with pytest.raises(ValueError):
        PortAllocator(30000, 30000)
    with pytest.raises(ValueError):
        PortAllocator(40000, 30000)


def _busy_udp(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", port))
    return sock


async def test_bind_pair_skips_ports_taken_by_others() -> None:
    base = 31000
    ports = PortAllocator(base, base + 7)
    blocker = _busy_udp(base + 1)  # the RTCP port of the first pair
    try:
        port, rtp, rtcp, rtp_socket = await ports.bind_pair(
            "127.0.0.1", asyncio.DatagramProtocol, asyncio.DatagramProtocol
        )
        assert port == base + 2
        assert rtp.get_extra_info("sockname")[1] == port
        assert rtcp.get_extra_info("sockname")[1] == port + 1
        assert rtp_socket.getsockname()[1] == port  # the transport's own socket
        assert ports.in_use == 1
        rtp.close()
        rtcp.close()
    finally:
        blocker.close()


async def test_bind_pair_exhaustion() -> None:
    ports = PortAllocator(31100, 31101)  # a single pair
    port, rtp, rtcp, _ = await ports.bind_pair(
        "127.0.0.1", asyncio.DatagramProtocol, asyncio.DatagramProtocol
    )
    try:
        with pytest.raises(OSError, match="no free RTP ports"):
            await ports.bind_pair("127.0.0.1", asyncio.DatagramProtocol, asyncio.DatagramProtocol)
    finally:
        rtp.close()
        rtcp.close()
        ports.release(port)
    assert ports.in_use == 0


async def test_bind_one_skips_ports_taken_by_others_and_exhausts() -> None:
    base = 31200
    ports = PortAllocator(base, base + 3)  # two even ports
    blocker = _busy_udp(base)
    try:
        bound = await ports.bind_one("127.0.0.1", asyncio.DatagramProtocol)
        assert bound.port == base + 2
        assert bound.socket.getsockname()[1] == bound.port
        assert bound.transport.get_extra_info("sockname")[1] == bound.port
        assert isinstance(bound.protocol, asyncio.DatagramProtocol)
        assert ports.in_use == 1  # the busy port was left unreserved
        with pytest.raises(OSError, match="no free RTP ports"):
            await ports.bind_one("127.0.0.1", asyncio.DatagramProtocol)
        bound.transport.close()
        ports.release(bound.port)
        assert ports.in_use == 0
    finally:
        blocker.close()
