"""Keep NumPy's BLAS on the calling thread (see callboard/__init__.py for why)."""

from __future__ import annotations

import logging

from threadpoolctl import threadpool_info, threadpool_limits

log = logging.getLogger(__name__)


def limit_blas_threads() -> list[int]:
    """Limit every loaded BLAS pool to one thread; returns the pools' sizes afterwards."""
    threadpool_limits(limits=1, user_api="blas")
    sizes = [int(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "blas"]
    log.debug("BLAS thread pools: %s", sizes)
    return sizes
