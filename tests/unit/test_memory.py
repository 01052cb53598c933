"""The idle memory release: glibc's malloc_trim is found and returns without harm."""

from __future__ import annotations

import sys

import pytest

from callboard import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_trim_is_found_on_glibc_and_runs() -> None:
    assert memory._libc is not None
    memory.release_free_memory()
    memory.release_free_memory()  # twice is harmless
