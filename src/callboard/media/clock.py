"""The process-wide 20 ms media clock.

One timer drives all media: every tick runs the registered tick functions in order (pull from
every source, mix every room, push to every sink). Deadlines are absolute multiples of the
period from the start time, so scheduling jitter never accumulates into drift. When the loop
falls more than a few periods behind (a stalled process), the missed ticks are skipped and
counted instead of being run back to back, which would burst RTP at the peers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

PERIOD = 0.020
# A tick this late means the event loop was held elsewhere: logged as a warning.
STALL_LOG_SECONDS = 0.010
# How far behind the clock may fall before it stops catching up and skips ticks.
MAX_CATCH_UP = 3


class TickStats:
    """Lateness of recent ticks (seconds past their deadline) in a fixed ring buffer."""

    def __init__(self, size: int = 3000) -> None:
        self._late = np.zeros(size, dtype=np.float64)
        self._busy = np.zeros(size, dtype=np.float64)
        self._size = size
        self._count = 0
        self.ticks = 0
        self.skipped = 0

    def record(self, lateness: float, busy: float) -> None:
        i = self._count % self._size
        self._late[i] = lateness
        self._busy[i] = busy
        self._count += 1
        self.ticks += 1

    def _window(self, data: np.ndarray) -> np.ndarray:
        return data[: min(self._count, self._size)]

    def lateness_percentile(self, q: float) -> float:
        window = self._window(self._late)
        return float(np.percentile(window, q)) if window.size else 0.0

    def busy_percentile(self, q: float) -> float:
        window = self._window(self._busy)
        return float(np.percentile(window, q)) if window.size else 0.0

    def reset(self) -> None:
        self._count = 0


class MediaClock:
    """Calls every tick function once per period, in registration order."""

    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self.stats = TickStats()
        self._tick_functions: list[Callable[[], None]] = []
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._start = 0.0
        self._mono_start = 0.0
        self._index = 0
        self._last_stall_log = -1e9

    def add_tick_function(self, fn: Callable[[], None]) -> None:
        self._tick_functions.append(fn)

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        # uvloop's loop.time() has millisecond resolution: lateness is measured on the finer
        # monotonic clock against the same schedule.
        self._mono_start = time.monotonic()
        self._index = 1
        self._handle = self._loop.call_at(self._start + self.period, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        began = time.monotonic()
        lateness = began - (self._mono_start + self._index * self.period)
        for fn in self._tick_functions:
            try:
                fn()
            except Exception:
                # A bug in one stage must not stop the clock for every other call.
                log.exception("media tick function %r failed", fn)
        self.stats.record(lateness, time.monotonic() - began)
        if lateness > STALL_LOG_SECONDS and began - self._last_stall_log > 1.0:
            # Something held the event loop: worth a line in the log (at most one a second).
            self._last_stall_log = began
            log.warning("media clock ran %.0f ms late (the event loop was busy)", lateness * 1e3)
        self._index += 1
        behind = int((loop.time() - self._start) / self.period) - self._index
        if behind > MAX_CATCH_UP:
            self.stats.skipped += behind
            self._index += behind
        self._handle = loop.call_at(self._start + self._index * self.period, self._tick)
