"""NumPy's BLAS stays on one thread in the server, started as users start it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from threadpoolctl import threadpool_info

from callboard.threads import limit_blas_threads

PROBE = """
import json
import callboard.server  # what `callboard` (scripts/serve) imports first
from threadpoolctl import threadpool_info
print(json.dumps([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]))
"""


def test_importing_callboard_limits_blas_before_numpy_loads() -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    sizes = json.loads(out)
    assert sizes and all(size == 1 for size in sizes), sizes


def test_limit_blas_threads_at_run_time() -> None:
    assert all(size == 1 for size in limit_blas_threads())
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
