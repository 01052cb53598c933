import asyncio
import itertools
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
import uvloop

from callboard.media.g711 import ulaw_decode, ulaw_encode
from callboard.rtp import rtcp
from callboard.rtp import session as session_module
from callboard.rtp.dtmf import decode_event
from callboard.rtp.packet import build_rtp, parse_rtp
from callboard.rtp.ports import PortAllocator
from callboard.rtp.session import RtpSession

LOCAL = "127.0.0.1"
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9, "opus": 111}
DTMF_PT = 101


def tone_frames(
    freq: float, count: int, amplitude: float = 8000.0, rate: int = 8000
) -> list[np.ndarray]:
    """20 ms frames at `rate`: sessions read and write at their codec's sample rate."""
    size = rate // 50
    t = np.arange(size * count) / rate
    signal = np.rint(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return [signal[i * size : (i + 1) * size] for i in range(count)]


def silence(rate: int = 8000) -> np.ndarray:
    return np.zeros(rate // 50, dtype=np.int16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


def peak_frequency(x: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    k = int(np.argmax(spectrum[1:]) + 1)
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / len(x)


class Collector(asyncio.DatagramProtocol):
    """A bare UDP peer that records what it gets."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, Any]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))


async def raw_peer() -> tuple[asyncio.DatagramTransport, Collector, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Collector, local_addr=(LOCAL, 0))
    return transport, protocol, transport.get_extra_info("sockname")[1]


async def ticks(count: int, each: Callable[[int], object]) -> None:
    """Run `each` on a 20 ms clock with absolute deadlines, like the media clock."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(count):
        each(i)
        await asyncio.sleep(max(0.0, start + (i + 1) * 0.02 - loop.time()))


@pytest.fixture
def ports() -> PortAllocator:
    return PortAllocator(42000, 42999)


async def session_pair(ports: PortAllocator, codec: str = "PCMU") -> tuple[RtpSession, RtpSession]:
    a = RtpSession(bind_ip=LOCAL, ports=ports)
    b = RtpSession(bind_ip=LOCAL, ports=ports)
    port_a, port_b = await a.open(), await b.open()
    for session, remote in ((a, port_b), (b, port_a)):
        session.configure(
            remote=(LOCAL, remote),
            remote_rtcp=None,
            codec=codec,
            payload_type=PAYLOAD_TYPES[codec],
            dtmf_payload_type=DTMF_PT,
        )
    return a, b


@pytest.fixture
async def pair(ports: PortAllocator) -> AsyncIterator[tuple[RtpSession, RtpSession]]:
    a, b = await session_pair(ports)
    yield a, b
    a.close()
    b.close()


async def exchange_tone(a: RtpSession, b: RtpSession, count: int = 50) -> list[np.ndarray | None]:
    frames = tone_frames(1000.0, count, rate=a.sample_rate)
    received: list[np.ndarray | None] = []

    def tick(i: int) -> None:
        received.append(b.read_frame())
        a.write_frame(frames[i])
        b.write_frame(silence(b.sample_rate))

    await ticks(count, tick)
    return received


async def test_an_opus_session_moves_to_the_rate_it_is_mixed_at(ports: PortAllocator) -> None:
    a, b = await session_pair(ports, "opus")
    try:
        await exchange_tone(a, b, 20)
        for session in (a, b):
            session.prefer_rate(48000)  # both legs moved into a 48 kHz room
            assert session.sample_rate == 48000
        received = [f for f in await exchange_tone(a, b) if f is not None]
        assert all(f.shape == (960,) for f in received)
        settled = np.concatenate(received[10:])
        assert abs(peak_frequency(settled, 48000) - 1000.0) < 2.0
        assert b.stats.packets_lost == 0
    finally:
        a.close()
        b.close()


async def test_an_opus_packet_is_forwarded_unchanged(ports: PortAllocator) -> None:
    a, b = await session_pair(ports, "opus")
    try:
        assert a.forward_key == "opus"
        payloads: list[bytes | None] = []
        frames = tone_frames(1000.0, 30, rate=a.sample_rate)

        def tick(i: int) -> None:
            b.read_frame()
            payloads.append(b.last_payload)  # what a sent, whole
            if i < 20:
                a.write_frame(frames[i])
            else:
                a.forward(b"\xfc" + bytes([i]) * 40)  # another encoder's packet, as it is
            b.write_frame(silence(b.sample_rate))

        await ticks(30, tick)
        got = [p for p in payloads if p is not None]
        assert len(got) >= 25
        forwarded = [p for p in got if p[1:] == bytes([p[1]]) * 40]
        assert len(forwarded) >= 5 and all(p[0] == 0xFC for p in forwarded)
        a.write_frame(frames[0])  # encoding again: the encoder starts afresh
    finally:
        a.close()
        b.close()


async def test_a_g711_session_stays_at_8_khz(ports: PortAllocator) -> None:
    a, b = await session_pair(ports, "PCMU")
    try:
        a.prefer_rate(16000)
        assert a.sample_rate == 8000
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("codec", list(PAYLOAD_TYPES))
async def test_tone_between_two_sessions(ports: PortAllocator, codec: str) -> None:
    a, b = await session_pair(ports, codec)
    try:
        assert b.read_frame() is None  # nothing has arrived yet
        rate = b.sample_rate
        assert rate == {"PCMU": 8000, "PCMA": 8000, "G722": 16000, "opus": 16000}[codec]
        received = await exchange_tone(a, b)
        audio = [f for f in received if f is not None]
        assert len(audio) >= 45
        assert all(f.dtype == np.int16 and f.shape == (rate // 50,) for f in audio)
        settled = np.concatenate(audio[10:])
        assert abs(peak_frequency(settled, rate) - 1000.0) < 2.0
        reference = np.concatenate(tone_frames(1000.0, 10, rate=rate))
        level_db = 20 * np.log10(rms(settled) / rms(reference))
        assert abs(level_db) < 1.0
        stats = b.stats
        assert stats.packets_received >= 45
        assert stats.packets_lost == 0
        assert stats.invalid == 0
        assert stats.mos is not None and stats.mos > 4.0
        assert a.stats.packets_sent == 50
    finally:
        a.close()
        b.close()
    assert ports.in_use == 0


async def test_dtmf_between_two_sessions(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    digits: list[str] = []
    b.on_dtmf = digits.append
    a.send_dtmf("1*9#", duration_ms=60)
    await ticks(40, lambda i: (a.write_frame(silence()), b.read_frame()))
    assert digits == ["1", "*", "9", "#"]


async def test_send_dtmf_needs_a_payload_type(ports: PortAllocator) -> None:
    session = RtpSession(bind_ip=LOCAL, ports=ports)
    await session.open()
    try:
        session.configure(
            remote=(LOCAL, 9),
            remote_rtcp=None,
            codec="PCMU",
            payload_type=0,
            dtmf_payload_type=None,
        )
        with pytest.raises(ValueError):
            session.send_dtmf("1")
    finally:
        session.close()


async def test_outgoing_packet_stream(ports: PortAllocator) -> None:
    """Marker, sequence, timestamps, DTMF replacing audio, hold keeping the clock."""
    transport, peer, peer_port = await raw_peer()
    session = RtpSession(bind_ip=LOCAL, ports=ports)
    await session.open()
    try:
        session.configure(
            remote=(LOCAL, peer_port),
            remote_rtcp=None,
            codec="PCMA",
            payload_type=8,
            dtmf_payload_type=DTMF_PT,
        )
        frames = tone_frames(500.0, 30)
        for i in range(3):
            session.write_frame(frames[i])
        session.send_dtmf("5", duration_ms=60)
        for i in range(3, 12):
            session.write_frame(frames[i])
        session.set_direction(send=False, receive=True)
        for i in range(12, 15):
            session.write_frame(frames[i])
        session.set_direction(send=True, receive=True)
        session.write_frame(frames[15])
        await asyncio.sleep(0.05)
        packets = [parse_rtp(d) for d, _ in peer.datagrams]
        assert len(packets) == 13  # 16 ticks minus 3 on hold
        # 60 ms digit: two updates and three end packets, then audio again.
        assert [p.payload_type for p in packets] == [8] * 3 + [DTMF_PT] * 5 + [8] * 5
        assert len({p.ssrc for p in packets}) == 1
        seqs = [p.sequence for p in packets]
        assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
        audio_ts = [p.timestamp for p in packets if p.payload_type == 8]
        assert (audio_ts[1] - audio_ts[0]) & 0xFFFFFFFF == 160
        # The last audio packet follows the hold: its timestamp kept running.
        assert (audio_ts[-1] - audio_ts[0]) & 0xFFFFFFFF == 15 * 160
        markers = [p.marker for p in packets if p.payload_type == 8]
        assert markers == [True] + [False] * 6 + [True]  # first packet, and after the hold
        events = [p for p in packets if p.payload_type == DTMF_PT]
        assert {p.timestamp for p in events} == {(audio_ts[0] + 3 * 160) & 0xFFFFFFFF}
        assert events[0].marker and not any(p.marker for p in events[1:])
        decoded = [decode_event(p.payload) for p in events]
        assert [(e.end, e.duration) for e in decoded] == [
            (False, 160),
            (False, 320),
            (True, 480),
            (True, 480),
            (True, 480),
        ]
        assert all(len(p.payload) == 160 for p in packets if p.payload_type == 8)
        assert session.stats.packets_sent == 13
    finally:
        session.close()
        transport.close()


async def test_latches_to_the_actual_source(ports: PortAllocator) -> None:
    a = RtpSession(bind_ip=LOCAL, ports=ports)
    b = RtpSession(bind_ip=LOCAL, ports=ports)
    port_a, port_b = await a.open(), await b.open()
    stray, stray_peer, stray_port = await raw_peer()
    try:
        a.configure(
            remote=(LOCAL, port_b),
            remote_rtcp=None,
            codec="PCMU",
            payload_type=0,
            dtmf_payload_type=None,
        )
        # B was told the wrong address (e.g. a private one behind NAT).
        b.configure(
            remote=(LOCAL, stray_port),
            remote_rtcp=None,
            codec="PCMU",
            payload_type=0,
            dtmf_payload_type=None,
        )
        frames = tone_frames(1000.0, 20)

        def tick(i: int) -> None:
            a.write_frame(frames[i])
            b.write_frame(frames[i])
            a.read_frame()
            b.read_frame()

        await ticks(20, tick)
        assert b.remote == (LOCAL, port_a)
        assert b.stats.latches == 1
        assert a.stats.packets_received >= 15  # B's audio now reaches A
        sent_to_stray = len(stray_peer.datagrams)
        assert sent_to_stray <= 4  # what B sent before A's third packet latched it
        # Someone else sending to B is ignored: the latch happens once.
        for seq in range(5):
            stray.sendto(build_rtp(0, seq, seq * 160, 77, bytes(160), False), (LOCAL, port_b))
        await asyncio.sleep(0.05)
        assert b.stats.foreign_source >= 5
        assert b.remote == (LOCAL, port_a)
    finally:
        a.close()
        b.close()
        stray.close()


async def test_garbage_is_counted_and_harmless(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    sender, _, _ = await raw_peer()
    try:
        target = (LOCAL, b.local_port)
        for junk in (b"\x80", b"\x00" * 20, b"\x40" + bytes(20), b"\xbf" + bytes(11)):
            sender.sendto(junk, target)
        sender.sendto(build_rtp(33, 1, 1, 5, b"x", False), target)  # unknown payload type
        sender.sendto(b"\x80\xc9\x00\x09junk", (LOCAL, b.local_port + 1))  # bad RTCP
        await asyncio.sleep(0.05)
        stats = b.stats
        assert stats.invalid == 6
        assert stats.unknown_payload_type == 1
        assert b.read_frame() is None  # none of it counted as media
        received = await exchange_tone(a, b, 20)
        assert sum(f is not None for f in received) >= 15
    finally:
        sender.close()


async def test_new_ssrc_resyncs(ports: PortAllocator) -> None:
    sender, _, _ = await raw_peer()
    session = RtpSession(bind_ip=LOCAL, ports=ports)
    port = await session.open()
    try:
        session.configure(
            remote=sender.get_extra_info("sockname"),
            remote_rtcp=None,
            codec="PCMU",
            payload_type=0,
            dtmf_payload_type=None,
        )
        loud = bytes([0x80]) * 160  # mu-law +32124
        for seq in range(30000, 30003):
            sender.sendto(build_rtp(0, seq, seq * 160, 1, loud, False), (LOCAL, port))
        await asyncio.sleep(0.03)
        for _ in range(3):
            assert session.read_frame() is not None
        # The far end restarts with a new SSRC and unrelated numbering.
        for seq in range(10, 13):
            sender.sendto(build_rtp(0, seq, 99 + seq * 160, 2, loud, False), (LOCAL, port))
        await asyncio.sleep(0.03)
        frames = [session.read_frame() for _ in range(3)]
        assert all(f is not None and rms(f) > 10000 for f in frames)
        assert session.stats.late == 0
        assert session.stats.packets_received == 6
        assert session.stats.packets_lost == 0
    finally:
        session.close()
        sender.close()


async def test_30ms_packets_become_20ms_frames(ports: PortAllocator) -> None:
    sender, _, _ = await raw_peer()
    session = RtpSession(bind_ip=LOCAL, ports=ports)
    port = await session.open()
    try:
        session.configure(
            remote=sender.get_extra_info("sockname"),
            remote_rtcp=None,
            codec="PCMU",
            payload_type=0,
            dtmf_payload_type=None,
        )
        t = np.arange(240 * 20) / 8000
        payload = ulaw_encode(np.rint(8000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16))
        out = []
        for i in range(20):
            chunk = payload[i * 240 : (i + 1) * 240]
            sender.sendto(build_rtp(0, i, i * 240, 3, chunk, False), (LOCAL, port))
            await asyncio.sleep(0.005)
            out.append(session.read_frame())
            if i % 2:  # three 20 ms frames per two 30 ms packets
                out.append(session.read_frame())
        frames = [f for f in out if f is not None]
        assert len(frames) == 30
        assert all(len(f) == 160 for f in frames)
        # Exactly the decoded stream, re-cut into 20 ms: nothing dropped or repeated.
        expected = ulaw_decode(payload)
        assert np.array_equal(np.concatenate(frames), expected)
        assert abs(peak_frequency(expected[800:]) - 1000.0) < 3.0
    finally:
        session.close()
        sender.close()


async def test_receive_off_discards_audio_but_counts(pair: tuple[RtpSession, RtpSession]) -> None:
    a, b = pair
    b.set_direction(send=True, receive=False)
    received = await exchange_tone(a, b, 20)
    audio = [f for f in received if f is not None]
    assert audio and all(not f.any() for f in audio)
    assert b.stats.packets_received >= 18
    assert b.last_rtp_time is not None


async def test_reconfigure_to_another_codec_keeps_stats(
    pair: tuple[RtpSession, RtpSession],
) -> None:
    a, b = pair
    await exchange_tone(a, b, 20)
    before = b.stats.packets_received
    for session, port in ((a, b.local_port), (b, a.local_port)):
        session.configure(
            remote=(LOCAL, port),
            remote_rtcp=None,
            codec="g722",
            payload_type=9,
            dtmf_payload_type=DTMF_PT,
        )
    assert b.sample_rate == 16000  # frames now come at G.722's rate
    received = await exchange_tone(a, b, 30)
    audio = [f for f in received[5:] if f is not None]
    assert all(len(f) == 320 for f in audio)
    assert abs(peak_frequency(np.concatenate(audio), 16000) - 1000.0) < 2.0
    assert b.stats.packets_received >= before + 25
    assert b.codec is not None and b.codec.name == "G722"


async def test_rtcp_reports_give_round_trip_time(
    ports: PortAllocator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "RTCP_INTERVAL", 0.06)
    a, b = await session_pair(ports)
    try:
        await exchange_tone(a, b, 30)
        for stats in (a.stats, b.stats):
            assert stats.rtt_ms is not None
            assert 0.0 <= stats.rtt_ms < 50.0
    finally:
        a.close()
        b.close()


async def test_close_sends_bye_and_is_idempotent(ports: PortAllocator) -> None:
    transport, peer, peer_port = await raw_peer()
    session = RtpSession(bind_ip=LOCAL, ports=ports)
    await session.open()
    session.configure(
        remote=(LOCAL, 9),
        remote_rtcp=(LOCAL, peer_port),
        codec="opus",
        payload_type=111,
        dtmf_payload_type=None,
    )
    assert ports.in_use == 1
    session.close()
    session.close()
    await asyncio.sleep(0.03)
    assert ports.in_use == 0
    try:
        ((data, _),) = peer.datagrams
        kinds = [type(p) for p in rtcp.parse_rtcp(data)]
        assert kinds == [rtcp.ReceiverReport, rtcp.SourceDescription, rtcp.Goodbye]
        session.write_frame(silence())  # harmless after close
    finally:
        transport.close()


async def test_rtcp_mux_on_the_rtp_port(pair: tuple[RtpSession, RtpSession]) -> None:
    _a, b = pair
    sender, _, _ = await raw_peer()
    try:
        sender.sendto(rtcp.build_bye(5), (LOCAL, b.local_port))
        await asyncio.sleep(0.03)
        assert b.remote_bye
        assert b.stats.invalid == 0
    finally:
        sender.close()


def test_works_on_uvloop() -> None:
    async def scenario() -> tuple[float, list[str]]:
        a, b = await session_pair(PortAllocator(43000, 43099))
        digits: list[str] = []
        b.on_dtmf = digits.append
        try:
            received = await exchange_tone(a, b, 25)
            a.send_dtmf("7")
            await ticks(10, lambda i: (a.write_frame(silence()), b.read_frame()))
        finally:
            a.close()
            b.close()
        audio = np.concatenate([f for f in received[5:] if f is not None])
        return peak_frequency(audio), digits

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        frequency, digits = runner.run(scenario())
    assert abs(frequency - 1000.0) < 2.0
    assert digits == ["7"]


def test_header_struct_is_what_the_fast_path_assumes() -> None:
    assert struct.calcsize("!BBHII") == 12


async def test_one_spoofed_packet_does_not_take_the_media(ports: PortAllocator) -> None:
    """RTP bleed: a stray packet arriving before the real peer's must not redirect our audio."""
    a = RtpSession(bind_ip=LOCAL, ports=ports)
    b = RtpSession(bind_ip=LOCAL, ports=ports)
    port_a, port_b = await a.open(), await b.open()
    attacker, attacker_peer, _ = await raw_peer()
    try:
        for session, remote in ((a, port_b), (b, port_a)):
            session.configure(
                remote=(LOCAL, remote),
                remote_rtcp=None,
                codec="PCMU",
                payload_type=0,
                dtmf_payload_type=None,
            )
        # Two spoofed packets reach B before anything from A.
        for seq in range(2):
            attacker.sendto(build_rtp(0, seq, seq * 160, 66, bytes(160), False), (LOCAL, port_b))
        await asyncio.sleep(0.05)
        frames = tone_frames(1000.0, 10)

        def tick(i: int) -> None:
            a.write_frame(frames[i])
            b.write_frame(frames[i])
            a.read_frame()
            b.read_frame()

        await ticks(10, tick)
        assert b.remote == (LOCAL, port_a)
        assert b.stats.latches == 0
        assert len(attacker_peer.datagrams) == 0  # B never sent media to the attacker
        assert a.stats.packets_received >= 8
    finally:
        a.close()
        b.close()
        attacker.close()


async def test_g711_frames_can_travel_encoded(ports: PortAllocator) -> None:
    """read_encoded hands over whole-frame payloads untouched, PCM for anything else
    (a lost packet's concealment fades the last payload out); write_encoded sends as is."""
    a, b = await session_pair(ports, "PCMA")
    try:
        assert a.law is not None and a.law.name == "PCMA"
        payloads = [a.law.encode_rows(f.reshape(1, -1)) for f in tone_frames(800.0, 12)]
        got: list[np.ndarray | bytes | None] = []

        def tick(i: int) -> None:
            got.append(b.read_encoded())
            if i != 6:  # one packet lost on the way
                a.write_encoded(payloads[i])
            else:
                sender = a._sender
                sender.timestamp = (sender.timestamp + 160) & 0xFFFFFFFF
                sender.seq = (sender.seq + 1) & 0xFFFF

        await ticks(12, tick)
        arrived = [g for g in got if g is not None]
        encoded = [g for g in arrived if isinstance(g, bytes)]
        assert encoded == [p for i, p in enumerate(payloads) if i != 6][: len(encoded)]
        assert len(encoded) >= 7
        concealed = [g for g in arrived if isinstance(g, np.ndarray)]
        # The lost packet; on a loaded machine a late one may be concealed as well.
        assert 1 <= len(concealed) <= 2
        # Concealment fades out the frame before the loss, decoded only now.
        before = a.law.decode_table.take(np.frombuffer(payloads[5], np.uint8)).astype(float)
        fade = concealed[0].astype(float)
        assert 0.5 * rms(before) < rms(fade) < rms(before)
        assert np.corrcoef(before, fade)[0, 1] > 0.95
        assert a.stats.packets_sent == 11
        assert b.stats.concealed == len(concealed)
    finally:
        a.close()
        b.close()
