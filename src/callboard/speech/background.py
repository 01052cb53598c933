"""Worker threads for synthesis and recognition, at a lower CPU priority than the media clock.

Linux schedules threads one by one and a new thread inherits its creator's nice value, so a
pool whose threads lower their own priority keeps the model runtimes' helper threads (created
while loading in that pool) low as well. When the cores are busy the media clock then wins."""

from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

NICE = 10  # added to the process's own: well below the media clock, yet far from starving


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed
        me = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, me, min(19, os.getpriority(os.PRIO_PROCESS, me) + NICE))


def background_pool(workers: int, name: str) -> ThreadPoolExecutor:
    """A thread pool whose threads run below normal priority."""
    return ThreadPoolExecutor(workers, thread_name_prefix=name, initializer=_lower_priority)
