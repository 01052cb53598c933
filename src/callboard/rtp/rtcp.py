"""RTCP (RFC 3550 section 6): sender/receiver reports, SDES CNAME, BYE.

Builders return wire bytes; `parse_rtcp` splits a compound packet into typed reports and
skips packet types it does not know. Times on the wire are NTP: 32.32 fixed point seconds
since 1900; LSR/DLSR use the middle 32 bits (16.16).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
SDES_CNAME = 1
NTP_UNIX_OFFSET = 2_208_988_800

_COMMON = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IIIIII")  # sender SSRC, NTP sec, NTP frac, RTP ts, packets, octets
_BLOCK = struct.Struct("!IIIIII")  # SSRC, fraction+cumulative, highest seq, jitter, LSR, DLSR


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int  # the source this block reports on
    fraction_lost: int  # 0..255, lost fraction since the previous report * 256
    cumulative_lost: int  # signed 24 bit
    highest_sequence: int  # extended highest sequence number received
    jitter: int  # interarrival jitter, timestamp units
    lsr: int  # middle 32 bits of the NTP time of the last SR from that source, or 0
    dlsr: int  # delay since that SR, 1/65536 s

    def pack(self) -> bytes:
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            ((self.fraction_lost & 0xFF) << 24) | lost,
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.lsr & 0xFFFFFFFF,
            self.dlsr & 0xFFFFFFFF,
        )


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_seconds: int
    ntp_fraction: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    @property
    def ntp_middle(self) -> int:
        return ((self.ntp_seconds & 0xFFFF) << 16) | (self.ntp_fraction >> 16)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceDescription:
    chunks: dict[int, dict[int, bytes]] = field(default_factory=dict)  # SSRC -> item -> value

    def cname(self, ssrc: int) -> str | None:
        value = self.chunks.get(ssrc, {}).get(SDES_CNAME)
        return value.decode("utf-8", "replace") if value is not None else None


@dataclass(frozen=True, slots=True)
class Goodbye:
    ssrcs: tuple[int, ...]
    reason: str = ""


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye


def ntp_from_unix(unix_time: float) -> tuple[int, int]:
    """(seconds, fraction) of an NTP timestamp."""
    seconds = int(unix_time) + NTP_UNIX_OFFSET
    fraction = int((unix_time % 1.0) * 4294967296.0) & 0xFFFFFFFF
    return seconds & 0xFFFFFFFF, fraction


def ntp_middle32(unix_time: float) -> int:
    """The middle 32 bits of the NTP timestamp (the LSR format)."""
    seconds, fraction = ntp_from_unix(unix_time)
    return ((seconds & 0xFFFF) << 16) | (fraction >> 16)


def round_trip_time(arrival_unix: float, lsr: int, dlsr: int) -> float | None:
    """RTT in seconds from a report block (RFC 3550 6.4.1); None without a prior SR."""
    if lsr == 0:
        return None
    rtt = (ntp_middle32(arrival_unix) - lsr - dlsr) & 0xFFFFFFFF
    if rtt > 0x7FFFFFFF:  # negative: clocks or fields are inconsistent
        return None
    return rtt / 65536.0


def _header(packet_type: int, count: int, body_length: int) -> bytes:
    return _COMMON.pack(0x80 | count, packet_type, (body_length + 4) // 4 - 1)


def build_sr(
    ssrc: int,
    ntp: tuple[int, int],
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    report: ReportBlock | None = None,
) -> bytes:
    body = _SR_INFO.pack(
        ssrc,
        ntp[0],
        ntp[1],
        rtp_timestamp & 0xFFFFFFFF,
        packet_count & 0xFFFFFFFF,
        octet_count & 0xFFFFFFFF,
    )
    if report is not None:
        body += report.pack()
    return _header(SR, 1 if report else 0, len(body)) + body


def build_rr(ssrc: int, report: ReportBlock | None = None) -> bytes:
    body = struct.pack("!I", ssrc) + (report.pack() if report is not None else b"")
    return _header(RR, 1 if report else 0, len(body)) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, SDES_CNAME, len(text)) + text + b"\x00"
    chunk += bytes(-len(chunk) % 4)  # the null item plus padding to a 32-bit boundary
    return _header(SDES, 1, len(chunk)) + chunk


def build_bye(ssrc: int, reason: str = "") -> bytes:
    body = struct.pack("!I", ssrc)
    if reason:
        text = reason.encode()[:255]
        body += bytes([len(text)]) + text
        body += bytes(-len(body) % 4)
    return _header(BYE, 1, len(body)) + body


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Split a compound RTCP packet; ValueError if any part is malformed."""
    packets: list[RtcpPacket] = []
    offset = 0
    size = len(data)
    if size < 4:
        raise ValueError("RTCP packet too short")
    while offset < size:
        if size - offset < 4:
            raise ValueError("truncated RTCP header")
        first, packet_type, words = _COMMON.unpack_from(data, offset)
        if first >> 6 != 2:
            raise ValueError(f"RTCP version {first >> 6}")
        end = offset + 4 * (words + 1)
        if end > size:
            raise ValueError("RTCP length field exceeds the datagram")
        body_end = end
        if first & 0x20:
            pad = data[end - 1]
            if pad == 0 or pad > end - offset - 4:
                raise ValueError("bad RTCP padding")
            body_end -= pad
        count = first & 0x1F
        body = data[offset + 4 : body_end]
        if packet_type == SR:
            packets.append(_parse_sr(body, count))
        elif packet_type == RR:
            packets.append(_parse_rr(body, count))
        elif packet_type == SDES:
            packets.append(_parse_sdes(body, count))
        elif packet_type == BYE:
            packets.append(_parse_bye(body, count))
        offset = end
    return packets


