"""One RTP/RTCP media session: the asyncio side of an RtpSender and an RtpReceiver.

RtpSession owns the UDP socket pair (RTP and RTCP), the clocks and the RTCP timer; the
sender (rtp.sender), the receiver (rtp.receiver) and the RTCP reporter (rtp.reports) do
the protocol work, given the time where they need it.

Threading model: everything runs on the event loop thread. The datagram callbacks only
parse, validate and queue (decoding waits for read_frame, so stateful decoders see packets
in sequence order); the media clock calls read_frame/write_frame once per 20 ms tick.
Nothing here awaits or blocks after open().
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from callboard.media.codecs import Codec, create_codec, normalize_codec_name
from callboard.media.frames import SAMPLE_RATE
from callboard.media.g711 import G711Law
from callboard.media.quality import mos_score
from callboard.rtp import rtcp
from callboard.rtp.ports import PortAllocator
from callboard.rtp.receiver import Address, RtpReceiver
from callboard.rtp.reports import RtcpReporter
from callboard.rtp.sender import RtpSender
from callboard.rtp.stats import RtpStats

log = logging.getLogger(__name__)

RTCP_INTERVAL = 5.0  # seconds, randomised 0.5..1.5x (RFC 3550 6.3.1)


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        # Bound straight to the session: one Python call less per packet.
        self.datagram_received = session._on_rtp  # type: ignore[method-assign]

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable while the far end is not up yet) are expected.
        log.debug("RTP socket error: %s", exc)


class _RtcpProtocol(asyncio.DatagramProtocol):
    def __init__(self, session: RtpSession) -> None:
        self._receive = session._on_rtcp

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._receive(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTCP socket error: %s", exc)


class RtpSession:
    def __init__(self, *, bind_ip: str, ports: PortAllocator | None) -> None:
        self.bind_ip = bind_ip
        self._ports = ports
        self.local_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._rtp_socket: socket.socket | None = None
        self._closed = False
        self._codec: Codec | None = None
        # The rate of the frames read_frame gives and write_frame takes: the codec's. Plain
        # attributes, as the media clock reads them for every leg on every tick.
        self.sample_rate = SAMPLE_RATE
        self.law: G711Law | None = None  # the codec's, when it is G.711
        # The codec's name when its packets may be forwarded to another leg on the same
        # codec instead of re-encoded (see forward); G.711 is coded in bulk instead.
        self.forward_key: str | None = None
        self._forwarding = False  # the last packet out was a forwarded one
        self._sender = RtpSender()
        self._receiver = RtpReceiver()
        self._reports = RtcpReporter(self._sender.ssrc)
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._send_errors = 0

    # --- set-up ------------------------------------------------------------------------

    async def open(self) -> int:
        """Bind the RTP/RTCP socket pair; returns the RTP port."""
        self._loop = asyncio.get_running_loop()
        assert self._ports is not None
        port, self._rtp, self._rtcp, self._rtp_socket = await self._ports.bind_pair(
            self.bind_ip, lambda: _RtpProtocol(self), lambda: _RtcpProtocol(self)
        )
        self.local_port = port
        self._update_connected()
        if self._receiver.remote is not None and self._rtcp_timer is None:
            self._schedule_rtcp()  # configured before the sockets were open
        return port

    def configure(
        self,
        *,
        remote: Address,
        remote_rtcp: Address | None,
        codec: str,
        payload_type: int,
        dtmf_payload_type: int | None,
    ) -> None:
        """Set (or change, on re-INVITE) the far end and the codec; statistics are kept."""
        name = normalize_codec_name(codec)
        if self._codec is None or self._codec.name != name:
            self._set_codec(create_codec(name))
        self._receiver.set_remote(remote, remote_rtcp)
        dtmf_pt = dtmf_payload_type if dtmf_payload_type is not None else -1
        for side in (self._sender, self._receiver):
            side.payload_type = payload_type
            side.dtmf_payload_type = dtmf_pt
        self._update_connected()
        if self._rtcp_timer is None and self._loop is not None and not self._closed:
            self._schedule_rtcp()

    def _set_codec(self, codec: Codec) -> None:
        self._codec = codec
        self.sample_rate = codec.sample_rate
        self.law = codec.law
        self.forward_key = codec.name if codec.law is None else None
        self._sender.set_codec(codec)
        self._receiver.set_codec(codec)

    def prefer_rate(self, rate: int) -> None:
        """The engine mixes this leg at `rate`: a codec that can code at it (Opus) moves
        there, so nothing is resampled on the way."""
        codec = self._codec
        if codec is None or codec.sample_rate == rate or rate not in codec.rates:
            return
        codec.set_rate(rate)
        self.sample_rate = rate
        self._receiver.codec_rate_changed()

    def _update_connected(self) -> None:
        # The sender builds (and numbers) packets only while they can go somewhere.
        self._sender.connected = (
            self._can_send() and self._receiver.remote is not None and self._codec is not None
        )

    def _can_send(self) -> bool:
        return self._rtp_socket is not None

    def set_direction(self, *, send: bool, receive: bool) -> None:
        self._sender.set_sending(send)
        self._receiver.set_receiving(receive)

    # --- media clock interface ---------------------------------------------------------

    def read_frame(self) -> np.ndarray | None:
        """The next 20 ms of received audio (int16 at sample_rate), or None before any
        arrived. Always exactly one frame long."""
        frame = self._receiver.read(encoded_ok=False, now=self._now())
        assert not isinstance(frame, bytes)
        return frame

    def read_encoded(self) -> np.ndarray | bytes | None:
        """read_frame for a G.711 codec that leaves decoding to the caller: a packet that is
        exactly one frame comes back as its payload (bytes), anything else as read_frame."""
        return self._receiver.read(encoded_ok=self.law is not None, now=self._now())

    def _now(self) -> float | None:
        return self._loop.time() if self._loop is not None else None

    @property
    def last_payload(self) -> bytes | None:
        """The packet the frame read_frame gave this tick was decoded from, when it was one
        whole 20 ms frame of one packet; None otherwise (concealment, pieces, nothing)."""
        return self._receiver.last_payload

    def write_frame(self, pcm: np.ndarray) -> None:
        """Send one 20 ms frame (int16 at sample_rate), or the DTMF packet due in this tick."""
        if self._forwarding:
            self._forwarding = False
            assert self._codec is not None
            self._codec.reset_encoder()
        packet = self._sender.frame_packet(pcm)
        if packet is not None:
            self._transmit(packet)

    def write_encoded(self, payload: bytes) -> None:
        """write_frame for a frame the caller already encoded with this session's codec."""
        packet = self._sender.encoded_packet(payload)
        if packet is not None:
            self._transmit(packet)

    def forward(self, payload: bytes) -> None:
        """write_frame for a frame that is another leg's packet on the same codec (its
        `last_payload`), sent on unchanged: what this leg hears is exactly that leg."""
        self._forwarding = True
        self.write_encoded(payload)

    def _transmit(self, packet: bytes) -> None:
        remote = self._receiver.remote
        assert self._rtp_socket is not None and remote is not None
        try:
            # Remote addresses are numeric (SDP host names are refused), so no DNS here. A
            # full socket buffer (BlockingIOError) drops the packet rather than queue it late.
            self._rtp_socket.sendto(packet, remote)
        except (OSError, ValueError, TypeError) as exc:
            # E.g. an IPv6 address on an IPv4 socket. Only this leg loses the packet; the
            # tick goes on.
            self._sender.not_sent(packet)
            self._send_errors += 1
            if self._send_errors == 1:
                log.info("RTP send to %s failed: %s", remote, exc)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events; ValueError for a bad digit or no negotiated event PT."""
        self._sender.queue_dtmf(digits, duration_ms)

    # --- datagram callbacks ------------------------------------------------------------

    def _on_rtp(self, data: bytes, addr: Any) -> None:
        assert self._loop is not None
        if self._receiver.receive(data, addr, self._loop.time()):
            self._on_rtcp(data, addr)  # RTCP multiplexed on the RTP port (RFC 5761)

    def _on_rtcp(self, data: bytes, addr: Any) -> None:
        try:
            packets = rtcp.parse_rtcp(data)
            assert self._loop is not None
            if packets:
                self._receiver.rtcp_arrived(addr)
            self._reports.take(packets, self._loop.time(), time.time())
        except Exception as exc:
            self._receiver.invalid += 1
            log.debug("dropped RTCP packet from %s: %r", addr, exc)

    # --- RTCP timer --------------------------------------------------------------------

    def _schedule_rtcp(self) -> None:
        assert self._loop is not None
        delay = RTCP_INTERVAL * random.uniform(0.5, 1.5)
        self._rtcp_timer = self._loop.call_later(delay, self._on_rtcp_timer)

    def _on_rtcp_timer(self) -> None:
        try:
            self._send_rtcp(self._report())
        except Exception:
            log.debug("RTCP report failed", exc_info=True)
        if not self._closed:
            self._schedule_rtcp()

    def _report(self) -> bytes:
        assert self._loop is not None
        return self._reports.report(self._sender, self._receiver, self._loop.time(), time.time())

    def _send_rtcp(self, data: bytes) -> None:
        remote_rtcp = self._receiver.remote_rtcp
        if self._rtcp is None or remote_rtcp is None:
            return
        try:
            self._rtcp.sendto(data, remote_rtcp)
        except (OSError, ValueError) as exc:
            log.debug("RTCP send to %s failed: %s", remote_rtcp, exc)

    # --- figures and teardown ----------------------------------------------------------

    @property
    def on_dtmf(self) -> Callable[[str], None] | None:
        """Called with each DTMF digit received (once per key press)."""
        return self._receiver.on_dtmf

    @on_dtmf.setter
    def on_dtmf(self, callback: Callable[[str], None] | None) -> None:
        self._receiver.on_dtmf = callback

    @property
    def last_rtp_time(self) -> float | None:
        """loop.time() of the last RTP packet accepted from the far end."""
        return self._receiver.last_rtp_time

    @property
    def remote_bye(self) -> bool:
        """The far end sent RTCP BYE."""
        return self._reports.remote_bye

    @property
    def ssrc(self) -> int:
        return self._sender.ssrc

    @property
    def remote(self) -> Address | None:
        """Where RTP is sent (after any latching)."""
        return self._receiver.remote

    @property
    def codec(self) -> Codec | None:
        return self._codec

    @property
    def stats(self) -> RtpStats:
        receiver = self._receiver
        reception = receiver.reception
        received = reception.received
        rtt = self._reports.rtt
        rtt_ms = rtt * 1000.0 if rtt is not None else None
        mos = None
        if received and self._codec is not None:
            loss, jitter_ms = reception.loss_fraction, reception.jitter_ms
            mos = round(mos_score(loss, jitter_ms, rtt_ms or 0.0, self._codec.name), 2)
        jitter = receiver.jitter_buffer
        return RtpStats(
            packets_received=received,
            packets_lost=reception.lost,
            jitter_ms=round(reception.jitter_ms, 2),
            packets_sent=self._sender.packets_sent,
            octets_sent=self._sender.octets_sent,
            mos=mos,
            rtt_ms=rtt_ms,
            late=jitter.late,
            invalid=receiver.invalid,
            duplicates=jitter.duplicate,
            overflow=jitter.overflow,
            concealed=receiver.concealed,
            unknown_payload_type=receiver.unknown_payload_type,
            foreign_source=receiver.foreign_source,
            latches=receiver.latches,
            jitter_buffer_frames=jitter.target,
        )

    def close(self) -> None:
        """Send RTCP BYE, close the sockets and free the ports. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        try:
            if self._receiver.remote_rtcp is not None and self._rtcp is not None:
                self._send_rtcp(self._report() + self._reports.bye())
        except Exception:
            log.debug("RTCP BYE failed", exc_info=True)
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        self._rtp = self._rtcp = None
        self._rtp_socket = None
        self._update_connected()
        if self.local_port and self._ports is not None:
            self._ports.release(self.local_port)
