"""Giving memory back after a burst of calls.

CPython's own small-object allocator (pymalloc) returns a 1 MiB arena to the system only when
every object in it is gone, and a burst of calls leaves a few long-lived objects (a freelist
entry, a bounded memory of ended legs) in nearly every arena it touched: measured after a flood
of 12,000 calls, the process stayed at twice its size with half of that free. So the server
runs on glibc's allocator (`PYTHONMALLOC=malloc`, set by `use_system_allocator` before the
interpreter starts), whose free pages `malloc_trim` can hand back one by one. When the server
goes idle it empties CPython's freelists (a full collection) and then trims, in a worker
thread: ctypes lets go of the GIL, so the event loop does not wait for the trim.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys

_libc: ctypes.CDLL | None = None
try:
    _name = ctypes.util.find_library("c")
    _libc = ctypes.CDLL(_name) if _name else None
    if _libc is not None and not hasattr(_libc, "malloc_trim"):
        _libc = None  # not glibc
except OSError:
    _libc = None

ALLOCATOR_VARIABLE = "PYTHONMALLOC"


def use_system_allocator() -> None:
    """Restart this process on glibc's allocator, unless the user chose one (PYTHONMALLOC
    set, even to `pymalloc`) or there is no glibc to trim. Call it first thing in `main`:
    exec keeps the pid, the open descriptors and the interpreter's own options."""
    if _libc is None or ALLOCATOR_VARIABLE in os.environ:
        return
    environment = {**os.environ, ALLOCATOR_VARIABLE: "malloc"}
    os.execve(sys.executable, sys.orig_argv, environment)


def collect_freelists() -> None:
    """A full collection, which also empties CPython's freelists (tuples, floats, dicts...)
    so that the memory they hold can be trimmed. On the event loop's thread: finalisers of
    the objects it frees may touch the loop. Tens of milliseconds; call it when idle."""
    gc.collect()


def release_free_memory() -> None:
    """Blocking: call it in a worker thread."""
    if _libc is not None:
        _libc.malloc_trim(0)
