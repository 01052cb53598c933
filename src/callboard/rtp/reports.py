"""Our side of RTCP for one RTP session, without sockets or clocks (RFC 3550 section 6).

Builds the periodic compound report (SR if we sent RTP since the last one, else RR; then
SDES CNAME) from the sender's and receiver's figures, and takes in the far end's reports:
its last SR for our LSR/DLSR, report blocks about our stream for the round-trip time,
and BYE. The wire format is rtp.rtcp's.
"""

from __future__ import annotations

from callboard.rtp import rtcp
from callboard.rtp.receiver import RtpReceiver
from callboard.rtp.sender import RtpSender


class RtcpReporter:
    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.cname = f"{ssrc:08x}@callboard"
        self.rtt: float | None = None  # seconds, from the latest report about our stream
        self.remote_bye = False
        self._last_sr_middle = 0  # LSR: the middle 32 bits of the far end's last SR
        self._last_sr_arrival = 0.0  # loop time it came at, for DLSR
        self._sent_at_last_report = 0

    def report(self, sender: RtpSender, receiver: RtpReceiver, now: float, wall: float) -> bytes:
        """The compound report due now (`now` on the loop's clock, `wall` Unix time)."""
        block = None
        reception = receiver.reception
        if receiver.remote_ssrc is not None and reception.received:
            fraction, cumulative = reception.interval_report()
            dlsr = 0
            if self._last_sr_middle:
                dlsr = int((now - self._last_sr_arrival) * 65536)
            block = rtcp.ReportBlock(
                ssrc=receiver.remote_ssrc,
                fraction_lost=fraction,
                cumulative_lost=cumulative,
                highest_sequence=reception.extended_max_seq,
                jitter=int(reception.jitter),
                lsr=self._last_sr_middle,
                dlsr=dlsr,
            )
        if sender.packets_sent != self._sent_at_last_report:
            self._sent_at_last_report = sender.packets_sent
            report = rtcp.build_sr(
                self.ssrc,
                rtcp.ntp_from_unix(wall),
                sender.timestamp,
                sender.packets_sent,
                sender.octets_sent,
                block,
            )
        else:
            report = rtcp.build_rr(self.ssrc, block)
        return report + rtcp.build_sdes(self.ssrc, self.cname)

    def bye(self) -> bytes:
        return rtcp.build_bye(self.ssrc)

    def take(self, packets: list[rtcp.RtcpPacket], now: float, wall: float) -> None:
        """Packets of a compound report from the far end, parsed."""
        for packet in packets:
            if isinstance(packet, rtcp.SenderReport):
                self._last_sr_middle = packet.ntp_middle
                self._last_sr_arrival = now
                self._take_rtt(packet.reports, wall)
            elif isinstance(packet, rtcp.ReceiverReport):
                self._take_rtt(packet.reports, wall)
            elif isinstance(packet, rtcp.Goodbye):
                self.remote_bye = True

    def _take_rtt(self, blocks: tuple[rtcp.ReportBlock, ...], wall: float) -> None:
        for block in blocks:
            if block.ssrc == self.ssrc:
                rtt = rtcp.round_trip_time(wall, block.lsr, block.dlsr)
                if rtt is not None:
                    self.rtt = rtt
