"""The transport-neutral leg: identity, state, flags, and the rules every leg type shares."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING, Protocol

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
    from callboard.media.engine import MediaEndpoint
    from callboard.rtp.stats import RtpStats


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


class LegHost(Protocol):
    """What a leg needs from the service that owns it: the clock, the event bus, and the
    owners of the state a leg's changes affect (media flags on the engine, room DTMF, the
    single end of every leg). Nothing else is reachable from a leg."""

    def now(self) -> float: ...

    def publish_leg_event(self, leg: Leg, event: LegEvent | LegOrRoomEvent) -> object: ...

    def leg_state_changed(self, leg: Leg) -> None: ...

    def media_flags_changed(self, leg: Leg) -> None: ...

    def dtmf_from_leg(self, leg: Leg, digit: str) -> None: ...

    def attach_media(self, leg: Leg) -> None: ...

    def media_ready(self, leg: Leg) -> None: ...

    def hold_changed(self, leg: Leg) -> None: ...

    def leg_finished(self, leg: Leg, reason: str) -> None: ...


class Leg:
    """A call leg as users see it. Subclasses connect it to a transport (SIP, WebRTC)."""

    def __init__(
        self,
        host: LegHost,
        leg_type: LegType,
        *,
        webhook: WebhookTarget | None = None,
        app_id: str | None = None,
        accept_dtmf: bool = True,
    ) -> None:
        self.host = host
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
        self.created_at = host.now()
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.dtmf_seq = 0
        self.playbacks = Playbacks()

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
        self.host.publish_leg_event(self, event)

    def set_state(self, state: LegState) -> None:
        if self.state is state or self.ended:
            return
        self.state = state
        self.host.leg_state_changed(self)

    def set_muted(self, muted: bool) -> None:
        if self.muted != muted:
            self.muted = muted
            self.host.media_flags_changed(self)
            self.publish(LegMuted() if muted else LegUnmuted())

    def set_deaf(self, deaf: bool) -> None:
        if self.deaf != deaf:
            self.deaf = deaf
            self.host.media_flags_changed(self)
            self.publish(LegDeaf() if deaf else LegUndeaf())

    def dtmf_received(self, digit: str) -> None:
        self.dtmf_seq += 1
        self.publish(DtmfReceived(digit=digit, seq=self.dtmf_seq))
        self.host.dtmf_from_leg(self, digit)

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
        """End the leg from our side; it is over (leg.disconnected published) on return,
        whatever the transport still does in the background (a CANCEL, a BYE's answer)."""
        raise NotImplementedError

    def release(self, reason: str) -> None:
        """End the leg now without signalling (its transport is gone or being shut down):
        free what it holds and report the end once."""
        self.host.leg_finished(self, reason)

    def reject(self, status: int, reason: str) -> None:
        """Refuse an unanswered inbound leg with a transport-level status (SIP: the final
        response); `reason` becomes the disconnect reason. Transports without one hang up."""
        self.hangup(reason)

    def timed_out(self, now: float) -> str | None:
        """Checked every second: the disconnect reason if the transport's own timeouts (no
        media, held too long) say the leg should end, else None."""
        return None

    def quality(self) -> Quality | None:
        """Media quality for leg.disconnected, or None when no media arrived. Synchronous: a
        transport whose statistics are async (WebRTC's getStats) keeps a recent copy."""
        return None


def rtp_quality(stats: RtpStats) -> Quality | None:
    """leg.disconnected's quality figures of an RTP-carried leg; None when nothing arrived."""
    if stats.packets_received == 0:
        return None
    return {
        "mos_score": round(stats.mos, 2) if stats.mos is not None else None,
        "rtp_packets_received": stats.packets_received,
        "rtp_packets_lost": stats.packets_lost,
        "rtp_jitter_ms": round(stats.jitter_ms, 2),
    }
