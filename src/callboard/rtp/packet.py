"""RTP packets (RFC 3550 section 5.1): parse and serialise.

`parse_rtp` builds an RtpPacket for tests, tools and unusual packets; the per-packet
receive path uses `HEADER.unpack_from` and `payload_bounds` directly to avoid building an
object per packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
HEADER_SIZE = HEADER.size
_PLAIN_V2 = 0x80  # version 2, no padding, no extension, no CSRC


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None  # set when a header extension is present
    extension: bytes = b""  # extension data, a multiple of 4 bytes
    padding: int = 0  # padding bytes to append when serialising (0 = none)

    def serialize(self) -> bytes:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type out of range: {self.payload_type}")
        if len(self.csrcs) > 15:
            raise ValueError("at most 15 CSRCs")
        first = _PLAIN_V2 | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension_profile is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            HEADER.pack(
                first, second, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc
            )
        ]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension_profile is not None:
            if len(self.extension) % 4:
                raise ValueError("extension length must be a multiple of 4")
            parts.append(struct.pack("!HH", self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding:
            if not 1 <= self.padding <= 255:
                raise ValueError("padding must be 1..255 bytes")
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def build_rtp(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool
) -> bytes:
    """A plain 12-byte-header packet, the only kind the sender produces."""
    return (
        HEADER.pack(
            _PLAIN_V2,
            (0x80 if marker else 0) | payload_type,
            sequence & 0xFFFF,
            timestamp & 0xFFFFFFFF,
            ssrc,
        )
        + payload
    )


def payload_bounds(data: bytes) -> tuple[int, int]:
    """(start, end) of the payload, skipping CSRCs, header extension and padding."""
    size = len(data)
    if size < HEADER_SIZE:
        raise ValueError("RTP packet shorter than its header")
    first = data[0]
    if first >> 6 != RTP_VERSION:
        raise ValueError(f"RTP version {first >> 6}")
    start = HEADER_SIZE + 4 * (first & 0x0F)
    if first & 0x10:
        if size < start + 4:
            raise ValueError("truncated RTP header extension")
        words = (data[start + 2] << 8) | data[start + 3]
        start += 4 + 4 * words
    end = size
    if first & 0x20:
        pad = data[-1]
        if pad == 0:
            raise ValueError("RTP padding count of zero")
        end -= pad
    if start > end:
        raise ValueError("RTP header or padding longer than the packet")
    return start, end


def parse_rtp(data: bytes) -> RtpPacket:
    """Parse one RTP packet; ValueError if it is malformed."""
    start, end = payload_bounds(data)
    first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
    if first == _PLAIN_V2:
        return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, data[12:], bool(second & 0x80))
    count = first & 0x0F
    csrcs = struct.unpack_from(f"!{count}I", data, HEADER_SIZE) if count else ()
    profile = None
    extension = b""
    if first & 0x10:
        offset = HEADER_SIZE + 4 * count
        profile, words = struct.unpack_from("!HH", data, offset)
        extension = data[offset + 4 : offset + 4 + 4 * words]
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=data[start:end],
        marker=bool(second & 0x80),
        csrcs=tuple(csrcs),
        extension_profile=profile,
        extension=extension,
        padding=len(data) - end,
    )
