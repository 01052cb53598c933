"""RtpReceiver on its own: datagrams in with their arrival time, frames out, no sockets."""

import numpy as np
import pytest

from callboard.media.codecs import create_codec
from callboard.media.g711 import ulaw_decode, ulaw_encode
from callboard.rtp import rtcp
from callboard.rtp.dtmf import encode_event
from callboard.rtp.packet import build_rtp
from callboard.rtp.receiver import LATCH_AFTER_PACKETS, STALL_FRAMES, RtpReceiver

FAR = ("192.0.2.10", 4000)  # as SDP gave it
NAT = ("198.51.100.7", 30000)  # where the far end's packets really come from
STRAY = ("203.0.113.66", 5000)
DTMF_PT = 101


def make_receiver() -> RtpReceiver:
    receiver = RtpReceiver()
    receiver.set_codec(create_codec("PCMU"))
    receiver.set_remote(FAR, None)
    receiver.payload_type = 0
    receiver.dtmf_payload_type = DTMF_PT
    return receiver


def audio(seq: int, payload: bytes, ssrc: int = 7) -> bytes:
    return build_rtp(0, seq, seq * 160, ssrc, payload, False)


def level(value: int) -> bytes:
    return ulaw_encode(np.full(160, value, dtype=np.int16))


def tone(count: int) -> list[bytes]:
    t = np.arange(160 * count) / 8000
    signal = np.rint(8000 * np.sin(2 * np.pi * 700 * t)).astype(np.int16)
    return [ulaw_encode(signal[i * 160 : (i + 1) * 160]) for i in range(count)]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def test_the_signalled_source_is_taken_and_any_other_ignored() -> None:
    receiver = make_receiver()
    assert receiver.read(encoded_ok=False) is None  # nothing yet
    receiver.receive(audio(0, level(1000)), FAR, 12.5)
    assert receiver.last_rtp_time == 12.5
    for seq in range(1, 1 + LATCH_AFTER_PACKETS + 2):
        receiver.receive(audio(seq, level(-1000), ssrc=99), STRAY, 13.0)
    assert receiver.last_rtp_time == 12.5
    assert receiver.foreign_source == LATCH_AFTER_PACKETS + 2
    assert receiver.latches == 0
    assert receiver.remote == FAR and receiver.source == FAR
    assert receiver.reception.received == 1
    frame = receiver.read(encoded_ok=False)
    assert isinstance(frame, np.ndarray)
    assert np.array_equal(frame, ulaw_decode(level(1000)))


def test_an_unsignalled_source_is_latched_after_packets_in_a_row() -> None:
    receiver = make_receiver()
    seq = 0
    for source in [NAT] * (LATCH_AFTER_PACKETS - 1) + [STRAY]:  # the run is broken
        receiver.receive(audio(seq, level(500)), source, 1.0)
        seq += 1
    assert receiver.source is None and receiver.last_rtp_time is None
    for _ in range(LATCH_AFTER_PACKETS):
        receiver.receive(audio(seq, level(500)), NAT, 2.0)
        seq += 1
    assert receiver.latches == 1
    assert receiver.foreign_source == 2 * LATCH_AFTER_PACKETS - 1  # all but the latching one
    assert receiver.remote == NAT  # media goes back where it comes from
    assert receiver.remote_rtcp == (NAT[0], NAT[1] + 1)
    assert receiver.reception.received == 1  # only the packet that latched
    # The signalled address itself is now foreign; RTCP follows the source's host only.
    receiver.receive(audio(seq, level(500)), FAR, 3.0)
    assert receiver.foreign_source == 2 * LATCH_AFTER_PACKETS
    receiver.rtcp_arrived(STRAY)
    assert receiver.remote_rtcp == (NAT[0], NAT[1] + 1)
    receiver.rtcp_arrived((NAT[0], 40000))
    assert receiver.remote_rtcp == (NAT[0], 40000)
    # A re-INVITE with the same address keeps the latch; a new address starts over.
    receiver.set_remote(FAR, None)
    assert receiver.remote == NAT and receiver.remote_rtcp == (NAT[0], 40000)
    receiver.set_remote(STRAY, None)
    assert receiver.remote == STRAY and receiver.source is None
    assert receiver.remote_rtcp == (STRAY[0], STRAY[1] + 1)