def _parse_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if len(body) < offset + count * _BLOCK.size:
        raise ValueError("truncated RTCP report blocks")
    blocks = []
    for i in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(
            body, offset + i * _BLOCK.size
        )
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        blocks.append(ReportBlock(ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _parse_sr(body: bytes, count: int) -> SenderReport:
    if len(body) < _SR_INFO.size:
        raise ValueError("truncated RTCP SR")
    ssrc, seconds, fraction, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
    blocks = _parse_blocks(body, _SR_INFO.size, count)
    return SenderReport(ssrc, seconds, fraction, rtp_ts, packets, octets, blocks)


def _parse_rr(body: bytes, count: int) -> ReceiverReport:
    if len(body) < 4:
        raise ValueError("truncated RTCP RR")
    (ssrc,) = struct.unpack_from("!I", body)
    return ReceiverReport(ssrc, _parse_blocks(body, 4, count))


def _parse_sdes(body: bytes, count: int) -> SourceDescription:
    chunks: dict[int, dict[int, bytes]] = {}
    offset = 0
    for _ in range(count):
        if len(body) < offset + 4:
            raise ValueError("truncated SDES chunk")
        (ssrc,) = struct.unpack_from("!I", body, offset)
        offset += 4
        items: dict[int, bytes] = {}
        while True:
            if offset >= len(body):
                raise ValueError("SDES chunk without terminating null item")
            item_type = body[offset]
            if item_type == 0:
                offset += 1
                offset += -offset % 4  # chunks end on a 32-bit boundary
                break
            if offset + 2 > len(body):
                raise ValueError("truncated SDES item")
            length = body[offset + 1]
            if offset + 2 + length > len(body):
                raise ValueError("SDES item longer than its packet")
            items[item_type] = body[offset + 2 : offset + 2 + length]
            offset += 2 + length
        chunks[ssrc] = items
    return SourceDescription(chunks)


def _parse_bye(body: bytes, count: int) -> Goodbye:
    if len(body) < 4 * count:
        raise ValueError("truncated RTCP BYE")
    ssrcs = struct.unpack_from(f"!{count}I", body) if count else ()
    reason = ""
    offset = 4 * count
    if offset < len(body):
        length = body[offset]
        if offset + 1 + length > len(body):
            raise ValueError("BYE reason longer than its packet")
        reason = body[offset + 1 : offset + 1 + length].decode("utf-8", "replace")
    return Goodbye(tuple(ssrcs), reason)
