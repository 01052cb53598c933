"""One loop timer that follows a sans-IO object's `next_deadline()`: the asyncio side of the
transaction layer and of the call router."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DeadlineTimer:
    """Calls `fire(now)` at the deadline last given to `follow`. `now` is never earlier than
    the deadline: the loop may run a handle slightly early, and a sans-IO layer that saw "not
    yet due" would spin."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fire: Callable[[float], None]) -> None:
        self._loop = loop
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None

    def follow(self, deadline: float | None) -> None:
        if deadline == self._when:
            return
        self.cancel()
        self._when = deadline
        if deadline is not None:
            self._handle = self._loop.call_at(deadline, self._expired)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._when = None

    def _expired(self) -> None:
        when = self._when if self._when is not None else self._loop.time()
        self._handle = None
        self._when = None
        self._fire(max(self._loop.time(), when))
