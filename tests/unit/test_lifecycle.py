"""The lifecycle hub: features register their own cleanups for a leg or room."""

from __future__ import annotations

import asyncio

import pytest

from callboard.core.lifecycle import Lifecycle


def test_leg_cleanups_run_once_newest_first_and_survive_a_failing_one() -> None:
    hub = Lifecycle()
    ran: list[str] = []
    hub.on_leg_ended("a", lambda: ran.append("playbacks"))

    def broken() -> None:
        raise RuntimeError("feature bug")

    hub.on_leg_ended("a", broken)
    hub.on_leg_ended("a", lambda: ran.append("recording"))
    hub.on_leg_ended("b", lambda: ran.append("other leg"))
    hub.leg_ended("a")
    assert ran == ["recording", "playbacks"]
    hub.leg_ended("a")  # a second end runs nothing
    assert ran == ["recording", "playbacks"]
    assert hub.counts() == (1, 0)


def test_a_cancelled_registration_does_not_run() -> None:
    hub = Lifecycle()
    ran: list[str] = []
    registration = hub.on_leg_ended("a", lambda: ran.append("stopped by the API first"))
    registration.cancel()
    registration.cancel()  # idempotent
    hub.leg_ended("a")
    assert ran == [] and hub.counts() == (0, 0)


async def test_room_cleanups_hand_back_what_the_last_event_waits_for() -> None:
    hub = Lifecycle()
    finished = asyncio.get_running_loop().create_future()
    hub.on_room_dropped("r", lambda: None)
    hub.on_room_dropped("r", lambda: finished)
    pending = hub.room_dropped("r")
    assert pending == [finished]
    assert hub.room_dropped("r") == []


def test_cancelling_during_the_run_is_harmless() -> None:
    hub = Lifecycle()
    ran: list[str] = []
    first = hub.on_room_dropped("r", lambda: ran.append("first"))
    hub.on_room_dropped("r", lambda: (ran.append("second"), first.cancel()))
    hub.room_dropped("r")
    assert ran == ["second", "first"]


@pytest.mark.parametrize("leg_id", ["x", ""])
def test_unknown_ids_are_fine(leg_id: str) -> None:
    hub = Lifecycle()
    hub.leg_ended(leg_id)
    assert hub.room_dropped(leg_id) == []
