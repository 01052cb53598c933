"""Callboard: a programmable voice server."""

import os

# The media clock does its matrix products (resampler banks, the mixer) on one thread, a few
# hundred microseconds a tick. OpenBLAS' worker threads only add wake-ups and contention there:
# started without this, a 100-leg server used four times the CPU and its clock ran up to 97 ms
# late. It must be set before NumPy loads, and importing any callboard module does that first;
# server start-up also limits the pools at run time (threads.limit_blas_threads) in case NumPy
# was loaded before us.
for _name in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"
