"""RtpSender on its own: frames in, packets out, no sockets."""

import itertools

import numpy as np

from callboard.media.codecs import create_codec
from callboard.media.g711 import ulaw_encode
from callboard.rtp.dtmf import decode_event, digit_to_event
from callboard.rtp.packet import RtpPacket, parse_rtp
from callboard.rtp.sender import RtpSender

DTMF_PT = 101


def make_sender(codec: str = "PCMU", payload_type: int = 0) -> RtpSender:
    sender = RtpSender()
    sender.set_codec(create_codec(codec))
    sender.payload_type = payload_type
    sender.dtmf_payload_type = DTMF_PT
    sender.connected = True
    return sender


def frames(count: int, rate: int = 8000) -> list[np.ndarray]:
    size = rate // 50
    t = np.arange(size * count) / rate
    signal = np.rint(6000 * np.sin(2 * np.pi * 400 * t)).astype(np.int16)
    return [signal[i * size : (i + 1) * size] for i in range(count)]


def sent(packet: bytes | None) -> RtpPacket:
    assert packet is not None
    return parse_rtp(packet)


def test_packets_number_and_time_the_stream() -> None:
    sender = make_sender()
    seq0, ts0 = sender.seq, sender.timestamp
    pcm = frames(5)
    packets = [sent(sender.frame_packet(f)) for f in pcm]
    assert [p.sequence for p in packets] == [(seq0 + i) & 0xFFFF for i in range(5)]
    assert [p.timestamp for p in packets] == [(ts0 + 160 * i) & 0xFFFFFFFF for i in range(5)]
    assert [p.marker for p in packets] == [True, False, False, False, False]
    assert {p.ssrc for p in packets} == {sender.ssrc}
    assert [p.payload for p in packets] == [ulaw_encode(f) for f in pcm]
    assert sender.packets_sent == 5 and sender.octets_sent == 5 * 160


def test_before_there_is_a_far_end_ticks_only_move_the_clock() -> None:
    sender = make_sender()
    sender.connected = False
    seq0, ts0 = sender.seq, sender.timestamp
    assert all(sender.encoded_packet(bytes(160)) is None for _ in range(3))
    assert sender.seq == seq0 and sender.packets_sent == 0
    sender.connected = True
    first = sent(sender.encoded_packet(bytes(160)))
    assert first.sequence == seq0 and first.marker
    assert first.timestamp == (ts0 + 3 * 160) & 0xFFFFFFFF


def test_dtmf_goes_out_as_events_with_end_packets_in_place_of_audio() -> None:
    sender = make_sender("opus", 111)  # a 48 kHz RTP clock: 960 per 20 ms
    ts0 = sender.timestamp
    pcm = frames(6, 48000)
    packets = [sent(sender.frame_packet(pcm[0]))]
    sender.queue_dtmf("#", duration_ms=40)
    packets += [sent(sender.frame_packet(f)) for f in pcm[1:]]
    assert [p.payload_type for p in packets] == [111] + [DTMF_PT] * 4 + [111]
    seqs = [p.sequence for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    events = packets[1:5]
    assert {p.timestamp for p in events} == {(ts0 + 960) & 0xFFFFFFFF}  # the digit's start
    assert [p.marker for p in events] == [True, False, False, False]
    decoded = [decode_event(p.payload) for p in events]
    assert {e.event for e in decoded} == {digit_to_event("#")}
    assert [(e.end, e.duration) for e in decoded] == [(False, 960)] + [(True, 1920)] * 3
    # Audio resumes with the clock that ran on under the event, as the same talk spurt.
    assert packets[5].timestamp == (ts0 + 5 * 960) & 0xFFFFFFFF
    assert not packets[5].marker


def test_a_new_codec_changes_the_step_and_marks_the_next_packet() -> None:
    sender = make_sender()
    sender.encoded_packet(bytes(160))
    ts = sender.timestamp
    sender.set_codec(create_codec("G722"))
    sender.payload_type = 9
    packets = [sent(sender.frame_packet(f)) for f in frames(2, 16000)]
    assert [p.marker for p in packets] == [True, False]
    assert [p.timestamp for p in packets] == [ts, (ts + 160) & 0xFFFFFFFF]  # 8 kHz clock


def test_a_refused_packet_is_not_counted_but_keeps_its_number() -> None:
    sender = make_sender()
    seq0 = sender.seq
    packet = sender.encoded_packet(bytes(160))
    assert packet is not None
    sender.not_sent(packet)
    assert sender.packets_sent == 0 and sender.octets_sent == 0
    assert sent(sender.encoded_packet(bytes(160))).sequence == (seq0 + 1) & 0xFFFF
