import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callboard.rtp import rtcp


def block(**overrides: int) -> rtcp.ReportBlock:
    fields = dict(
        ssrc=0x1111,
        fraction_lost=64,
        cumulative_lost=-3,
        highest_sequence=70000,
        jitter=123,
        lsr=0xABCD1234,
        dlsr=65536,
    )
    fields.update(overrides)
    return rtcp.ReportBlock(**fields)


def test_sender_report_round_trip() -> None:
    data = rtcp.build_sr(0x2222, (3900000000, 0x80000000), 160000, 50, 8000, block())
    assert len(data) == 52 and len(data) % 4 == 0
    (sr,) = rtcp.parse_rtcp(data)
    assert sr == rtcp.SenderReport(0x2222, 3900000000, 0x80000000, 160000, 50, 8000, (block(),))
    assert sr.ntp_middle == ((3900000000 & 0xFFFF) << 16) | 0x8000


def test_receiver_report_round_trip_with_and_without_block() -> None:
    assert rtcp.parse_rtcp(rtcp.build_rr(5, block())) == [rtcp.ReceiverReport(5, (block(),))]
    assert rtcp.parse_rtcp(rtcp.build_rr(5)) == [rtcp.ReceiverReport(5, ())]


def test_cumulative_lost_is_clamped_to_24_bits() -> None:
    (rr,) = rtcp.parse_rtcp(rtcp.build_rr(5, block(cumulative_lost=10**9)))
    assert isinstance(rr, rtcp.ReceiverReport)
    assert rr.reports[0].cumulative_lost == 0x7FFFFF


@pytest.mark.parametrize("cname", ["a", "user@host", "x" * 30])
def test_sdes_cname(cname: str) -> None:
    data = rtcp.build_sdes(0x33, cname)
    assert len(data) % 4 == 0
    (sdes,) = rtcp.parse_rtcp(data)
    assert isinstance(sdes, rtcp.SourceDescription)
    assert sdes.cname(0x33) == cname
    assert sdes.cname(0x34) is None


def test_bye_with_and_without_reason() -> None:
    assert rtcp.parse_rtcp(rtcp.build_bye(7)) == [rtcp.Goodbye((7,), "")]
    data = rtcp.build_bye(7, "hung up")
    assert len(data) % 4 == 0
    assert rtcp.parse_rtcp(data) == [rtcp.Goodbye((7,), "hung up")]


def test_compound_packet_and_unknown_types_are_skipped() -> None:
    app = struct.pack("!BBHI4s", 0x80, rtcp.APP, 2, 9, b"test")
    xr = struct.pack("!BBHI", 0x80, 207, 1, 9)
    data = rtcp.build_sr(1, (1, 2), 3, 4, 5) + rtcp.build_sdes(1, "c") + app + xr
    data += rtcp.build_bye(1)
    kinds = [type(p) for p in rtcp.parse_rtcp(data)]
    assert kinds == [rtcp.SenderReport, rtcp.SourceDescription, rtcp.Goodbye]


def test_padding_in_last_packet() -> None:
    body = struct.pack("!I", 5) + b"\x00\x00\x00\x04"  # 4 bytes of padding
    data = struct.pack("!BBH", 0xA0, rtcp.RR, 2) + body
    assert rtcp.parse_rtcp(data) == [rtcp.ReceiverReport(5, ())]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc8",
        b"\x40\xc9\x00\x01\x00\x00\x00\x05",  # version 1
        b"\x80\xc9\x00\x05\x00\x00\x00\x05",  # length beyond datagram
        b"\x81\xc9\x00\x01\x00\x00\x00\x05",  # one report block announced, none present
        b"\x80\xc8\x00\x01\x00\x00\x00\x05",  # SR without sender info
        b"\x81\xca\x00\x01\x00\x00\x00\x05",  # SDES chunk without items
        b"\x81\xcb\x00\x00",  # BYE without SSRC
        b"\xa0\xc9\x00\x01\x00\x00\x00\x00",  # padding count 0
    ],
)
def test_malformed_rtcp_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        rtcp.parse_rtcp(data)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        rtcp.parse_rtcp(data)


def test_ntp_conversion() -> None:
    seconds, fraction = rtcp.ntp_from_unix(1_700_000_000.25)
    assert seconds == 1_700_000_000 + rtcp.NTP_UNIX_OFFSET
    assert fraction == 1 << 30
    assert rtcp.ntp_middle32(1_700_000_000.25) == ((seconds & 0xFFFF) << 16) | 0x4000


def test_round_trip_time_from_lsr_and_dlsr() -> None:
    sent = 1_700_000_000.0  # our SR leaves at t
    lsr = rtcp.ntp_middle32(sent)
    dlsr = int(0.5 * 65536)  # far end held it 500 ms
    rtt = rtcp.round_trip_time(sent + 0.58, lsr, dlsr)  # its report is back at t + 580 ms
    assert rtt == pytest.approx(0.08, abs=0.001)
    assert rtcp.round_trip_time(sent + 0.58, 0, dlsr) is None
    assert rtcp.round_trip_time(sent + 0.1, lsr, dlsr) is None  # would be negative
