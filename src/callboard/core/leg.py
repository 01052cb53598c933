"""The transport-neutral leg: identity, state, flags, and the rules every leg type shares."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING, Any

from callboard.core.errors import BadRequest, Conflict
from callboard.core.playback import Playbacks
from callboard.events.base import LegEvent, LegOrRoomEvent
from callboard.events.types import (
    DtmfReceived,
    LegDeaf,
    LegMuted,
    LegUndeaf,
    LegUnmuted,
    Quality,
)
from callboard.events.webhooks import WebhookTarget

if TYPE_CHECKING:
    from callboard.core.service import CallService
    from callboard.media.engine import MediaEndpoint


class LegState(enum.StrEnum):
    RINGING = "ringing"
    EARLY_MEDIA = "early_media"
    CONNECTED = "connected"
    HELD = "held"
    HUNG_UP = "hung_up"


class LegType(enum.StrEnum):
    SIP_INBOUND = "sip_inbound"
    SIP_OUTBOUND = "sip_outbound"
    WEBRTC = "webrtc"


DTMF_DIGITS = frozenset("0123456789*#ABCD")


class Leg:
    """A call leg as users see it. Subclasses connect it to a transport (SIP, WebRTC)."""

    def __init__(
        self,
        service: CallService,
        leg_type: LegType,
        *,
        webhook: WebhookTarget | None = None,
        app_id: str | None = None,
        accept_dtmf: bool = True,
    ) -> None:
        self.service = service
        self.id = str(uuid.uuid4())
        self.type = leg_type
        self.state = LegState.RINGING
        self.room_id = ""
        self.pending_room: str | None = None  # joins when its media is up
        self.muted = False
        self.deaf = False
        self.accept_dtmf = accept_dtmf
        self.held = False
        self.sip_headers: dict[str, str] | None = None
        self.webhook = webhook
        self.app_id = app_id
        self.created_at = service.now()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.dtmf_seq = 0
        self.playbacks = Playbacks()

    # ---- views ----

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "type": self.type.value,
            "state": self.state.value,
            "room_id": self.room_id,
            "muted": self.muted,
            "deaf": self.deaf,
            "accept_dtmf": self.accept_dtmf,
            "held": self.held,
        }
        if self.type is LegType.SIP_INBOUND:
            data["sip_headers"] = dict(self.sip_headers or {})
        if self.app_id:
            data["app_id"] = self.app_id
        return data

    @property
    def ended(self) -> bool:
        return self.state is LegState.HUNG_UP

    @property
    def has_media(self) -> bool:
        return self.state in (LegState.EARLY_MEDIA, LegState.CONNECTED, LegState.HELD)

    def endpoint(self) -> MediaEndpoint | None:
        """The media endpoint the clock drives, once media is set up."""
        return None

    # ---- state changes shared by all leg types ----

    def publish(self, event: LegEvent | LegOrRoomEvent) -> None:
        self.service.publish_leg_event(self, event)

    def set_state(self, state: LegState) -> None:
        if self.state is state or self.ended:
            return
        self.state = state
        self.service.metrics.leg_state(self.type.value, state.value)

    def set_muted(self, muted: bool) -> None:
        if self.muted != muted:
            self.muted = muted
            self.service.media_flags_changed(self)
            self.publish(LegMuted() if muted else LegUnmuted())

    def set_deaf(self, deaf: bool) -> None:
        if self.deaf != deaf:
            self.deaf = deaf
            self.service.media_flags_changed(self)
            self.publish(LegDeaf() if deaf else LegUndeaf())

    def dtmf_received(self, digit: str) -> None:
        self.dtmf_seq += 1
        self.publish(DtmfReceived(digit=digit, seq=self.dtmf_seq))
        self.service.rooms.broadcast_dtmf(self, digit)

    def check_digits(self, digits: str) -> str:
        if not digits:
            raise BadRequest("digits must not be empty")
        bad = sorted({c for c in digits if c.upper() not in DTMF_DIGITS})  # as the user wrote
        digits = digits.upper()
        if bad:
            raise BadRequest(f"invalid DTMF digits: {''.join(bad)!r} (allowed: 0-9 * # A-D)")
        return digits

    # ---- operations a transport implements ----

    async def answer(self) -> None:
        raise BadRequest(f"a {self.type.value} leg cannot be answered")

    async def early_media(self) -> None:
        raise BadRequest(f"a {self.type.value} leg cannot send early media")

    def hold(self, on: bool) -> None:
        raise BadRequest("only SIP legs can be held")

    def send_dtmf(self, digits: str) -> None:
        raise Conflict("leg has no media to send DTMF on")

    def hangup(self, reason: str = "api_hangup") -> None:
        raise NotImplementedError

    def quality(self) -> Quality | None:
        """RTP quality for leg.disconnected, or None when no media arrived."""
        return None
