"""What the transaction layer hands out: messages to send and events for the TU."""

from __future__ import annotations

from dataclasses import dataclass

from callboard.sip.message import SipRequest, SipResponse


@dataclass(frozen=True)
class Outgoing:
    message: SipRequest | SipResponse
    dest: tuple[str, int]
    transport: str  # "udp" | "tcp"


@dataclass(frozen=True)
class RequestReceived:
    """A new request. `tx_key` is None for an ACK to a 2xx (it has no transaction); for a
    CANCEL it is the key of the INVITE server transaction that was cancelled."""

    request: SipRequest
    source: tuple[str, int]
    transport: str
    tx_key: str | None


@dataclass(frozen=True)
class ResponseReceived:
    response: SipResponse
    tx_key: str


@dataclass(frozen=True)
class TransactionTimeout:
    tx_key: str
    request: SipRequest
    kind: str  # "no_response" (Timer B/F) | "no_ack" (Timer H, or no ACK for a 2xx)


@dataclass(frozen=True)
class TransportFailure:
    tx_key: str
    request: SipRequest


TxEvent = RequestReceived | ResponseReceived | TransactionTimeout | TransportFailure
