"""What every transaction shares, and the services the layer provides to them."""

from __future__ import annotations

import enum
from typing import Protocol

from callboard.sip.message import SipRequest, SipResponse
from callboard.sip.transaction_events import TxEvent


class TxState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"  # RFC 6026: an INVITE transaction after a 2xx
    TERMINATED = "terminated"


class TransactionHost(Protocol):
    """The layer, as seen by a transaction: timers, the wire and the transaction tables."""

    t1: float
    t2: float
    t4: float

    def send(
        self, message: SipRequest | SipResponse, dest: tuple[str, int], transport: str
    ) -> None: ...

    def schedule(self, tx: Transaction, name: str, when: float) -> None: ...

    def cancel_timer(self, tx: Transaction, name: str) -> None: ...

    def remove(self, tx: Transaction) -> None: ...

    def start_cancel(
        self, cancel: SipRequest, dest: tuple[str, int], transport: str, now: float
    ) -> None: ...


class Transaction:
    """`peer` is where requests go (client) or where the request came from (server)."""

    def __init__(
        self,
        host: TransactionHost,
        key: str,
        request: SipRequest,
        peer: tuple[str, int],
        transport: str,
    ) -> None:
        self.host = host
        self.key = key
        self.request = request
        self.peer = peer
        self.transport = transport
        self.reliable = transport != "udp"  # no retransmissions over TCP (RFC 3261 17)
        self.state = TxState.TERMINATED
        self.timers: dict[str, int] = {}

    def send(self, message: SipRequest | SipResponse) -> None:
        self.host.send(message, self.peer, self.transport)

    def start_timer(self, name: str, delay: float, now: float) -> None:
        self.host.schedule(self, name, now + delay)

    def stop_timer(self, name: str) -> None:
        self.host.cancel_timer(self, name)

    def terminate(self) -> None:
        self.state = TxState.TERMINATED
        self.host.remove(self)

    def wait_then_terminate(self, name: str, delay: float, now: float) -> None:
        """Linger to absorb retransmissions (Timers D, I, J, K); reliable transports need not."""
        if delay <= 0:
            self.terminate()
        else:
            self.start_timer(name, delay, now)

    def on_timer(self, name: str, now: float) -> list[TxEvent]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key} {self.state.value}>"
