"""The asyncio side of a WebRTC leg's media: ICE (aioice), then DTLS-SRTP (webrtc.dtls), then
RTP packets to and from an RtpSession.

ICE runs as the controlled agent (we answer). Every socket aioice binds gets a demultiplexer
in front of its STUN protocol (RFC 7983 by the first byte): STUN goes to aioice, DTLS to the
handshake, SRTP straight to the RtpSession after unprotecting, with no queue or task between
the datagram and the jitter buffer. Sending goes to the pair the browser nominated.

The leg sees three outcomes through `on_connected` and `on_closed(reason)`: media is up;
the peer closed (DTLS close_notify: `remote_bye`); or ICE/DTLS failed, did not finish within
the connect timeout, or lost consent later (`ice_failure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aioice
import pylibsrtp

from callboard.rtp.ports import PortAllocator
from callboard.rtp.session import RtpSession
from callboard.webrtc.dtls import DtlsEndpoint, DtlsError, certificate
from callboard.webrtc.ice import PortRangeConnection
from callboard.webrtc.offer import WebRtcOffer

log = logging.getLogger(__name__)

Address = tuple[str, int]
_EARLY_DTLS = 8  # datagrams kept while the browser's nomination reaches us
_CLOSING: set[asyncio.Task[None]] = set()


@dataclass(frozen=True)
class IceConfig:
    stun_server: Address | None = None
    turn_server: Address | None = None
    turn_username: str | None = None
    turn_password: str | None = None
    external_ips: tuple[str, ...] = ()  # advertised beside each host candidate (1:1 NAT)
    connect_timeout: float = 30.0  # ICE and DTLS must be done by then


class _Demux(asyncio.DatagramProtocol):
    """Put in front of one of aioice's STUN protocols."""

    def __init__(self, stun: Any, media: Callable[[bytes, Address, Any], None]) -> None:
        self.stun = stun
        self.protocol = stun  # the socket's aioice protocol: what replies go out through
        self.media = media

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not data:
            return
        if data[0] < 4:  # STUN (RFC 7983)
            self.stun.datagram_received(data, addr)
        else:
            self.media(data, (addr[0], addr[1]), self.protocol)

    def error_received(self, exc: Exception) -> None:
        self.stun.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.stun.connection_lost(exc)


class _Original:
    """A STUN protocol's own datagram_received, kept when the instance's is replaced."""

    def __init__(self, protocol: Any) -> None:
        self.datagram_received = protocol.datagram_received
        self.error_received = protocol.error_received
        self.connection_lost = protocol.connection_lost


class WebRtcRtpSession(RtpSession):
    """An RtpSession whose packets travel through a WebRtcTransport (SRTP over ICE)."""

    def __init__(self) -> None:
        super().__init__(bind_ip="", ports=None)
        self.link: WebRtcTransport | None = None

    async def open(self) -> int:
        self._loop = asyncio.get_running_loop()
        return 0

    def _can_send(self) -> bool:
        return self.link is not None and self.link.ready

    def media_up(self, remote: Address) -> None:
        """The nominated pair's far end: where RTP goes, and the one source it comes from
        (packets arrive SRTP-authenticated, so no latching rules apply)."""
        self._receiver.set_remote(remote, remote)
        self._update_connected()

    def _transmit(self, packet: bytes) -> None:
        assert self.link is not None
        if not self.link.send_rtp(packet):
            self._sender.not_sent(packet)

    def _send_rtcp(self, data: bytes) -> None:
        if self.link is not None:
            self.link.send_rtcp(data)


