"""The vocabulary shared by the call layer and its users: call states, options, settings,
and the disconnect reasons that SIP final responses map to (API-NOTES)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from callboard.sip.uri import SipUri

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
ALL_CODECS = ("PCMU", "PCMA", "G722", "opus")

# Final responses to an INVITE we sent, mapped to the leg's disconnect reason.
FAILURE_REASONS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    407: "unauthorized",
    408: "timeout",
    480: "unavailable",
    486: "busy",
    487: "cancelled",
    488: "not_acceptable",
    503: "service_unavailable",
    600: "busy",
    603: "declined",
}


def failure_reason(status: int) -> str:
    return FAILURE_REASONS.get(status, f"sip_{status}")


class CallState(enum.Enum):
    CALLING = "calling"  # outbound INVITE sent, no final response
    INCOMING = "incoming"  # inbound INVITE received, not answered
    EARLY = "early"  # 183 with SDP sent or received
    CONFIRMED = "confirmed"  # 2xx sent or received
    ENDED = "ended"


@dataclass(frozen=True)
class OutboundOptions:
    uri: SipUri
    from_user: str | None = None
    privacy: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    codecs: tuple[str, ...] = ALL_CODECS
    auth_username: str | None = None
    auth_password: str | None = None


@dataclass(frozen=True)
class TimerSettings:
    """RFC 4028 settings: the interval we ask for and the smallest we accept."""

    session_expires: int = 1800
    min_se: int = 90


@dataclass(frozen=True)
class LocalIdentity:
    """How this user agent names itself in Via, Contact and User-Agent."""

    advertised_ip: str
    port: int
    user_agent: str = "callboard"
    timers: TimerSettings = TimerSettings()


class SipCallError(Exception):
    """A call operation that the call's state does not allow."""
