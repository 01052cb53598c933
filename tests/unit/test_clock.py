import asyncio
import itertools

from callboard.media.clock import MediaClock


async def test_ticks_on_absolute_deadlines_without_drift() -> None:
    clock = MediaClock(period=0.01)
    stamps: list[float] = []
    loop = asyncio.get_running_loop()
    clock.add_tick_function(lambda: stamps.append(loop.time()))
    clock.start()
    await asyncio.sleep(0.505)
    clock.stop()
    # 50 ticks in 0.5 s: deadline arithmetic, not accumulated sleeps.
    assert 48 <= len(stamps) <= 51
    span = stamps[-1] - stamps[0]
    assert abs(span - (len(stamps) - 1) * 0.01) < 0.01
    assert clock.stats.lateness_percentile(99) < 0.01


async def test_failing_stage_does_not_stop_the_clock() -> None:
    clock = MediaClock(period=0.01)
    calls = []

    def bad() -> None:
        raise RuntimeError("boom")

    clock.add_tick_function(bad)
    clock.add_tick_function(lambda: calls.append(1))
    clock.start()
    await asyncio.sleep(0.1)
    clock.stop()
    assert len(calls) >= 8


async def test_stalled_loop_skips_instead_of_bursting() -> None:
    clock = MediaClock(period=0.01)
    stamps: list[float] = []
    loop = asyncio.get_running_loop()
    clock.add_tick_function(lambda: stamps.append(loop.time()))
    clock.start()
    await asyncio.sleep(0.03)
    import time

    time.sleep(0.2)  # block the loop for 20 periods
    await asyncio.sleep(0.05)
    clock.stop()
    assert clock.stats.skipped >= 15
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # After the stall at most a few catch-up ticks run back to back.
    assert sum(1 for g in gaps if g < 0.002) <= 4