class WebRtcTransport:
    def __init__(
        self,
        offer: WebRtcOffer,
        rtp: WebRtcRtpSession,
        config: IceConfig,
        ports: PortAllocator,
        *,
        on_connected: Callable[[], None],
        on_closed: Callable[[str], None],
    ) -> None:
        self.ice = PortRangeConnection(
            ports,
            ice_controlling=False,
            components=1,
            stun_server=config.stun_server,
            turn_server=config.turn_server,
            turn_username=config.turn_username,
            turn_password=config.turn_password,
        )
        self.ice.remote_username = offer.ice_ufrag
        self.ice.remote_password = offer.ice_pwd
        self.dtls = DtlsEndpoint(
            certificate(), offer.fingerprint[1], server=offer.we_are_dtls_server
        )
        self._offer = offer
        self._config = config
        self.rtp = rtp
        rtp.link = self
        self._on_connected = on_connected
        self._on_closed = on_closed
        self.ready = False  # SRTP keys agreed and a pair nominated
        self._closed = False
        self._send: Callable[[bytes, Address], Any] | None = None
        self._remote: Address | None = None
        self._early: list[tuple[bytes, Address, Any]] = []
        # The address the RTP session is told every packet comes from: fixed, so that the
        # route moving to another validated pair is no change of source to it.
        self._session_addr: Address | None = None
        self._dtls_timer: asyncio.TimerHandle | None = None
        self._handshake_done: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending_remote: list[aioice.Candidate | None] = []
        self._local_unpolled: list[str] = []
        self.gathering_done = False
        self.srtp_dropped = 0

    @property
    def local_username(self) -> str:
        return self.ice.local_username

    @property
    def local_password(self) -> str:
        return self.ice.local_password

    # ---- lifecycle ----

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._handshake_done = loop.create_future()
        try:
            async with asyncio.timeout(self._config.connect_timeout):
                await self.ice.gather_candidates()
                self._gathered()
                for candidate in self._offer_candidates():
                    await self.ice.add_remote_candidate(candidate)
                if self._offer.end_of_candidates:
                    await self.ice.add_remote_candidate(None)
                await self.ice.connect()
                self._nominated()
                await self._handshake_done
        except Exception as exc:  # any failure of ICE or DTLS ends the leg, never the server
            if not self._closed:
                log.info("WebRTC media did not come up: %r", exc)
                self._finish("ice_failure")
            return
        self.ready = True
        log.debug(
            "WebRTC media up via %s (%s)", self._remote, self.dtls.srtp and self.dtls.srtp.profile
        )
        assert self._remote is not None
        self._session_addr = self._remote
        self.rtp.media_up(self._remote)
        self._on_connected()
        # Consent freshness (RFC 7675) runs in aioice; losing it closes the connection.
        while not self._closed:
            event = await self.ice.get_event()
            if event is None or isinstance(event, aioice.ConnectionClosed):
                if not self._closed:
                    log.info("WebRTC consent lost (the browser went away)")
                    self._finish("ice_failure")
                return

    def _offer_candidates(self) -> list[aioice.Candidate]:
        out = []
        for value in self._offer.candidates:
            candidate = parse_candidate(value)
            if candidate is not None:
                out.append(candidate)
        return out

    def _gathered(self) -> None:
        for protocol in self.ice._protocols:
            demux = _Demux(protocol, self._media_received)
            transport = getattr(protocol, "transport", None)
            if hasattr(transport, "set_protocol"):  # a socket of ours: the demux goes in front
                transport.set_protocol(demux)  # type: ignore[union-attr]
            else:  # a TURN allocation's transport calls the protocol's method each time
                demux.stun = _Original(protocol)
                protocol.datagram_received = demux.datagram_received  # type: ignore[method-assign,assignment]
        for candidate in self.ice.local_candidates:
            self._local_unpolled.append("candidate:" + candidate.to_sdp())
            if candidate.type == "host":
                for ip in self._config.external_ips:
                    advertised = f"{candidate.foundation}x {candidate.component} udp "
                    advertised += f"{candidate.priority - 1} {ip} {candidate.port} typ host"
                    self._local_unpolled.append("candidate:" + advertised)
        self.gathering_done = True

    def _nominated(self) -> None:
        pair = self.ice._nominated.get(1)
        if pair is None:
            raise ConnectionError("ICE finished without a nominated pair")
        self._route(pair.protocol, pair.remote_addr)
        self._flush(self.dtls.start())
        early, self._early = self._early, []
        for data, addr, protocol in early:
            self._media_received(data, addr, protocol)

    def _route(self, protocol: Any, remote: Address) -> None:
        # A host socket of ours is sent on directly, as RtpSession does (cheaper than the
        # transport's sendto, and a full buffer drops the packet rather than queue it); a
        # TURN allocation through its transport.
        sock = self.ice.sockets.get(protocol)
        self._send = sock.sendto if sock is not None else protocol.transport.sendto
        self._remote = remote

    def _follow(self, addr: Address, protocol: Any) -> bool:
        """Traffic from another address than the route's: move the route there if ICE
        validated that pair (the browser may use a pair other than the one it nominated
        first, e.g. IPv6 after IPv4); False for an address ICE never validated."""
        for pair in self.ice._check_list:
            if (
                pair.remote_addr == addr
                and pair.protocol is protocol
                and pair.state is aioice.ice.CandidatePair.State.SUCCEEDED
            ):
                log.debug("WebRTC media moves to %s", addr)
                self._route(protocol, addr)
                return True
        return False

    # ---- trickle ----

    def take_local_candidates(self) -> tuple[list[str], bool]:
        """Candidates gathered since the last call, and whether gathering has ended."""
        out, self._local_unpolled = self._local_unpolled, []
        return out, self.gathering_done

    async def add_remote_candidate(self, candidate: aioice.Candidate | None) -> None:
        """A trickled candidate of the browser, or None for end-of-candidates."""
        if self._closed:
            return
        with contextlib.suppress(ValueError):  # a second end-of-candidates
            await self.ice.add_remote_candidate(candidate)

    # ---- datagrams ----

    def _media_received(self, data: bytes, addr: Address, protocol: Any) -> None:
        first = data[0]
        if 127 < first < 192:
            srtp = self.dtls.srtp
            if srtp is None or not self.ready:
                return
            try:
                if 191 < data[1] < 224:  # RTCP packet types (RFC 5761 4)
                    self.rtp._on_rtcp(srtp.inbound.unprotect_rtcp(data), self._session_addr)
                else:
                    self.rtp._on_rtp(srtp.inbound.unprotect(data), self._session_addr)
            except pylibsrtp.Error:
                self.srtp_dropped += 1  # forged, replayed or damaged
                return
            if addr != self._remote:  # authenticated, from another validated pair
                self._follow(addr, protocol)
        elif 19 < first < 64:
            self._dtls_received(data, addr, protocol)

    def _dtls_received(self, data: bytes, addr: Address, protocol: Any) -> None:
        if self._send is None:
            if len(self._early) < _EARLY_DTLS:
                self._early.append((data, addr, protocol))
            return
        if addr != self._remote and not self._follow(addr, protocol):
            return
        try:
            out = self.dtls.receive(data)
        except DtlsError as exc:
            if self._handshake_done is not None and not self._handshake_done.done():
                self._handshake_done.set_exception(exc)
            return
        self._flush(out)
        if self.dtls.connected and self._handshake_done and not self._handshake_done.done():
            self._handshake_done.set_result(None)
        if self.dtls.closed_by_peer and not self._closed:
            self._finish("remote_bye")

    def _flush(self, datagrams: list[bytes]) -> None:
        if self._send is None or self._remote is None:
            return
        for datagram in datagrams:
            self._send(datagram, self._remote)
        self._arm_dtls_timer()

    def _arm_dtls_timer(self) -> None:
        if self._dtls_timer is not None:
            self._dtls_timer.cancel()
            self._dtls_timer = None
        delay = self.dtls.timeout()
        if delay is not None and not self._closed:
            loop = asyncio.get_running_loop()
            self._dtls_timer = loop.call_later(max(delay, 0.001), self._dtls_timeout)

    def _dtls_timeout(self) -> None:
        self._dtls_timer = None
        self._flush(self.dtls.handle_timeout())

    def send_rtp(self, packet: bytes) -> bool:
        send, srtp = self._send, self.dtls.srtp
        if send is None or srtp is None or self._remote is None:
            return False
        try:
            send(srtp.outbound.protect(packet), self._remote)
        except (OSError, pylibsrtp.Error):
            return False
        return True

    def send_rtcp(self, packet: bytes) -> None:
        send, srtp = self._send, self.dtls.srtp
        if send is None or srtp is None or self._remote is None or not self.ready:
            return
        with contextlib.suppress(OSError, pylibsrtp.Error):
            send(srtp.outbound.protect_rtcp(packet), self._remote)

    # ---- teardown ----

    def _finish(self, reason: str) -> None:
        self.close()
        self._on_closed(reason)

    def close(self) -> None:
        """Tell the browser (RTCP BYE from the session, then DTLS close_notify) and free the
        sockets. Idempotent; the leg reports its own end."""
        if self._closed:
            return
        self.rtp.close()  # its RTCP BYE still goes out: the link is up until below
        with contextlib.suppress(Exception):
            self._flush(self.dtls.close())
        self._closed = True
        self.ready = False
        if self._dtls_timer is not None:
            self._dtls_timer.cancel()
        if self._handshake_done is not None and not self._handshake_done.done():
            self._handshake_done.cancel()
        task = self._task
        current = asyncio.current_task()
        if task is not None and task is not current and not task.done():
            task.cancel()
        closing = asyncio.get_running_loop().create_task(self._close_ice())
        _CLOSING.add(closing)  # the loop keeps only a weak reference to a task
        closing.add_done_callback(_CLOSING.discard)

    async def _close_ice(self) -> None:
        try:
            await self.ice.close()
        except Exception:
            log.debug("closing ICE failed", exc_info=True)


def parse_candidate(value: str) -> aioice.Candidate | None:
    """A "candidate:..." attribute value -> aioice's Candidate; None when it is not one we can
    use (junk, or an unknown transport)."""
    text = value.strip().removeprefix("a=").removeprefix("candidate:")
    try:
        candidate = aioice.Candidate.from_sdp(text)
    except (ValueError, IndexError, KeyError):
        return None
    if candidate.transport.lower() != "udp" or not 0 < candidate.port < 65536:
        return None
    return candidate
