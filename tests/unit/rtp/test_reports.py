"""RtcpReporter on its own: compound reports from sender/receiver figures, RTT, BYE."""

from callboard.media.codecs import create_codec
from callboard.rtp import rtcp
from callboard.rtp.packet import build_rtp
from callboard.rtp.receiver import RtpReceiver
from callboard.rtp.reports import RtcpReporter
from callboard.rtp.sender import RtpSender

FAR = ("192.0.2.10", 4000)
WALL = 1_700_000_000.25  # Unix time


def parts() -> tuple[RtpSender, RtpReceiver, RtcpReporter]:
    codec = create_codec("PCMU")
    sender, receiver = RtpSender(), RtpReceiver()
    for side in (sender, receiver):
        side.set_codec(codec)
        side.payload_type = 0
    receiver.set_remote(FAR, None)
    sender.connected = True
    return sender, receiver, RtcpReporter(sender.ssrc)


def test_sr_only_after_sending_and_a_block_about_what_came_in() -> None:
    sender, receiver, reporter = parts()
    first = rtcp.parse_rtcp(reporter.report(sender, receiver, 1.0, WALL))
    assert first[0] == rtcp.ReceiverReport(sender.ssrc)  # nothing sent or received
    assert isinstance(first[1], rtcp.SourceDescription)
    assert first[1].cname(sender.ssrc) == reporter.cname
    for seq in (10, 11, 13):  # 12 is lost
        receiver.receive(build_rtp(0, seq, seq * 160, 55, bytes(160), False), FAR, seq * 0.02)
    sender.encoded_packet(bytes(160))
    sr = rtcp.parse_rtcp(reporter.report(sender, receiver, 2.0, WALL))[0]
    assert isinstance(sr, rtcp.SenderReport)
    assert (sr.packet_count, sr.octet_count) == (1, 160)
    assert sr.rtp_timestamp == sender.timestamp
    assert (sr.ntp_seconds, sr.ntp_fraction) == rtcp.ntp_from_unix(WALL)
    (block,) = sr.reports
    assert (block.ssrc, block.highest_sequence, block.cumulative_lost) == (55, 13, 1)
    assert block.fraction_lost == 64  # 1 of 4
    again = rtcp.parse_rtcp(reporter.report(sender, receiver, 3.0, WALL))[0]
    assert isinstance(again, rtcp.ReceiverReport)  # nothing sent since
    assert again.reports[0].fraction_lost == 0


def test_lsr_dlsr_echo_the_far_ends_sr_and_its_blocks_give_the_rtt() -> None:
    sender, receiver, reporter = parts()
    receiver.receive(build_rtp(0, 1, 160, 55, bytes(160), False), FAR, 0.0)
    far_sr = rtcp.SenderReport(55, 3_900_000_000 + 0x1234, 0x56780000, 0, 0, 0)
    reporter.take([far_sr], 10.0, WALL)
    rr = rtcp.parse_rtcp(reporter.report(sender, receiver, 10.5, WALL))[0]
    assert isinstance(rr, rtcp.ReceiverReport)
    (block,) = rr.reports
    assert block.lsr == far_sr.ntp_middle
    assert block.dlsr == 32768  # half a second, in 1/65536 s
    # The far end's report about us: our SR left 0.1 s ago and it held it 0.02 s.
    lsr = rtcp.ntp_middle32(WALL - 0.1)
    about_us = rtcp.ReportBlock(sender.ssrc, 0, 0, 0, 0, lsr, int(0.02 * 65536))
    about_others = rtcp.ReportBlock(12345, 0, 0, 0, 0, lsr, 0)
    reporter.take([rtcp.ReceiverReport(55, (about_others, about_us))], 11.0, WALL)
    assert reporter.rtt is not None and abs(reporter.rtt - 0.08) < 0.001
    assert not reporter.remote_bye
    reporter.take([rtcp.Goodbye((55,))], 12.0, WALL)
    assert reporter.remote_bye
