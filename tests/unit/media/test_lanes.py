import numpy as np

from callboard.media.lanes import RateLane
from callboard.media.resample import Resampler

from .audio_analysis import same_within_1_lsb, tone


def _assert_shapes(lane: RateLane[str], rows: int) -> None:
    assert lane.received.shape == (rows, 160)
    assert lane.to_send.shape == (rows, 320)


def test_leaving_compacts_rows_and_keeps_the_moved_stream_continuous() -> None:
    lane: RateLane[str] = RateLane(8000)
    _assert_shapes(lane, 0)
    seats = {}
    for count, owner in enumerate(("a", "b", "c"), start=1):
        seats[owner] = lane.join(owner)
        _assert_shapes(lane, count)
    assert [s.row for s in seats.values()] == [0, 1, 2]
    assert len(lane) == 3

    # Streams in both directions on every seat, each against a standalone Resampler.
    up = {o: Resampler(8000, 16000) for o in seats}
    down = {o: Resampler(16000, 8000) for o in seats}
    freqs = {"a": 500.0, "b": 900.0, "c": 1300.0}
    slow = {o: tone(f, 8000, 160 * 30, amplitude=9000.0) for o, f in freqs.items()}
    fast = {o: tone(f + 150.0, 16000, 320 * 30, amplitude=9000.0) for o, f in freqs.items()}

    def step(i: int, owners: tuple[str, ...]) -> None:
        for o in owners:
            lane.received[seats[o].row] = slow[o][i * 160 : (i + 1) * 160]
            lane.to_send[seats[o].row] = fast[o][i * 320 : (i + 1) * 320]
        into, back = lane.into_rooms.run(), lane.from_rooms.run()
        assert into.shape == (len(owners), 320)
        assert back.shape == (len(owners), 160)
        for o in owners:
            expected_up = up[o].process(slow[o][i * 160 : (i + 1) * 160])
            expected_down = down[o].process(fast[o][i * 320 : (i + 1) * 320])
            assert same_within_1_lsb(into[seats[o].row], expected_up), (i, o)
            assert same_within_1_lsb(back[seats[o].row], expected_down), (i, o)

    for i in range(10):
        step(i, ("a", "b", "c"))
    lane.leave(seats["b"])
    assert seats["b"].row == -1
    assert (seats["a"].row, seats["c"].row) == (0, 1)
    assert lane.seats == [seats["a"], seats["c"]]
    _assert_shapes(lane, 2)
    for i in range(10, 30):
        step(i, ("a", "c"))

    # The last seat leaving moves nobody; the first leaving moves the last into row 0.
    lane.leave(seats["c"])
    assert (seats["a"].row, seats["c"].row) == (0, -1)
    _assert_shapes(lane, 1)
    lane.leave(seats["a"])
    assert seats["a"].row == -1
    _assert_shapes(lane, 0)


def test_a_new_seat_starts_from_empty_history() -> None:
    lane: RateLane[str] = RateLane(48000)
    first = lane.join("first")
    loud = tone(1000.0, 48000, 960, amplitude=20000.0)
    lane.received[first.row] = loud
    lane.into_rooms.run()
    lane.leave(first)
    second = lane.join("second")
    assert second.row == 0
    lane.received[second.row] = 0  # silence in: a fresh filter gives exact silence out
    assert not np.any(lane.into_rooms.run()[second.row])
