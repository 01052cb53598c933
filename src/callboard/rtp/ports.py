"""Allocation of RTP/RTCP UDP port pairs (RTP even, RTCP = RTP + 1)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import NamedTuple

DatagramFactory = Callable[[], asyncio.DatagramProtocol]


class BoundPair(NamedTuple):
    port: int
    rtp: asyncio.DatagramTransport
    rtcp: asyncio.DatagramTransport
    # The RTP transport's own socket, for sending straight from the media clock: a plain
    # sendto() costs less than the transport's, and RTP that cannot go out at once is
    # better dropped than queued. Closed together with the transport.
    rtp_socket: socket.socket


class BoundSocket(NamedTuple):
    """One socket (RTCP multiplexed on it, as WebRTC does) and its transport's protocol."""

    port: int
    transport: asyncio.DatagramTransport
    protocol: asyncio.DatagramProtocol
    socket: socket.socket


def _bound_socket(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((ip, port))
    except BaseException:
        sock.close()
        raise
    return sock


class PortAllocator:
    """Hands out even ports round-robin, so a port just freed is not reused at once
    (late packets of the old call would otherwise land in the new one)."""

    def __init__(self, low: int, high: int) -> None:
        low += low % 2  # first even port
        if not 0 < low < high <= 65535:
            raise ValueError(f"invalid RTP port range {low}-{high}")
        self.low = low
        self.high = high
        self._count = (high - low + 1) // 2  # pairs whose RTCP port is still <= high
        if self._count < 1:
            raise ValueError(f"RTP port range {low}-{high} holds no port pair")
        self._next_index = 0
        self._used: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._used)

    @property
    def capacity(self) -> int:
        return self._count

    def reserve(self) -> int:
        """Mark the next free even port as used, without binding it."""
        for _ in range(self._count):
            port = self.low + 2 * self._next_index
            self._next_index = (self._next_index + 1) % self._count
            if port not in self._used:
                self._used.add(port)
                return port
        raise OSError("no free RTP ports")

    def release(self, port: int) -> None:
        self._used.discard(port)

    async def bind_pair(
        self, ip: str, rtp_factory: DatagramFactory, rtcp_factory: DatagramFactory
    ) -> BoundPair:
        """Bind RTP and RTCP sockets on the next pair both of whose ports are free on
        the host; ports some other process holds are skipped (and left unreserved)."""
        loop = asyncio.get_running_loop()
        for _ in range(self._count):
            port = self.reserve()
            sockets: list[socket.socket] = []
            transports: list[asyncio.DatagramTransport] = []
            try:
                sockets.append(_bound_socket(ip, port))
                sockets.append(_bound_socket(ip, port + 1))
                for sock, factory in zip(sockets, (rtp_factory, rtcp_factory), strict=True):
                    transport, _ = await loop.create_datagram_endpoint(factory, sock=sock)
                    transports.append(transport)
            except BaseException as exc:
                for transport in transports:
                    transport.close()
                for sock in sockets[len(transports) :]:
                    sock.close()
                self.release(port)
                if isinstance(exc, OSError):
                    continue
                raise
            return BoundPair(port, transports[0], transports[1], sockets[0])
        raise OSError("no free RTP ports")

    async def bind_one(self, ip: str, factory: DatagramFactory) -> BoundSocket:
        """One socket on the next free even port (its pair's odd port stays unused), for
        media that multiplexes RTCP; ports some other process holds are skipped."""
        loop = asyncio.get_running_loop()
        for _ in range(self._count):
            port = self.reserve()
            try:
                sock = _bound_socket(ip, port)
            except OSError:
                self.release(port)
                continue
            try:
                transport, protocol = await loop.create_datagram_endpoint(factory, sock=sock)
            except BaseException:
                sock.close()
                self.release(port)
                raise
            return BoundSocket(port, transport, protocol, sock)
        raise OSError("no free RTP ports")
