"""Allocation of RTP/RTCP UDP port pairs (RTP even, RTCP = RTP + 1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

DatagramFactory = Callable[[], asyncio.DatagramProtocol]


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
    ) -> tuple[int, asyncio.DatagramTransport, asyncio.DatagramTransport]:
        """Bind RTP and RTCP sockets on the next pair both of whose ports are free on
        the host; ports some other process holds are skipped (and left unreserved)."""
        loop = asyncio.get_running_loop()
        for _ in range(self._count):
            port = self.reserve()
            rtp_transport: asyncio.DatagramTransport | None = None
            try:
                rtp_transport, _ = await loop.create_datagram_endpoint(
                    rtp_factory, local_addr=(ip, port)
                )
                rtcp_transport, _ = await loop.create_datagram_endpoint(
                    rtcp_factory, local_addr=(ip, port + 1)
                )
            except OSError:
                if rtp_transport is not None:
                    rtp_transport.close()
                self.release(port)
                continue
            except BaseException:
                if rtp_transport is not None:
                    rtp_transport.close()
                self.release(port)
                raise
            return port, rtp_transport, rtcp_transport
        raise OSError("no free RTP ports")
