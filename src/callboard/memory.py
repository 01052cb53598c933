"""Giving memory back when the server goes idle. glibc keeps the heap pages that a burst of
calls freed (their many small buffers), so the process would stay at its peak size; when the
last leg has ended, malloc_trim returns the free ones to the system. It runs in a worker
thread: ctypes lets go of the GIL, so the event loop and the media clock do not wait."""

from __future__ import annotations

import ctypes
import ctypes.util

_libc: ctypes.CDLL | None = None
try:
    _name = ctypes.util.find_library("c")
    _libc = ctypes.CDLL(_name) if _name else None
    if _libc is not None and not hasattr(_libc, "malloc_trim"):
        _libc = None  # not glibc
except OSError:
    _libc = None


def release_free_memory() -> None:
    """Blocking: call it in a worker thread."""
    if _libc is not None:
        _libc.malloc_trim(0)
