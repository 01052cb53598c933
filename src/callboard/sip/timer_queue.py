"""A deadline heap with lazy cancellation, shared by all transactions of a layer."""

from __future__ import annotations

import heapq
import itertools
from typing import Protocol


class TimerOwner(Protocol):
    # timer name -> sequence number of the heap entry that is currently valid
    timers: dict[str, int]


class TimerQueue:
    """Cancelling a timer only forgets its sequence number; the stale heap entry is skipped
    when it surfaces, and the heap is rebuilt when stale entries dominate."""

    _COMPACT_MIN = 1024

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerOwner, str]] = []
        self._seq = itertools.count()
        self._stale = 0

    def schedule(self, owner: TimerOwner, name: str, when: float) -> None:
        if name in owner.timers:
            self._stale += 1
        seq = next(self._seq)
        owner.timers[name] = seq
        heapq.heappush(self._heap, (when, seq, owner, name))

    def cancel(self, owner: TimerOwner, name: str) -> None:
        if owner.timers.pop(name, None) is not None:
            self._stale += 1
            self._maybe_compact()

    def cancel_all(self, owner: TimerOwner) -> None:
        self._stale += len(owner.timers)
        owner.timers.clear()
        self._maybe_compact()

    def pop_due(self, now: float) -> tuple[TimerOwner, str] | None:
        """The earliest live timer with a deadline <= now (removed), or None."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, owner, name = heapq.heappop(heap)
            if owner.timers.get(name) == seq:
                del owner.timers[name]
                return owner, name
            self._stale -= 1
        return None

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            _, seq, owner, name = heap[0]
            if owner.timers.get(name) == seq:
                return heap[0][0]
            heapq.heappop(heap)
            self._stale -= 1
        return None

    def __len__(self) -> int:
        return len(self._heap) - self._stale

    def _maybe_compact(self) -> None:
        if self._stale > self._COMPACT_MIN and self._stale * 2 > len(self._heap):
            self._heap = [e for e in self._heap if e[2].timers.get(e[3]) == e[1]]
            heapq.heapify(self._heap)
            self._stale = 0
