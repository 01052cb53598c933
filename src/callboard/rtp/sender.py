"""The sending half of an RTP session, without sockets or clocks.

Keeps the outgoing stream's SSRC, sequence numbers and timestamps (which run on while on
hold, one frame per media tick), sets the marker bit at each start of talk, and puts an
RFC 4733 event packet in place of the audio while a DTMF digit is being sent. It returns
packets; the caller sends them.
"""

from __future__ import annotations

import random

import numpy as np

from callboard.media.codecs import Codec
from callboard.rtp.dtmf import DtmfSender
from callboard.rtp.packet import HEADER_SIZE, build_rtp


class RtpSender:
    def __init__(self) -> None:
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)  # of the next packet
        self.timestamp = random.getrandbits(32)  # of the next frame
        self.payload_type = -1
        self.dtmf_payload_type = -1
        # Set by the owner while there is somewhere to send to (a socket and a far end)
        # and a codec; until then ticks only move the clock on.
        self.connected = False
        self.sending = True
        self._codec: Codec | None = None
        self._timestamp_step = 160
        self._marker_next = True
        self._dtmf = DtmfSender()
        # Counted when a packet is built; the owner takes back any the socket refuses.
        self.packets_sent = 0
        self.octets_sent = 0

    def set_codec(self, codec: Codec) -> None:
        self._codec = codec
        self._timestamp_step = codec.timestamp_step(20)
        self._dtmf = DtmfSender(clock_rate=codec.rtp_clock_rate)  # queued digits go
        self._marker_next = True

    def set_sending(self, sending: bool) -> None:
        if sending and not self.sending:
            self._marker_next = True  # talk resumes after a hold
        self.sending = sending

    def queue_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue RFC 4733 events; ValueError for a bad digit or no negotiated event PT."""
        if self.dtmf_payload_type < 0:
            raise ValueError("no telephone-event payload type negotiated")
        self._dtmf.queue(digits, duration_ms)

    # --- the media tick ----------------------------------------------------------------

    def frame_packet(self, pcm: np.ndarray) -> bytes | None:
        """This tick's packet for one 20 ms frame (int16 at the codec's sample rate): the
        frame, encoded only if it goes out, or the DTMF event due instead; None if nothing
        goes out."""
        due = self._tick()
        if isinstance(due, int):
            assert self._codec is not None
            return self._audio_packet(due, self._codec.encode(pcm))
        return due

    def encoded_packet(self, payload: bytes) -> bytes | None:
        """frame_packet for a frame already encoded with the codec."""
        due = self._tick()
        if isinstance(due, int):
            return self._audio_packet(due, payload)
        return due

    def _tick(self) -> int | bytes | None:
        """Move the clock on by one frame. Returns the frame's timestamp if audio goes out
        now, a DTMF event packet if that goes out instead, else None."""
        timestamp = self.timestamp
        self.timestamp = (timestamp + self._timestamp_step) & 0xFFFFFFFF
        if not self.connected:
            return None
        if not self.sending:
            self._marker_next = True
            return None
        if self._dtmf.busy:
            event = self._dtmf.next_packet(timestamp)
            if event is not None:
                return self._packet(
                    self.dtmf_payload_type, event.timestamp, event.payload, event.marker
                )
        return timestamp

    def _audio_packet(self, timestamp: int, payload: bytes) -> bytes:
        marker = self._marker_next
        self._marker_next = False
        return self._packet(self.payload_type, timestamp, payload, marker)

    def _packet(self, payload_type: int, timestamp: int, payload: bytes, marker: bool) -> bytes:
        packet = build_rtp(payload_type, self.seq, timestamp, self.ssrc, payload, marker)
        self.seq = (self.seq + 1) & 0xFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return packet

    def not_sent(self, packet: bytes) -> None:
        """The socket refused `packet` (it keeps its sequence number, which is lost)."""
        self.packets_sent -= 1
        self.octets_sent -= len(packet) - HEADER_SIZE  # build_rtp writes no CSRCs or extensions
