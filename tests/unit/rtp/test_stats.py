import pytest

from callboard.rtp.stats import ReceptionStats


def feed(stats: ReceptionStats, seqs: list[int], step: int = 160) -> None:
    for i, seq in enumerate(seqs):
        stats.update(seq & 0xFFFF, seq * step, i * 0.02)


def test_in_order_stream() -> None:
    stats = ReceptionStats(8000)
    feed(stats, list(range(1000, 1100)))
    assert (stats.received, stats.expected, stats.lost) == (100, 100, 0)
    assert stats.jitter == 0.0


def test_loss_is_counted_from_gaps() -> None:
    stats = ReceptionStats(8000)
    seqs = [s for s in range(100) if s not in (10, 11, 50)]
    feed(stats, seqs)
    assert (stats.received, stats.expected, stats.lost) == (97, 100, 3)
    assert stats.loss_fraction == pytest.approx(0.03)


def test_reordering_is_not_loss() -> None:
    stats = ReceptionStats(8000)
    feed(stats, [1, 2, 4, 3, 5, 7, 6, 8])
    assert (stats.expected, stats.lost) == (8, 0)


def test_duplicates_do_not_make_loss_negative() -> None:
    stats = ReceptionStats(8000)
    feed(stats, [1, 2, 2, 3, 3, 4])
    assert stats.lost == 0
    assert stats.received == 6


def test_sequence_wrap_counts_a_cycle() -> None:
    stats = ReceptionStats(8000)
    feed(stats, list(range(65530, 65546)))
    assert stats.extended_max_seq == 65545
    assert (stats.expected, stats.lost) == (16, 0)


def test_sender_restart_after_big_jump_is_confirmed_by_two_packets() -> None:
    stats = ReceptionStats(8000)
    feed(stats, list(range(10)))
    assert stats.update(40000, 0, 1.0) is False  # suspicious: set aside
    assert stats.update(40001, 160, 1.02) is True  # sequential: a real restart
    stats.update(40002, 320, 1.04)
    assert stats.expected == 10 + 2
    assert stats.lost == 0


def test_new_source_keeps_totals() -> None:
    stats = ReceptionStats(8000)
    feed(stats, [0, 1, 3])  # one lost
    stats.reset_source()
    feed(stats, [500, 501, 502])
    assert (stats.received, stats.expected, stats.lost) == (6, 7, 1)


def test_jitter_matches_hand_computation() -> None:
    """RFC 3550 A.8 on a stream whose transit alternates by 80 timestamp units."""
    stats = ReceptionStats(8000)
    arrivals = [0.0, 0.030, 0.040, 0.070, 0.080]  # 20 ms spacing +-10 ms
    for i, arrival in enumerate(arrivals):
        stats.update(i, i * 160, arrival)
    # Transit (arrival * 8000 - timestamp) is 0, 80, 0, 80, 0: |D| = 80 every time.
    # J1 = 80/16 = 5; J2 = 5 + 75/16 = 9.6875; J3 = 14.08203125; J4 = 18.201904296875.
    assert stats.jitter == pytest.approx(18.201904296875)
    assert stats.jitter_ms == pytest.approx(18.201904296875 / 8)


def test_jitter_converges_to_mean_deviation() -> None:
    stats = ReceptionStats(8000)
    for i in range(2000):
        stats.update(i & 0xFFFF, i * 160, i * 0.02 + (0.005 if i % 2 else 0.0))
    # |D| is always 5 ms, so J converges to 5 ms.
    assert stats.jitter_ms == pytest.approx(5.0, abs=0.01)


def test_untimed_packets_do_not_move_jitter() -> None:
    stats = ReceptionStats(8000)
    stats.update(0, 1000, 0.0)
    for i in range(1, 6):
        stats.update(i, 1000, i * 0.02, timing=False)  # DTMF: same timestamp
    assert stats.jitter == 0.0
    assert stats.received == 6


def test_interval_report_fraction_lost() -> None:
    stats = ReceptionStats(8000)
    feed(stats, [s for s in range(100) if s % 4 != 3])  # 25 % loss
    fraction, cumulative = stats.interval_report()
    assert fraction == 256 * 24 // 99  # 24 of 99 expected (the last, 99, is lost)
    assert cumulative == 24
    feed(stats, list(range(100, 200)))
    fraction, cumulative = stats.interval_report()
    assert fraction == 256 * 1 // 101  # 99 turns out lost too: 1 of 101 expected
    assert cumulative == 25
    feed(stats, list(range(200, 300)))
    assert stats.interval_report() == (0, 25)
