import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callboard.rtp.packet import RtpPacket, build_rtp, parse_rtp, payload_bounds


def test_plain_packet_round_trip() -> None:
    packet = RtpPacket(0, 65535, 0xFFFFFFFF, 0x12345678, b"\xff" * 160, marker=True)
    data = packet.serialize()
    assert len(data) == 172
    assert data[:2] == b"\x80\x80"
    assert parse_rtp(data) == packet


def test_build_rtp_matches_serialize() -> None:
    assert build_rtp(8, 7, 1234, 99, b"abc", False) == RtpPacket(8, 7, 1234, 99, b"abc").serialize()
    assert build_rtp(8, 65536 + 7, 2**32 + 5, 99, b"", True)[2:8] == struct.pack("!HI", 7, 5)


def test_header_fields() -> None:
    data = bytes([0x80, 0x80 | 101]) + struct.pack("!HII", 513, 70000, 0xDEADBEEF) + b"xy"
    packet = parse_rtp(data)
    assert (packet.payload_type, packet.marker, packet.sequence) == (101, True, 513)
    assert (packet.timestamp, packet.ssrc, packet.payload) == (70000, 0xDEADBEEF, b"xy")


def test_csrc_extension_and_padding() -> None:
    packet = RtpPacket(
        96,
        1,
        2,
        3,
        b"payload",
        csrcs=(10, 11),
        extension_profile=0xBEDE,
        extension=b"\x10\xaa\x00\x00",
        padding=3,
    )
    data = packet.serialize()
    assert data[0] == 0x80 | 0x20 | 0x10 | 2
    assert payload_bounds(data) == (12 + 8 + 4 + 4, len(data) - 3)
    assert parse_rtp(data) == packet


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00\x00",
        bytes(11),
        b"\x40" + bytes(11),  # version 1
        b"\x8f" + bytes(11),  # 15 CSRCs announced, none present
        b"\x90" + bytes(11) + b"\x00\x00",  # truncated extension header
        b"\x90" + bytes(11) + b"\x00\x00\x00\x05",  # extension longer than the packet
        b"\xa0" + bytes(11) + b"\x00",  # padding count 0
        b"\xa0" + bytes(11) + b"\x20",  # padding longer than the packet
    ],
)
def test_malformed_packets_raise_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        parse_rtp(data)


def test_serialize_validates() -> None:
    with pytest.raises(ValueError):
        RtpPacket(128, 0, 0, 0).serialize()
    with pytest.raises(ValueError):
        RtpPacket(0, 0, 0, 0, extension_profile=1, extension=b"abc").serialize()


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_value_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except ValueError:
        return
    assert 0 <= packet.payload_type <= 127


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=64),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none() | st.binary(max_size=12).map(lambda b: b + bytes(-len(b) % 4)),
    padding=st.integers(0, 255),
)
def test_round_trip_property(
    pt: int,
    seq: int,
    ts: int,
    ssrc: int,
    payload: bytes,
    marker: bool,
    csrcs: tuple[int, ...],
    extension: bytes | None,
    padding: int,
) -> None:
    packet = RtpPacket(
        pt,
        seq,
        ts,
        ssrc,
        payload,
        marker,
        csrcs,
        extension_profile=None if extension is None else 0x1000,
        extension=extension or b"",
        padding=padding,
    )
    assert parse_rtp(packet.serialize()) == packet
