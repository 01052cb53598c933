import itertools
import random

import numpy as np

from callboard.media.g711 import ALAW, ULAW
from callboard.media.jitter import CAPACITY, MAX_DEPTH_FRAMES, MISSING, JitterBuffer

STEP = 160  # 20 ms at 8 kHz


def payload(seq: int) -> bytes:
    return seq.to_bytes(2, "big")


def push(jb: JitterBuffer, seq: int, arrival: float | None = None) -> None:
    seq &= 0xFFFF
    jb.push(seq, seq * STEP, payload(seq), arrival if arrival is not None else seq * 0.02)


def test_nothing_before_the_first_packet() -> None:
    jb = JitterBuffer()
    assert jb.pop() is None
    assert jb.pop() is None


def test_in_order_playout() -> None:
    jb = JitterBuffer()
    out = []
    for seq in range(100, 110):
        push(jb, seq)
        out.append(jb.pop())
    assert out == [payload(s) for s in range(100, 110)]
    assert (jb.late, jb.duplicate, jb.overflow, jb.lost) == (0, 0, 0, 0)


def test_reordered_packets_play_in_sequence() -> None:
    jb = JitterBuffer()
    for seq in (1, 3, 2, 4, 6, 5):
        push(jb, seq)
    assert [jb.pop() for _ in range(6)] == [payload(s) for s in range(1, 7)]


def test_reorder_across_a_tick_waits_within_target_depth() -> None:
    jb = JitterBuffer()
    jb.target = 2
    push(jb, 1)
    push(jb, 2)
    assert jb.pop() == payload(1)
    assert jb.pop() == payload(2)
    push(jb, 4)  # 3 is overtaken but 4 is still within the target depth
    assert jb.pop() is MISSING  # so it waits rather than skip 3
    push(jb, 3)
    assert jb.pop() == payload(3)
    assert jb.pop() == payload(4)
    assert jb.lost == 0


def test_a_lost_packet_is_reported_missing_once() -> None:
    jb = JitterBuffer()
    out = []
    for seq in range(10):
        if seq != 4:
            push(jb, seq)
        if seq >= 1:
            out.append(jb.pop())
    assert out == [payload(s) for s in range(4)] + [MISSING] + [payload(s) for s in range(5, 9)]
    assert jb.lost == 1


def test_duplicates_are_dropped_and_counted() -> None:
    jb = JitterBuffer()
    push(jb, 1)
    push(jb, 2)
    push(jb, 2)
    assert jb.duplicate == 1
    assert [jb.pop(), jb.pop()] == [payload(1), payload(2)]


def test_late_packets_are_dropped_and_counted() -> None:
    jb = JitterBuffer()
    push(jb, 1)
    push(jb, 3)
    assert jb.pop() == payload(1)
    assert jb.pop() is MISSING  # 2 declared lost: 3 is already there
    assert jb.pop() == payload(3)
    push(jb, 2)
    assert jb.late == 1
    assert jb.buffered == 0


def test_sequence_wrap() -> None:
    jb = JitterBuffer()
    seqs = [65533, 65534, 65535, 0, 1, 2]
    out = []
    for i, seq in enumerate(seqs):
        jb.push(seq, i * STEP, payload(seq), i * 0.02)
        out.append(jb.pop())
    assert out == [payload(s) for s in seqs]
    assert jb.late == 0


def test_big_jump_resyncs() -> None:
    jb = JitterBuffer()
    for seq in range(5):
        push(jb, seq)
        jb.pop()
    jb.push(30000, 1234, b"new", 1.0)
    assert jb.resyncs == 1
    assert jb.pop() == b"new"
    assert jb.late == 0


def test_explicit_resync_for_a_new_source() -> None:
    jb = JitterBuffer()
    push(jb, 10)
    jb.pop()
    jb.resync()
    jb.push(3, 0, b"other stream", 0.2)  # would be "late" for the old stream
    assert jb.pop() == b"other stream"
    assert jb.late == 0


def test_overflow_drops_the_oldest() -> None:
    jb = JitterBuffer()
    for seq in range(CAPACITY + 4):
        push(jb, seq, arrival=0.0)
    assert jb.overflow == 4
    assert jb.buffered == CAPACITY
    assert jb.pop() == payload(4)


def test_a_stalled_stream_holds_its_place_and_resumes() -> None:
    jb = JitterBuffer()
    push(jb, 1)
    assert jb.pop() == payload(1)
    assert [jb.pop() for _ in range(3)] == [MISSING] * 3  # nothing arrives
    push(jb, 2, arrival=0.2)  # late, but not lost: it still plays
    assert jb.pop() == payload(2)
    assert jb.lost == 0


def test_resume_after_a_stall_skips_the_gap() -> None:
    jb = JitterBuffer()
    push(jb, 1)
    jb.pop()
    for _ in range(10):
        assert jb.pop() is MISSING
    push(jb, 12)  # sender skipped sequence numbers while it was silent
    assert jb.pop() == payload(12)


def test_target_grows_with_jitter_and_shrinks_slowly() -> None:
    rng = random.Random(7)
    jb = JitterBuffer()
    assert jb.target == 1
    seq = 0
    for _ in range(200):  # 4 s with up to 70 ms of jitter
        jb.push(seq, seq * STEP, payload(seq), seq * 0.02 + rng.uniform(0, 0.07))
        jb.pop()
        seq += 1
    grown = jb.target
    assert 3 <= grown <= MAX_DEPTH_FRAMES
    targets = []
    for _ in range(500):  # then 10 s of a perfectly regular stream
        jb.push(seq, seq * STEP, payload(seq), seq * 0.02)
        jb.pop()
        targets.append(jb.target)
        seq += 1
    assert targets[50] >= grown - 1  # no sudden collapse
    assert targets[-1] == 1
    assert all(b <= a for a, b in itertools.pairwise(targets))


