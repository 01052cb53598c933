"""What an INVITE session hands out: effects for the wire and typed events for the TU.

A session never sends anything itself. It queues `Send*`/`CancelInvite` effects, which the
router turns into transaction-layer calls, and `CallEvent`s, which reach the core's leg. Both go
into one ordered queue, so "ACK sent, then Answered" is never reordered.
"""

from __future__ import annotations

from dataclasses import dataclass

from callboard.sdp.negotiation import NegotiatedMedia
from callboard.sip.message import SipRequest, SipResponse

# ---- effects: what the session wants put on the wire -----------------------------------------


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Start a client transaction. `host` may be a name the router resolved earlier."""

    request: SipRequest
    host: str
    port: int
    transport: str
    tx_key: str


@dataclass(frozen=True, slots=True)
class SendResponse:
    response: SipResponse


@dataclass(frozen=True, slots=True)
class SendStateless:
    """An ACK for a 2xx: it has no transaction of its own (RFC 3261 17.1.1.3)."""

    message: SipRequest
    host: str
    port: int
    transport: str


@dataclass(frozen=True, slots=True)
class CancelInvite:
    """CANCEL the INVITE client transaction `tx_key` (now, or at its first provisional)."""

    tx_key: str


Effect = SendRequest | SendResponse | SendStateless | CancelInvite

# ---- events: what happened to the call ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ringing:
    pass


@dataclass(frozen=True, slots=True)
class EarlyMedia:
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class Answered:
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class MediaChanged:
    media: NegotiatedMedia


@dataclass(frozen=True, slots=True)
class HoldChanged:
    held: bool  # held by either side


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    digit: str


@dataclass(frozen=True, slots=True)
class InDialogRequest:
    """An in-dialog request of a method the TU asked to handle (REFER, NOTIFY); the TU answers
    it with `respond()`."""

    request: SipRequest


@dataclass(frozen=True, slots=True)
class RequestAnswered:
    """The final response to an in-dialog request the TU sent with `send_request()`."""

    tx_key: str
    response: SipResponse


@dataclass(frozen=True, slots=True)
class RequestFailed:
    """An in-dialog request the TU sent got no final response, or could not be sent."""

    tx_key: str


@dataclass(frozen=True, slots=True)
class Ended:
    reason: str


CallEvent = (
    Ringing
    | EarlyMedia
    | Answered
    | MediaChanged
    | HoldChanged
    | DtmfReceived
    | InDialogRequest
    | RequestAnswered
    | RequestFailed
    | Ended
)
