"""A room: an N-party conference whose participants hear everyone but themselves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from callboard.core.errors import BadRequest
from callboard.core.playback import Playbacks
from callboard.events.webhooks import WebhookTarget
from callboard.media.engine import DEFAULT_MIX_RATE, MIX_RATES

if TYPE_CHECKING:
    from callboard.core.leg import Leg


def check_sample_rate(rate: int | None, default: int) -> int:
    """The mixing rate for a room asked to mix at `rate` (None: the server's default)."""
    if rate is None:
        return default
    if rate not in MIX_RATES:
        raise BadRequest(f"sample_rate must be 8000, 16000 or 48000, not {rate}")
    return rate


class Room:
    def __init__(
        self,
        room_id: str,
        *,
        webhook: WebhookTarget | None = None,
        app_id: str | None = None,
        auto_created: bool = False,
        sample_rate: int = DEFAULT_MIX_RATE,
    ) -> None:
        self.id = room_id
        self.sample_rate = sample_rate  # the mixer's rate (8, 16 or 48 kHz)
        self.webhook = webhook
        self.app_id = app_id
        # Rooms made implicitly for a leg go away with their last participant.
        self.auto_created = auto_created
        self.dropping = False  # being torn down (its events still go to its webhook)
        self.legs: dict[str, Leg] = {}
        self.ws_participants: set[str] = set()
        self.playbacks = Playbacks()  # heard by every participant

    @property
    def empty(self) -> bool:
        return not self.legs and not self.ws_participants
