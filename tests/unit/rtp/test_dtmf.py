import pytest

from callboard.rtp.dtmf import (
    DIGITS,
    DtmfEvent,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    decode_event,
    digit_to_event,
    encode_event,
    event_to_digit,
)


def test_event_payload_round_trip() -> None:
    data = encode_event(11, True, 10, 800)
    assert data == bytes([11, 0x80 | 10, 0x03, 0x20])
    assert decode_event(data) == DtmfEvent(11, True, 10, 800)
    assert decode_event(data).digit == "#"


def test_digit_mapping() -> None:
    assert [digit_to_event(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert digit_to_event("a") == 12
    assert "".join(event_to_digit(e) for e in range(16)) == DIGITS
    with pytest.raises(ValueError):
        digit_to_event("E")
    with pytest.raises(ValueError):
        event_to_digit(16)


def test_bad_payloads_and_fields() -> None:
    with pytest.raises(ValueError):
        decode_event(b"\x01\x02\x03")
    with pytest.raises(ValueError):
        encode_event(1, False, 64, 0)
    with pytest.raises(ValueError):
        encode_event(1, False, 10, 70000)


def run(
    sender: DtmfSender, ticks: int, start_ts: int = 1000, step: int = 160
) -> list[DtmfPacket | None]:
    return [sender.next_packet(start_ts + i * step) for i in range(ticks)]


def test_sender_packet_sequence_for_one_digit() -> None:
    sender = DtmfSender(clock_rate=8000)
    sender.queue("5", duration_ms=100)
    packets = run(sender, 10)
    events = [p for p in packets if p is not None]
    assert len(events) == 7
    assert all(p.timestamp == 1000 for p in events)  # the event's start, every time
    assert [p.marker for p in events] == [True] + [False] * 6
    decoded = [decode_event(p.payload) for p in events]
    assert [e.duration for e in decoded] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in decoded] == [False] * 4 + [True] * 3
    assert {e.event for e in decoded} == {5}
    assert packets[7:] == [None, None, None]
    assert not sender.busy


def test_sender_gap_and_new_timestamp_between_digits() -> None:
    sender = DtmfSender(clock_rate=8000)
    sender.queue("11", duration_ms=60)
    packets = run(sender, 20)
    starts = [i for i, p in enumerate(packets) if p is not None and p.marker]
    assert len(starts) == 2
    first, second = packets[starts[0]], packets[starts[1]]
    assert first is not None and second is not None
    assert second.timestamp == 1000 + starts[1] * 160 != first.timestamp
    gap = packets[starts[1] - 3 : starts[1]]
    assert gap == [None, None, None]  # 60 ms without events: audio flows again


def test_sender_active_while_an_event_is_due() -> None:
    sender = DtmfSender()
    assert not sender.active
    sender.queue("9")
    assert sender.active
    with pytest.raises(ValueError):
        sender.queue("9X")  # nothing of a bad string is queued
    run(sender, 7)
    assert not sender.active


def test_sender_at_48khz() -> None:
    sender = DtmfSender(clock_rate=48000)
    sender.queue("1", duration_ms=40)
    events = [p for p in run(sender, 6, step=960) if p is not None]
    assert [decode_event(p.payload).duration for p in events] == [960, 1920, 1920, 1920]


def feed_all(receiver: DtmfReceiver, packets: list[tuple[int, bytes]]) -> list[str]:
    found = []
    for timestamp, payload in packets:
        digit = receiver.feed(timestamp, payload)
        if digit is not None:
            found.append(digit)
    return found


def test_receiver_reports_once_despite_end_retransmissions() -> None:
    packets = [(1000, encode_event(7, False, 10, d)) for d in (160, 320, 480)]
    packets += [(1000, encode_event(7, True, 10, 640))] * 3
    assert feed_all(DtmfReceiver(), packets) == ["7"]


def test_receiver_handles_lost_start_packets() -> None:
    packets = [(5000, encode_event(11, True, 10, 800))] * 3  # only the end packets made it
    assert feed_all(DtmfReceiver(), packets) == ["#"]


def test_same_digit_twice_is_two_digits() -> None:
    packets = [(1000, encode_event(1, False, 10, 160)), (1000, encode_event(1, True, 10, 320))]
    packets += [(3000, encode_event(1, False, 10, 160)), (3000, encode_event(1, True, 10, 320))]
    packets += [(1000, encode_event(1, True, 10, 320))]  # a very late retransmission
    assert feed_all(DtmfReceiver(), packets) == ["1", "1"]


def test_receiver_ignores_non_dtmf_events() -> None:
    assert feed_all(DtmfReceiver(), [(10, encode_event(16, True, 10, 160))]) == []


def test_sender_to_receiver() -> None:
    sender, receiver = DtmfSender(), DtmfReceiver()
    sender.queue("*0#D")
    packets = [p for p in run(sender, 60) if p is not None]
    assert feed_all(receiver, [(p.timestamp, p.payload) for p in packets]) == list("*0#D")
