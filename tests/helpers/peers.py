"""Finding external peer programs and free local ports for tests.

Ports: the kernel hands out ephemeral ports from 32768-60999, so helpers that need a *block*
of consecutive ports look below that (12000-19999; server RTP windows in 20000-31999), where
nothing is assigned by accident. Single ports come from the kernel (bind to port 0), which
does not hand a bound port to another worker.
Every port handed out is remembered for the life of the process so that two calls never
return the same one, even though the check itself releases the port again. Under pytest-xdist
each worker takes blocks from its own slice of 12000-19999, so workers never race for one;
server RTP windows are reserved across processes by a lock file.
"""

from __future__ import annotations

import fcntl
import os
import random
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Literal

import pytest

PortKind = Literal["udp", "tcp", "both"]

# Blocks for free_port_range() (small, for SIPp media and the like).
_RANGE_LOW, _RANGE_HIGH = 12000, 19999
# Private RTP windows for server instances (see reserve_port_window()).
_WINDOW_LOW, _WINDOW_HIGH = 20000, 31999

_lock = threading.Lock()
_handed_out: set[int] = set()


def _worker_slice() -> tuple[int, int]:
    """This process's share of the block range: the whole of it, or 1/n under xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not worker.startswith("gw") or count <= 1:
        return _RANGE_LOW, _RANGE_HIGH
    index = int(worker[2:]) % count
    width = (_RANGE_HIGH - _RANGE_LOW) // count
    low = _RANGE_LOW + index * width
    return low, low + width


def in_ci() -> bool:
    """True when running under CI (the CI sets CI=true)."""
    return os.environ.get("CI") == "true"


def require_binary(name: str) -> str:
    """Return the path of program ``name``; fail under CI, skip elsewhere, when it is missing.

    ``scripts/test`` installs every peer, so a missing one under CI is a broken setup and must
    not turn into a quietly skipped test.
    """
    path = shutil.which(name)
    if path is None:
        message = f"required program {name!r} is not installed (scripts/test installs it)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


def port_is_free(port: int, kind: PortKind = "both", host: str = "127.0.0.1") -> bool:
    """True if ``port`` can be bound on ``host`` for the given protocol(s) right now."""
    kinds: list[int] = []
    if kind in ("udp", "both"):
        kinds.append(socket.SOCK_DGRAM)
    if kind in ("tcp", "both"):
        kinds.append(socket.SOCK_STREAM)
    for sock_type in kinds:
        with socket.socket(socket.AF_INET, sock_type) as sock:
            if sock_type == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(kind: PortKind = "both", host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` for UDP, TCP or both (default: both, as SIP needs)."""
    first = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    for _ in range(200):
        with socket.socket(socket.AF_INET, first) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        with _lock:
            if port in _handed_out:
                continue
            if port_is_free(port, kind, host):
                _handed_out.add(port)
                return port
    raise RuntimeError(f"no free {kind} port found on {host}")


def free_port_range(n: int, kind: PortKind = "both", host: str = "127.0.0.1") -> int:
    """First port of ``n`` consecutive free ports (even-aligned, as RTP wants).

    The block is taken from 12000-19999 (this worker's slice of it), away from the kernel's
    ephemeral range.
    """
    if not 1 <= n <= 1000:
        raise ValueError("n must be between 1 and 1000")
    rng = random.Random()
    low, high = _worker_slice()
    for _ in range(500):
        base = rng.randrange(low, high - n) & ~1
        block = range(base, base + n)
        with _lock:
            if any(p in _handed_out for p in block):
                continue
            if all(port_is_free(p, kind, host) for p in block):
                _handed_out.update(block)
                return base
    raise RuntimeError(f"no block of {n} free ports found on {host}")


class PortWindow:
    """A block of ports reserved across processes by an flock'ed file (released on close)."""

    def __init__(self, low: int, high: int, lock_file: IO[bytes]) -> None:
        self.low = low
        self.high = high  # inclusive
        self._lock_file: IO[bytes] | None = lock_file

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def __repr__(self) -> str:
        return f"PortWindow({self.low}-{self.high})"


def reserve_port_window(size: int = 200, host: str = "127.0.0.1") -> PortWindow:
    """Reserve a private window of ``size`` ports in 20000-31999 for one server instance.

    The reservation is an exclusive flock on a file under the temp dir, so concurrent test
    processes (for example pytest-xdist workers) never get the same window. Within the window
    every port is checked free for UDP at reservation time.
    """
    lock_dir = Path(tempfile.gettempdir()) / "callboard-test-ports"
    lock_dir.mkdir(exist_ok=True)
    windows = list(range(_WINDOW_LOW, _WINDOW_HIGH - size + 2, size))
    start = (os.getpid() * 7) % len(windows)
    for i in range(len(windows)):
        low = windows[(start + i) % len(windows)]
        lock_file = open(lock_dir / f"{low}-{size}.lock", "wb")  # noqa: SIM115 - held open
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            continue
        with _lock:
            busy = any(p in _handed_out for p in range(low, low + size))
        if busy or not all(port_is_free(p, "udp", host) for p in range(low, low + size)):
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            lock_file.close()
            continue
        return PortWindow(low, low + size - 1, lock_file)
    raise RuntimeError(f"no free window of {size} ports in {_WINDOW_LOW}-{_WINDOW_HIGH}")


def wait_port_bound(port: int, kind: Literal["udp", "tcp"], timeout: float = 5.0) -> bool:
    """Poll until some process has bound ``port`` on 127.0.0.1 (our own bind then fails).

    Nothing is sent to the port, so the peer sees no stray connection or datagram.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not port_is_free(port, kind):
            return True
        time.sleep(0.02)
    return False
