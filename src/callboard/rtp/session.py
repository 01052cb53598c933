"""One RTP/RTCP media session: UDP sockets, codec, jitter buffer, DTMF, RTCP reports.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from callboard.media.codecs import Codec, create_codec, normalize_codec_name
from callboard.media.frames import SAMPLE_RATE
from callboard.media.g711 import G711Law
from callboard.media.jitter import MISSING, JitterBuffer, PopResult
from callboard.media.quality import mos_score
from callboard.rtp import rtcp
from callboard.rtp.dtmf import DtmfReceiver, DtmfSender
from callboard.rtp.packet import HEADER, build_rtp, payload_bounds
from callboard.rtp.ports import PortAllocator
from callboard.rtp.stats import ReceptionStats

log = logging.getLogger(__name__)

# Consecutive packets from an unsignalled address before media follows it (RFC 4961 latching).
LATCH_AFTER_PACKETS = 3

Address = tuple[str, int]

RTCP_INTERVAL = 5.0  # seconds, randomised 0.5..1.5x (RFC 3550 6.3.1)
STALL_FRAMES = 3  # consecutive missing frames after which we play silence, not PLC
_RTCP_MUX_TYPES = range(72, 77)  # RTCP packet types 200-204 seen as RTP payload types


@dataclass(slots=True)
class RtpStats:
    packets_received: int
    packets_lost: int
    jitter_ms: float
    packets_sent: int
    octets_sent: int
    mos: float | None
    rtt_ms: float | None
    late: int
    invalid: int
    # Beyond the contract: where the losses and drops came from.
    duplicates: int = 0
    overflow: int = 0
    concealed: int = 0
    unknown_payload_type: int = 0
    foreign_source: int = 0
    latches: int = 0
    jitter_buffer_frames: int = 0


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
    def __init__(self, *, bind_ip: str, ports: PortAllocator) -> None:
        self.bind_ip = bind_ip
        self._ports = ports
        self.local_port = 0
        self.on_dtmf: Callable[[str], None] | None = None
        self.last_rtp_time: float | None = None
        self.remote_bye = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._rtp_socket: socket.socket | None = None
        self._closed = False
        # Negotiated media.
        self._codec: Codec | None = None
        self._payload_type = -1
        self._dtmf_payload_type = -1
        self._remote: Address | None = None
        self._signalled: Address | None = None  # the far end's address as SDP gave it
        self._candidate: Address | None = None  # an unsignalled source we may latch onto
        self._candidate_packets = 0
        self._remote_rtcp: Address | None = None
        self._rtcp_latched = False
        self._source: Any = None  # the far end's address once its first packet came in
        self._send = True
        self._receive = True
        # Outgoing stream.
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._timestamp_step = 160
        self._marker_next = True
        # The rate of the frames read_frame gives and write_frame takes: the codec's.
        self.sample_rate = SAMPLE_RATE
        self.law: G711Law | None = None  # the codec's, when it is G.711
        self._frame_samples = 0  # 20 ms at the codec's sample rate
        self._silence = np.zeros(0, dtype=np.int16)
        self._dtmf_sender = DtmfSender()
        self._cname = f"{self._ssrc:08x}@callboard"
        # Incoming stream.
        self._remote_ssrc: int | None = None
        self._jitter = JitterBuffer()
        self._reception = ReceptionStats(8000)
        self._dtmf_receiver = DtmfReceiver()
        self._pending: np.ndarray | None = None  # decoded audio beyond the last frame
        self._missing_run = 0
        # RTCP.
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self._last_sr_middle = 0
        self._last_sr_arrival = 0.0
        self._rtt: float | None = None
        self._sent_at_last_report = 0
        # Counters.
        self._packets_sent = 0
        self._send_errors = 0
        self._octets_sent = 0
        self._invalid = 0
        self._unknown_pt = 0
        self._foreign = 0
        self._latches = 0
        self._concealed = 0

    # --- set-up ------------------------------------------------------------------------

    async def open(self) -> int:
        """Bind the RTP/RTCP socket pair; returns the RTP port."""
        self._loop = asyncio.get_running_loop()
        port, self._rtp, self._rtcp, self._rtp_socket = await self._ports.bind_pair(
            self.bind_ip, lambda: _RtpProtocol(self), lambda: _RtcpProtocol(self)
        )
        self.local_port = port
        if self._remote is not None and self._rtcp_timer is None:
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
        remote = (remote[0], remote[1])
        if remote != self._signalled:
            self._source = None  # the new far end may latch again
            self._rtcp_latched = False
            self._candidate = None
            self._remote = remote
        self._signalled = remote
        if remote_rtcp is not None:
            self._remote_rtcp = (remote_rtcp[0], remote_rtcp[1])
        elif not self._rtcp_latched:
            self._remote_rtcp = (remote[0], remote[1] + 1)
        self._payload_type = payload_type
        self._dtmf_payload_type = dtmf_payload_type if dtmf_payload_type is not None else -1
        if self._rtcp_timer is None and self._loop is not None and not self._closed:
            self._schedule_rtcp()

    def _set_codec(self, codec: Codec) -> None:
        old_rate = self._reception.clock_rate
        self._codec = codec
        self.sample_rate = codec.sample_rate
        self.law = codec.law
        # Latency is given back by dropping a frame in a pause where the codec lets us tell.
        self._jitter.is_quiet = codec.law.is_quiet if codec.law is not None else None
        self._frame_samples = codec.sample_rate // 50
        self._silence = np.zeros(self._frame_samples, dtype=np.int16)
        self._silence.flags.writeable = False
        self._timestamp_step = codec.timestamp_step(20)
        self._dtmf_sender = DtmfSender(clock_rate=codec.rtp_clock_rate)
        self._jitter.set_clock_rate(codec.rtp_clock_rate)
        self._jitter.resync()
        if codec.rtp_clock_rate != old_rate:
            self._reception.change_clock_rate(codec.rtp_clock_rate)
        self._pending = None
        self._marker_next = True

    def set_direction(self, *, send: bool, receive: bool) -> None:
        if send and not self._send:
            self._marker_next = True
        if not receive and self._receive:
            self._jitter.resync()
            self._pending = None
        self._send = send
        self._receive = receive

    # --- receive path (datagram callbacks) ---------------------------------------------

    def _on_rtp(self, data: bytes, addr: Any) -> None:
        try:
            if len(data) < 12:
                if len(data) >= 8 and data[1] & 0x7F in _RTCP_MUX_TYPES:  # e.g. a lone BYE
                    self._on_rtcp(data, addr)
                else:
                    self._invalid += 1
                return
            first, second, seq, timestamp, ssrc = HEADER.unpack_from(data)
            payload_type = second & 0x7F
            if payload_type == self._payload_type:
                is_audio = True
            elif payload_type == self._dtmf_payload_type:
                is_audio = False
            elif payload_type in _RTCP_MUX_TYPES:  # RFC 5761: RTCP on the RTP port
                self._on_rtcp(data, addr)
                return
            else:
                self._unknown_pt += 1
                self._invalid += 1
                return
            if first == 0x80:
                payload = data[12:]
            else:
                start, end = payload_bounds(data)
                payload = data[start:end]
            if addr != self._source and not self._accept_source(addr):
                return
            assert self._loop is not None
            now = self._loop.time()
            self.last_rtp_time = now
            if ssrc != self._remote_ssrc:
                if self._remote_ssrc is not None:
                    self._jitter.resync()
                    self._reception.reset_source()
                self._remote_ssrc = ssrc
            self._reception.update(seq, timestamp, now, timing=is_audio)
            if is_audio:
                if self._receive:
                    self._jitter.push(seq, timestamp, payload, now)
            else:
                digit = self._dtmf_receiver.feed(timestamp, payload)
                if digit is not None and self.on_dtmf is not None:
                    self._report_digit(self.on_dtmf, digit)
        except Exception as exc:
            # A datagram callback must never raise: garbage is counted and dropped (and
            # logged without a stack trace: a flood of it must not flood the log).
            self._invalid += 1
            log.debug("dropped RTP packet from %s: %r", addr, exc)

    @staticmethod
    def _report_digit(callback: Callable[[str], None], digit: str) -> None:
        try:
            callback(digit)
        except Exception:  # the listener's bug, not a bad packet
            log.exception("on_dtmf callback failed")

    def _accept_source(self, addr: Any) -> bool:
        """Symmetric RTP (RFC 4961, comedia): the first valid packet fixes the far end's
        address; if it differs from the signalled one, send there from now on."""
        if self._source is not None:
            self._foreign += 1
            return False
        source = (addr[0], addr[1])
        if source != self._signalled:
            # Latch onto an unsignalled source (a peer behind NAT) only after several packets
            # in a row from it, so one spoofed packet cannot take the call's media (RTP bleed).
            if source == self._candidate:
                self._candidate_packets += 1
            else:
                self._candidate, self._candidate_packets = source, 1
            if self._candidate_packets < LATCH_AFTER_PACKETS:
                self._foreign += 1
                return False
            self._latches += 1
            self._remote = source
            if not self._rtcp_latched:
                self._remote_rtcp = (source[0], source[1] + 1)
            log.info("RTP latched to %s:%d", source[0], source[1])
        self._source = addr
        return True

    # --- media clock interface ---------------------------------------------------------

    def read_frame(self) -> np.ndarray | None:
        """The next 20 ms of received audio (int16 at sample_rate), or None before any
        arrived. Always exactly one frame long."""
        frame = self._read(encoded_ok=False)
        assert not isinstance(frame, bytes)
        return frame

    def read_encoded(self) -> np.ndarray | bytes | None:
        """read_frame for a G.711 codec that leaves decoding to the caller: a packet that is
        exactly one frame comes back as its payload (bytes), anything else as read_frame."""
        return self._read(encoded_ok=self.law is not None)

    def _read(self, *, encoded_ok: bool) -> np.ndarray | bytes | None:
        codec = self._codec
        if self.last_rtp_time is None or codec is None:
            return None
        if not self._receive:
            return self._silence
        size = self._frame_samples
        pending = self._pending
        if pending is not None and len(pending) >= size:
            return self._take_pending(pending)
        for _ in range(8):  # short packets (e.g. 10 ms) need more than one per tick
            item = self._jitter.pop()
            # G.711 carries one byte per sample: this payload is exactly one frame.
            if encoded_ok and pending is None and type(item) is bytes and len(item) == size:
                self._missing_run = 0
                codec.remember(item)
                return item
            pcm = self._decoded(item)
            if pcm is None:
                return self._silence
            if pending is None and len(pcm) == size:
                return pcm
            pending = pcm if pending is None else np.concatenate((pending, pcm))
            if len(pending) >= size:
                return self._take_pending(pending)
        self._pending = None
        return self._silence

    def _take_pending(self, pending: np.ndarray) -> np.ndarray:
        size = self._frame_samples
        frame = pending[:size]
        self._pending = pending[size:] if len(pending) > size else None
        return frame

    def _decoded(self, item: PopResult) -> np.ndarray | None:
        """One packet's worth of audio from a jitter buffer item; None while buffering or
        stalled."""
        assert self._codec is not None
        if item is None:
            return None
        if item is MISSING:
            self._missing_run += 1
            if self._missing_run > STALL_FRAMES:
                return None
            self._concealed += 1
            return self._codec.conceal()
        self._missing_run = 0
        try:
            pcm = self._codec.decode(item)
        except Exception:
            self._invalid += 1
            pcm = self._codec.conceal()
        if len(pcm) == 0:
            return None
        return pcm

    def write_frame(self, pcm: np.ndarray) -> None:
        """Send one 20 ms frame (int16 at sample_rate), or the DTMF packet due in this tick."""
        timestamp = self._audio_timestamp()
        if timestamp is not None:
            assert self._codec is not None
            self._send_audio(timestamp, self._codec.encode(pcm))

    def write_encoded(self, payload: bytes) -> None:
        """write_frame for a frame the caller already encoded with this session's codec."""
        timestamp = self._audio_timestamp()
        if timestamp is not None:
            self._send_audio(timestamp, payload)

    def _audio_timestamp(self) -> int | None:
        """Advance the clock by one frame; the frame's timestamp if audio goes out now (not
        on hold, no DTMF packet due instead)."""
        timestamp = self._timestamp
        self._timestamp = (timestamp + self._timestamp_step) & 0xFFFFFFFF
        if self._codec is None or self._remote is None or self._rtp is None:
            return None
        if not self._send:
            self._marker_next = True
            return None
        if self._dtmf_sender.busy:
            event = self._dtmf_sender.next_packet(timestamp)
            if event is not None:
                self._send_packet(
                    self._dtmf_payload_type, event.timestamp, event.payload, event.marker
                )
                return None
        return timestamp

    def _send_audio(self, timestamp: int, payload: bytes) -> None:
        marker = self._marker_next
        self._marker_next = False
        self._send_packet(self._payload_type, timestamp, payload, marker)

    def _send_packet(self, payload_type: int, timestamp: int, payload: bytes, marker: bool) -> None:
        assert self._rtp_socket is not None and self._remote is not None
        packet = build_rtp(payload_type, self._seq, timestamp, self._ssrc, payload, marker)
        self._seq = (self._seq + 1) & 0xFFFF
        try:
            # Remote addresses are numeric (SDP host names are refused), so no DNS here. A
            # full socket buffer (BlockingIOError) drops the packet rather than queue it late.
            self._rtp_socket.sendto(packet, self._remote)
        except (OSError, ValueError, TypeError) as exc:
            # E.g. an IPv6 address on an IPv4 socket. Only this leg loses the packet; the
            # tick goes on.
            self._send_errors += 1
            if self._send_errors == 1:
                log.info("RTP send to %s failed: %s", self._remote, exc)
            return
        self._packets_sent += 1
        self._octets_sent += len(payload)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events; ValueError for a bad digit or no negotiated event PT."""
        if self._dtmf_payload_type < 0:
            raise ValueError("no telephone-event payload type negotiated")
        self._dtmf_sender.queue(digits, duration_ms)

    # --- RTCP --------------------------------------------------------------------------

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
        """SR if we sent RTP since the last report, else RR; then SDES CNAME."""
        block = None
        if self._remote_ssrc is not None and self._reception.received:
            fraction, cumulative = self._reception.interval_report()
            dlsr = 0
            if self._last_sr_middle and self._loop is not None:
                dlsr = int((self._loop.time() - self._last_sr_arrival) * 65536)
            block = rtcp.ReportBlock(
                ssrc=self._remote_ssrc,
                fraction_lost=fraction,
                cumulative_lost=cumulative,
                highest_sequence=self._reception.extended_max_seq,
                jitter=int(self._reception.jitter),
                lsr=self._last_sr_middle,
                dlsr=dlsr,
            )
        if self._packets_sent != self._sent_at_last_report:
            self._sent_at_last_report = self._packets_sent
            report = rtcp.build_sr(
                self._ssrc,
                rtcp.ntp_from_unix(time.time()),
                self._timestamp,
                self._packets_sent,
                self._octets_sent,
                block,
            )
        else:
            report = rtcp.build_rr(self._ssrc, block)
        return report + rtcp.build_sdes(self._ssrc, self._cname)

    def _send_rtcp(self, data: bytes) -> None:
        if self._rtcp is None or self._remote_rtcp is None:
            return
        try:
            self._rtcp.sendto(data, self._remote_rtcp)
        except (OSError, ValueError) as exc:
            log.debug("RTCP send to %s failed: %s", self._remote_rtcp, exc)

    def _on_rtcp(self, data: bytes, addr: Any) -> None:
        try:
            packets = rtcp.parse_rtcp(data)
            assert self._loop is not None
            # RTCP follows the RTP source's host only: a stray sender cannot redirect reports.
            source = self._source
            if not self._rtcp_latched and packets and source is not None and addr[0] == source[0]:
                self._rtcp_latched = True
                self._remote_rtcp = (addr[0], addr[1])
            for packet in packets:
                if isinstance(packet, rtcp.SenderReport):
                    self._last_sr_middle = packet.ntp_middle
                    self._last_sr_arrival = self._loop.time()
                    self._take_rtt(packet.reports)
                elif isinstance(packet, rtcp.ReceiverReport):
                    self._take_rtt(packet.reports)
                elif isinstance(packet, rtcp.Goodbye):
                    self.remote_bye = True
        except Exception as exc:
            self._invalid += 1
            log.debug("dropped RTCP packet from %s: %r", addr, exc)

    def _take_rtt(self, blocks: tuple[rtcp.ReportBlock, ...]) -> None:
        for block in blocks:
            if block.ssrc == self._ssrc:
                rtt = rtcp.round_trip_time(time.time(), block.lsr, block.dlsr)
                if rtt is not None:
                    self._rtt = rtt

    # --- figures and teardown ----------------------------------------------------------

    @property
    def ssrc(self) -> int:
        return self._ssrc

    @property
    def remote(self) -> Address | None:
        """Where RTP is sent (after any latching)."""
        return self._remote

    @property
    def codec(self) -> Codec | None:
        return self._codec

    @property
    def stats(self) -> RtpStats:
        reception = self._reception
        received = reception.received
        rtt_ms = self._rtt * 1000.0 if self._rtt is not None else None
        mos = None
        if received and self._codec is not None:
            mos = round(
                mos_score(
                    reception.loss_fraction, reception.jitter_ms, rtt_ms or 0.0, self._codec.name
                ),
                2,
            )
        jitter = self._jitter
        return RtpStats(
            packets_received=received,
            packets_lost=reception.lost,
            jitter_ms=round(reception.jitter_ms, 2),
            packets_sent=self._packets_sent,
            octets_sent=self._octets_sent,
            mos=mos,
            rtt_ms=rtt_ms,
            late=jitter.late,
            invalid=self._invalid,
            duplicates=jitter.duplicate,
            overflow=jitter.overflow,
            concealed=self._concealed,
            unknown_payload_type=self._unknown_pt,
            foreign_source=self._foreign,
            latches=self._latches,
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
            if self._remote_rtcp is not None and self._rtcp is not None:
                self._send_rtcp(self._report() + rtcp.build_bye(self._ssrc))
        except Exception:
            log.debug("RTCP BYE failed", exc_info=True)
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        self._rtp = self._rtcp = None
        self._rtp_socket = None
        if self.local_port:
            self._ports.release(self.local_port)
