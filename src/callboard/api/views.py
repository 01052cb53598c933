"""Domain objects as the API shows them: the JSON bodies of legs and rooms."""

from __future__ import annotations

from typing import Any

from callboard.core.leg import Leg, LegType
from callboard.core.room import Room


def leg_view(leg: Leg, instance_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "instance_id": instance_id,
        "id": leg.id,
        "type": leg.type.value,
        "state": leg.state.value,
        "room_id": leg.room_id,
        "muted": leg.muted,
        "deaf": leg.deaf,
        "accept_dtmf": leg.accept_dtmf,
        "held": leg.held,
    }
    if leg.type is LegType.SIP_INBOUND:
        data["sip_headers"] = dict(leg.sip_headers or {})
    if leg.app_id:
        data["app_id"] = leg.app_id
    return data


def room_view(room: Room, instance_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "instance_id": instance_id,
        "id": room.id,
        "sample_rate": room.sample_rate,
        "participants": [leg_view(leg, instance_id) for leg in room.legs.values()],
        "ws_participants": sorted(room.ws_participants),
    }
    if room.app_id:
        data["app_id"] = room.app_id
    return data