def test_target_never_exceeds_the_maximum() -> None:
    rng = random.Random(3)
    jb = JitterBuffer()
    for seq in range(300):
        jb.push(seq, seq * STEP, payload(seq), seq * 0.02 + rng.uniform(0, 0.5))
        jb.pop()
    assert jb.target == MAX_DEPTH_FRAMES


def test_standing_excess_is_drained() -> None:
    jb = JitterBuffer()
    for seq in range(8):  # a burst after a network hiccup
        push(jb, seq, arrival=0.0)
    seq = 8
    depths = []
    for _ in range(800):  # then 16 s of a regular stream
        push(jb, seq)
        jb.pop()
        depths.append(jb.depth)
        seq += 1
    assert depths[0] >= 7
    assert jb.target == 1
    assert depths[-1] <= 2  # the latency the burst added has been given back
    assert jb.drained >= 6
    assert jb.lost == 0


def test_empty_payload_is_a_valid_item() -> None:
    jb = JitterBuffer()
    jb.push(1, 0, b"", 0.0)
    assert jb.pop() == b""


def test_a_timestamp_jump_is_not_mistaken_for_jitter() -> None:
    jb = JitterBuffer()
    for seq in range(200):
        # The sender's timestamps leap 3 s ahead at packet 100, its packets do not.
        offset = 3 * 8000 if seq >= 100 else 0
        jb.push(seq, seq * STEP + offset, payload(seq), seq * 0.02)
        assert jb.pop() == payload(seq)
    assert jb.target == 1


def _drain_run(quiet_every: int | None) -> tuple[JitterBuffer, list[int]]:
    """A burst, then a regular stream; returns the sequence numbers that never played."""
    jb = JitterBuffer()
    if quiet_every is not None:
        jb.is_quiet = lambda p: int.from_bytes(p, "big") % quiet_every == 0
    for seq in range(8):
        push(jb, seq, arrival=0.0)
    played = []
    for seq in range(8, 808):
        push(jb, seq)
        item = jb.pop()
        if isinstance(item, bytes):
            played.append(int.from_bytes(item, "big"))
    return jb, sorted(set(range(played[0], played[-1] + 1)) - set(played))


def test_a_drain_cuts_a_quiet_packet_when_the_codec_can_tell() -> None:
    jb, dropped = _drain_run(quiet_every=7)
    assert jb.drained >= 6 and len(dropped) == jb.drained
    assert all(seq % 7 == 0 for seq in dropped), dropped  # only ever a quiet one
    assert jb.depth <= 2 and jb.lost == 0


def test_a_drain_without_any_quiet_packet_still_gives_the_latency_back() -> None:
    jb, dropped = _drain_run(quiet_every=10**9)  # nothing is ever quiet (but packet 0)
    assert jb.drained >= 6 and len(dropped) == jb.drained
    assert jb.depth <= 2 and jb.lost == 0


def test_g711_quiet_test_tells_a_pause_from_speech() -> None:
    for law in (ULAW, ALAW):
        t = np.arange(160) / 8000
        loud = law.encode_rows((3000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[None, :])
        hiss = law.encode_rows((60 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)[None, :])
        assert not law.is_quiet(loud)
        assert law.is_quiet(hiss)  # about -55 dBFS
        assert law.is_quiet(law.encode_rows(np.zeros((1, 160), np.int16)))


def _one_late_packet(lead_ms: float, quiet: bool) -> tuple[JitterBuffer, list[float]]:
    """A stream whose packets arrive `lead_ms` before the tick that plays them, except packet
    50, which comes 5 ms after its tick (its frame is concealed, the play point held). Returns
    each tick's wait of the packet it played (ms: tick time - arrival)."""
    jb = JitterBuffer()
    if quiet:
        jb.is_quiet = lambda p: True
    waits: list[float] = []
    arrivals = {seq: seq * 0.02 - lead_ms / 1000 for seq in range(300)}
    arrivals[50] = 50 * 0.02 + 0.005
    pending = sorted(arrivals, key=arrivals.__getitem__)
    for tick in range(300):
        now = tick * 0.02
        while pending and arrivals[pending[0]] <= now:
            seq = pending.pop(0)
            push(jb, seq, arrival=arrivals[seq])
        item = jb.pop(now)
        if isinstance(item, bytes):
            waits.append(round((now - arrivals[int.from_bytes(item, "big")]) * 1000, 1))
    return jb, waits


def test_the_frame_a_late_packet_added_is_given_back() -> None:
    for quiet in (False, True):
        jb, waits = _one_late_packet(lead_ms=8.0, quiet=quiet)
        assert 28.0 in waits  # after the late packet, each packet waited a frame more...
        assert waits[-100:] == [8.0] * 100, (quiet, waits[-100:])  # ...until one was dropped
        assert jb.drained == 1 and jb.target == 1


def test_a_frame_that_a_stream_just_before_the_tick_needs_is_kept() -> None:
    jb, waits = _one_late_packet(lead_ms=2.0, quiet=False)  # 22 ms after the late packet:
    assert waits[-100:] == [22.0] * 100  # within the margin, the extra frame protects it
    assert jb.drained == 0
