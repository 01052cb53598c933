"""aioice's ICE agent, with its host sockets taken from the RTP port range.

aioice binds every host candidate on an ephemeral port; a server behind a firewall needs
them in RTP_PORT_MIN..RTP_PORT_MAX like its SIP legs' media. This agent binds them through
the same PortAllocator, keeps each socket for sending straight from the media clock (as
RtpSession does), and leaves server-reflexive and relayed candidates to aioice's own code.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any, cast

import aioice
from aioice.candidate import candidate_foundation, candidate_priority
from aioice.ice import StunProtocol, server_reflexive_candidate
from aioice.turn import UDP_SOCKET_BUFFER_SIZE

from callboard.rtp.ports import PortAllocator


class PortRangeConnection(aioice.Connection):
    def __init__(self, ports: PortAllocator, **options: Any) -> None:
        super().__init__(**options)
        self._ports = ports
        self._reserved: list[int] = []
        self.sockets: dict[StunProtocol, socket.socket] = {}  # host protocol -> its socket

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[aioice.Candidate]:
        candidates: list[aioice.Candidate] = []
        hosts: list[StunProtocol] = []
        for address in addresses:
            try:
                bound = await self._ports.bind_one(address, lambda: StunProtocol(self))
            except OSError:
                continue  # e.g. an address that cannot be bound: aioice skips those too
            port, sock = bound.port, bound.socket
            protocol = cast(StunProtocol, bound.protocol)
            self._reserved.append(port)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_SOCKET_BUFFER_SIZE)
            protocol.local_candidate = aioice.Candidate(
                foundation=candidate_foundation("host", "udp", address),
                component=component,
                transport="udp",
                priority=candidate_priority(component, "host"),
                host=address,
                port=port,
                type="host",
            )
            self.sockets[protocol] = sock
            hosts.append(protocol)
            candidates.append(protocol.local_candidate)
        self._protocols += hosts
        reflexive = [
            server_reflexive_candidate(protocol, self.stun_server)
            for protocol in hosts
            if self.stun_server and ipaddress.ip_address(protocol.local_candidate.host).version == 4
        ]
        # With no host addresses, aioice's own gathering does only the TURN allocation.
        relayed, *found = await asyncio.gather(
            super().get_component_candidates(component, [], timeout),
            *(asyncio.wait_for(coro, timeout) for coro in reflexive),
            return_exceptions=True,
        )
        for result in found:
            if isinstance(result, tuple):
                candidates.append(result[0])
        if isinstance(relayed, list):
            candidates += relayed
        return candidates

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            for port in self._reserved:
                self._ports.release(port)
            self._reserved.clear()
            self.sockets.clear()