def test_reordered_packets_play_in_sequence() -> None:
    receiver = make_receiver()
    payloads = [level(1000), level(2000), level(3000)]
    receiver.receive(audio(0, payloads[0]), FAR, 0.0)
    first = receiver.read(encoded_ok=False)
    receiver.receive(audio(2, payloads[2]), FAR, 0.02)
    receiver.receive(audio(1, payloads[1]), FAR, 0.021)
    frames = [first, receiver.read(encoded_ok=False), receiver.read(encoded_ok=False)]
    for frame, payload in zip(frames, payloads, strict=True):
        assert isinstance(frame, np.ndarray)
        assert np.array_equal(frame, ulaw_decode(payload))
    assert receiver.reception.lost == 0
    assert receiver.jitter_buffer.late == 0 and receiver.concealed == 0


def test_a_lost_packet_is_concealed_and_a_stall_goes_silent() -> None:
    receiver = make_receiver()
    payloads = tone(5)
    for seq in (0, 1):
        receiver.receive(audio(seq, payloads[seq]), FAR, seq * 0.02)
        receiver.read(encoded_ok=False)
    receiver.receive(audio(3, payloads[3]), FAR, 0.06)  # 2 never comes
    receiver.receive(audio(4, payloads[4]), FAR, 0.08)
    concealment = receiver.read(encoded_ok=False)
    assert isinstance(concealment, np.ndarray) and receiver.concealed == 1
    before = ulaw_decode(payloads[1]).astype(float)
    assert 0.5 * rms(before) < rms(concealment) < rms(before)  # the last frame, fading
    assert np.corrcoef(before, concealment)[0, 1] > 0.95
    for seq in (3, 4):
        frame = receiver.read(encoded_ok=False)
        assert isinstance(frame, np.ndarray)
        assert np.array_equal(frame, ulaw_decode(payloads[seq]))
    # The far end goes quiet: a few frames of concealment, then plain silence.
    stalled = [receiver.read(encoded_ok=False) for _ in range(STALL_FRAMES + 2)]
    assert receiver.concealed == 1 + STALL_FRAMES
    assert all(isinstance(f, np.ndarray) and len(f) == 160 for f in stalled)
    assert all(not f.any() for f in stalled[STALL_FRAMES:])  # type: ignore[union-attr]


def test_dtmf_events_are_reported_once_and_not_played() -> None:
    receiver = make_receiver()
    digits: list[str] = []
    receiver.on_dtmf = digits.append
    events = [(False, 160), (False, 320)] + [(True, 480)] * 3
    for seq, (end, duration) in enumerate(events):
        payload = encode_event(5, end, 10, duration)
        receiver.receive(build_rtp(DTMF_PT, seq, 8000, 7, payload, seq == 0), FAR, seq * 0.02)
    assert digits == ["5"]
    assert receiver.reception.received == len(events)
    assert receiver.reception.jitter == 0.0  # event timestamps do not run with time
    assert receiver.jitter_buffer.buffered == 0


def test_a_failing_dtmf_listener_is_not_a_bad_packet(caplog: pytest.LogCaptureFixture) -> None:
    receiver = make_receiver()

    def listener(digit: str) -> None:
        raise RuntimeError(digit)

    receiver.on_dtmf = listener
    receiver.receive(build_rtp(DTMF_PT, 0, 0, 7, encode_event(1, True, 10, 800), True), FAR, 0.0)
    assert receiver.invalid == 0
    assert "on_dtmf callback failed" in caplog.text


def test_receive_hands_back_only_multiplexed_rtcp() -> None:
    receiver = make_receiver()
    report = rtcp.build_rr(1) + rtcp.build_sdes(1, "x")
    assert receiver.receive(rtcp.build_bye(1), FAR, 0.0)  # 8 bytes: shorter than RTP
    assert receiver.receive(report, FAR, 0.0)
    assert not receiver.receive(build_rtp(33, 0, 0, 7, b"x", False), FAR, 0.0)
    assert not receiver.receive(b"\x80\x00", FAR, 0.0)
    assert receiver.unknown_payload_type == 1 and receiver.invalid == 2
    assert receiver.source is None  # none of it was media
