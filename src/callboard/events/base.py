"""The shape every typed event shares, and the JSON keys it is sent under.

An event class says what happened (`type` and its own fields). Which leg or room it is about,
and that owner's `app_id`, are added by the owner's publish helper (CallService for legs,
RoomManager for rooms), which knows them: code that only knows "my leg or room" (a playback, a
recording) can then publish without knowing which. A class declares in `scope` which of
`leg_id` / `room_id` its events carry.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

# Keys of the envelope the bus writes itself; no event field may take one.
ENVELOPE_KEYS = ("type", "event_id", "timestamp", "instance_id", "app_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One event. A field left None is not sent (optional fields are omitted, not null)."""

    type: ClassVar[str]
    # The ids the owner's publish helper adds: ("leg_id",), ("room_id",), or both for
    # events that are about either a leg or a room (then exactly one of them is given).
    scope: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class LegEvent(Event):
    """About one leg: published through CallService.publish_leg_event."""

    scope = ("leg_id",)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomEvent(Event):
    """About one room: published through RoomManager.publish."""

    scope = ("room_id",)


@dataclass(frozen=True, slots=True, kw_only=True)
class LegOrRoomEvent(Event):
    """About a leg or a room (playback, recording): published by whichever owns it."""

    scope = ("leg_id", "room_id")


def json_key(attribute: str) -> str:
    # A field that would be a Python keyword ("from") is spelt with a trailing underscore.
    return attribute[:-1] if attribute.endswith("_") else attribute


PayloadKeys = tuple[tuple[str, str], ...]
_payload_keys: dict[type[Event], PayloadKeys] = {}


def payload_keys(cls: type[Event]) -> PayloadKeys:
    """(attribute, JSON key) of each field of `cls`, worked out once per class so that
    publishing never reflects over the dataclass. TypeError if a key would overwrite one the
    bus or the publish helper writes."""
    keys = _payload_keys.get(cls)
    if keys is None:
        keys = tuple((f.name, json_key(f.name)) for f in fields(cls))
        taken = set(ENVELOPE_KEYS) | set(cls.scope)
        clashes = sorted(key for _, key in keys if key in taken)
        if clashes:
            raise TypeError(f"{cls.__name__}: field(s) {clashes} would overwrite envelope keys")
        _payload_keys[cls] = keys
    return keys


def event_keys(cls: type[Event]) -> tuple[str, ...]:
    """Every key an event of `cls` may carry besides the envelope: its scope, then its own
    fields (what the documentation lists for the type)."""
    return cls.scope + tuple(key for _, key in payload_keys(cls))
