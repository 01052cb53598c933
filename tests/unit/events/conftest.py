"""Fixtures for the events tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.events.webhook_receiver import HttpReceiver


@pytest.fixture
async def receiver() -> AsyncIterator[HttpReceiver]:
    rx = HttpReceiver()
    await rx.start()
    yield rx
    await rx.stop()
