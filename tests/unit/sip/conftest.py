"""Call-layer tests are deterministic: the glare back-off draws from `random`, so each test
starts from the same seed (a test that wants several draws seeds them itself)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _seeded_random() -> Iterator[None]:
    state = random.getstate()
    random.seed(1729)
    yield
    random.setstate(state)
