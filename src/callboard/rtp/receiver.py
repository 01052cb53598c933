"""The receiving half of an RTP session, without sockets or clocks.

Takes datagrams from the RTP port (with their arrival time), decides whether their source
is the far end (symmetric RTP latching), queues audio in the jitter buffer and reports
DTMF events; on the media tick it decodes, conceals losses and cuts 20 ms frames. It also
keeps where the far end is, as signalled and as learnt from where its packets come from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from callboard.media.codecs import Codec
from callboard.media.g711 import G711Law
from callboard.media.jitter import MISSING, JitterBuffer, PopResult
from callboard.rtp.dtmf import DtmfReceiver
from callboard.rtp.packet import HEADER, payload_bounds
from callboard.rtp.stats import ReceptionStats

log = logging.getLogger(__name__)

Address = tuple[str, int]

# Consecutive packets from an unsignalled address before media follows it (RFC 4961 latching).
LATCH_AFTER_PACKETS = 3
STALL_FRAMES = 3  # consecutive missing frames after which we play silence, not PLC
RTCP_MUX_TYPES = range(72, 77)  # RTCP packet types 200-204 seen as RTP payload types


class RtpReceiver:
    def __init__(self) -> None:
        self.on_dtmf: Callable[[str], None] | None = None
        self.last_rtp_time: float | None = None  # arrival of the last accepted packet
        self.receiving = True
        self.payload_type = -1
        self.dtmf_payload_type = -1
        # The far end: where it said it is, and where media and reports go (after latching).
        self.remote: Address | None = None
        self.remote_rtcp: Address | None = None
        self.source: Any = None  # the far end's address once its first packet came in
        self._signalled: Address | None = None
        self._candidate: Address | None = None  # an unsignalled source we may latch onto
        self._candidate_packets = 0
        self._rtcp_latched = False
        # The stream.
        self._codec: Codec | None = None
        self.law: G711Law | None = None
        self._frame_samples = 0  # 20 ms at the codec's sample rate
        self._silence = np.zeros(0, dtype=np.int16)
        self.remote_ssrc: int | None = None
        self.jitter_buffer = JitterBuffer()
        self.reception = ReceptionStats(8000)
        self._dtmf = DtmfReceiver()
        self._pending: np.ndarray | None = None  # decoded audio beyond the last frame
        self._missing_run = 0
        # Counters.
        self.invalid = 0
        self.unknown_payload_type = 0
        self.foreign_source = 0
        self.latches = 0
        self.concealed = 0
        # The packet this tick's frame came from whole (see read), and the last decoded one.
        self.last_payload: bytes | None = None
        self._decoded_from: bytes | None = None

    # --- set-up ------------------------------------------------------------------------

    def set_codec(self, codec: Codec) -> None:
        """Decode with `codec` from now on; what is buffered for the old one is dropped."""
        self._codec = codec
        self.law = codec.law
        # Latency is given back by dropping a frame in a pause where the codec lets us tell.
        self.jitter_buffer.is_quiet = codec.law.is_quiet if codec.law is not None else None
        self._frame_samples = codec.sample_rate // 50
        self._silence = np.zeros(self._frame_samples, dtype=np.int16)
        self._silence.flags.writeable = False
        self.jitter_buffer.set_clock_rate(codec.rtp_clock_rate)
        self.jitter_buffer.resync()
        if codec.rtp_clock_rate != self.reception.clock_rate:
            self.reception.change_clock_rate(codec.rtp_clock_rate)
        self._pending = None

    def codec_rate_changed(self) -> None:
        """The codec now decodes at another rate (Codec.set_rate): frames change size; the
        packets buffered stay, the audio decoded at the old rate goes."""
        assert self._codec is not None
        self._frame_samples = self._codec.sample_rate // 50
        self._silence = np.zeros(self._frame_samples, dtype=np.int16)
        self._silence.flags.writeable = False
        self._pending = None

    def set_remote(self, remote: Address, remote_rtcp: Address | None) -> None:
        """The far end's addresses from SDP. A new one may be latched away from again."""
        remote = (remote[0], remote[1])
        if remote != self._signalled:
            self.source = None
            self._rtcp_latched = False
            self._candidate = None
            self.remote = remote
        self._signalled = remote
        if remote_rtcp is not None:
            self.remote_rtcp = (remote_rtcp[0], remote_rtcp[1])
        elif not self._rtcp_latched:
            self.remote_rtcp = (remote[0], remote[1] + 1)

    def set_receiving(self, receiving: bool) -> None:
        if not receiving and self.receiving:
            self.jitter_buffer.resync()  # resuming later must not play stale audio
            self._pending = None
        self.receiving = receiving

    # --- intake ------------------------------------------------------------------------

    def receive(self, data: bytes, addr: Any, now: float) -> bool:
        """Take one datagram that came to the RTP port at `now`. True if it is RTCP
        multiplexed onto that port (RFC 5761), for the caller to hand to RTCP."""
        try:
            if len(data) < 12:
                if len(data) >= 8 and data[1] & 0x7F in RTCP_MUX_TYPES:  # e.g. a lone BYE
                    return True
                self.invalid += 1
                return False
            first, second, seq, timestamp, ssrc = HEADER.unpack_from(data)
            payload_type = second & 0x7F
            if payload_type == self.payload_type:
                is_audio = True
            elif payload_type == self.dtmf_payload_type:
                is_audio = False
            elif payload_type in RTCP_MUX_TYPES:
                return True
            else:
                self.unknown_payload_type += 1
                self.invalid += 1
                return False
            if first == 0x80:  # the usual plain header: skip the general parse
                payload = data[12:]
            else:
                start, end = payload_bounds(data)
                payload = data[start:end]
            if addr != self.source and not self._accept_source(addr):
                return False
            self.last_rtp_time = now
            if ssrc != self.remote_ssrc:
                if self.remote_ssrc is not None:
                    self.jitter_buffer.resync()
                    self.reception.reset_source()
                self.remote_ssrc = ssrc
            self.reception.update(seq, timestamp, now, timing=is_audio)
            if is_audio:
                if self.receiving:
                    self.jitter_buffer.push(seq, timestamp, payload, now)
            else:
                digit = self._dtmf.feed(timestamp, payload)
                if digit is not None and self.on_dtmf is not None:
                    self._report_digit(self.on_dtmf, digit)
        except Exception as exc:
            # Called from a datagram callback, which must never raise: garbage is counted
            # and dropped (logged without a stack trace: a flood must not flood the log).
            self.invalid += 1
            log.debug("dropped RTP packet from %s: %r", addr, exc)
        return False

    @staticmethod
    def _report_digit(callback: Callable[[str], None], digit: str) -> None:
        try:
            callback(digit)
        except Exception:  # the listener's bug, not a bad packet
            log.exception("on_dtmf callback failed")

    def _accept_source(self, addr: Any) -> bool:
        """Symmetric RTP (RFC 4961, comedia): the first valid packet fixes the far end's
        address; if it differs from the signalled one, send there from now on."""
        if self.source is not None:
            self.foreign_source += 1
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
                self.foreign_source += 1
                return False
            self.latches += 1
            self.remote = source
            if not self._rtcp_latched:
                self.remote_rtcp = (source[0], source[1] + 1)
            log.info("RTP latched to %s:%d", source[0], source[1])
        self.source = addr
        return True

    def rtcp_arrived(self, addr: Any) -> None:
        """Valid RTCP came from `addr`: send reports there if it is the RTP source's host
        (only that host, so a stray sender cannot redirect them)."""
        source = self.source
        if not self._rtcp_latched and source is not None and addr[0] == source[0]:
            self._rtcp_latched = True
            self.remote_rtcp = (addr[0], addr[1])

    # --- playout (the media tick) ------------------------------------------------------

    def read(self, *, encoded_ok: bool, now: float | None = None) -> np.ndarray | bytes | None:
        """The next 20 ms (int16 at the codec's sample rate; exactly one frame), or None
        before any packet arrived. With encoded_ok, a G.711 payload that is exactly one
        frame comes back undecoded (bytes). `now` is on the clock `receive` was given.
        Afterwards `last_payload` is the packet this frame was decoded from, when it was
        exactly one whole frame of one packet (not concealment, not pieces of several)."""
        self.last_payload = None
        codec = self._codec
        if self.last_rtp_time is None or codec is None:
            return None
        if not self.receiving:
            return self._silence
        size = self._frame_samples
        pending = self._pending
        if pending is not None and len(pending) >= size:
            return self._take_pending(pending)
        for _ in range(8):  # short packets (e.g. 10 ms) need more than one per tick
            item = self.jitter_buffer.pop(now)
            # G.711 carries one byte per sample: this payload is exactly one frame.
            if encoded_ok and pending is None and type(item) is bytes and len(item) == size:
                self._missing_run = 0
                codec.remember(item)
                return item
            pcm = self._decoded(codec, item)
            if pcm is None:
                return self._silence
            if pending is None and len(pcm) == size:
                self.last_payload = self._decoded_from
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

    def _decoded(self, codec: Codec, item: PopResult) -> np.ndarray | None:
        """One packet's worth of audio from a jitter buffer item; None while buffering or
        stalled. `_decoded_from` is the payload when it decoded cleanly, else None."""
        self._decoded_from = None
        if item is None:
            return None
        if item is MISSING:
            self._missing_run += 1
            if self._missing_run > STALL_FRAMES:
                return None
            self.concealed += 1
            return codec.conceal()
        self._missing_run = 0
        try:
            pcm = codec.decode(item)
        except Exception:
            self.invalid += 1
            return codec.conceal()
        if len(pcm) == 0:
            return None
        self._decoded_from = item
        return pcm
