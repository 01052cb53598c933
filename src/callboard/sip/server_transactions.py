"""Server transactions: INVITE (RFC 3261 17.2.1 with RFC 6026) and non-INVITE (17.2.2)."""

from __future__ import annotations

import logging

from callboard.sip.identifiers import generate_tag
from callboard.sip.message import SipRequest, SipResponse, make_response
from callboard.sip.transaction_base import Transaction, TransactionHost, TxState
from callboard.sip.transaction_events import RequestReceived, TransactionTimeout, TxEvent

log = logging.getLogger(__name__)


class ServerTransaction(Transaction):
    def __init__(
        self,
        host: TransactionHost,
        key: str,
        request: SipRequest,
        peer: tuple[str, int],
        transport: str,
    ) -> None:
        super().__init__(host, key, request, peer, transport)
        self.last_response: SipResponse | None = None

    def start(self, now: float) -> None:
        raise NotImplementedError

    def on_retransmission(self, now: float) -> None:
        raise NotImplementedError

    def send_response(self, response: SipResponse, now: float) -> None:
        raise NotImplementedError

    def _respond(self, response: SipResponse) -> None:
        self.last_response = response
        self.send(response)

    def _ignore(self, response: SipResponse) -> None:
        log.debug("%r: %d not allowed now, not sent", self, response.status)


class InviteServerTransaction(ServerTransaction):
    def __init__(
        self,
        host: TransactionHost,
        key: str,
        request: SipRequest,
        peer: tuple[str, int],
        transport: str,
    ) -> None:
        super().__init__(host, key, request, peer, transport)
        self._interval_g = host.t1
        self.acked = False
        self._to_tag: str | None = None

    @property
    def to_tag(self) -> str:
        """The tag this UAS uses in To (from its responses, else a fresh one), so that a 487
        after CANCEL matches any earlier provisional response."""
        if self._to_tag is None:
            sent = self.last_response
            tag = sent.to_addr.tag if sent is not None and sent.status > 100 else None
            self._to_tag = tag or generate_tag()
        return self._to_tag

    def start(self, now: float) -> None:
        self.state = TxState.PROCEEDING
        # 100 Trying at once stops the client's INVITE retransmissions (RFC 3261 17.2.1).
        self._respond(make_response(self.request, 100))

    def on_retransmission(self, now: float) -> None:
        # In Accepted the 2xx is retransmitted by its own timer; INVITEs are absorbed (RFC 6026).
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED) and self.last_response:
            self.send(self.last_response)

    def send_response(self, response: SipResponse, now: float) -> None:
        status = response.status
        if self.state is TxState.ACCEPTED and 200 <= status < 300:
            self._respond(response)  # the TU may re-send its 2xx (RFC 6026 7.1)
            return
        if self.state is not TxState.PROCEEDING:
            self._ignore(response)
            return
        self._respond(response)
        if status < 200:
            return
        self._interval_g = self.host.t1
        if status < 300:
            self.state = TxState.ACCEPTED
            if not self.reliable:
                self.start_timer("2xx", self._interval_g, now)
            self.start_timer("L", 64 * self.host.t1, now)
        else:
            self.state = TxState.COMPLETED
            if not self.reliable:
                self.start_timer("G", self._interval_g, now)
            self.start_timer("H", 64 * self.host.t1, now)

    def on_ack(
        self, ack: SipRequest, source: tuple[str, int], transport: str, now: float
    ) -> list[TxEvent]:
        if self.state is TxState.COMPLETED:
            self.state = TxState.CONFIRMED
            self.stop_timer("G")
            self.stop_timer("H")
            self.wait_then_terminate("I", 0 if self.reliable else self.host.t4, now)
        elif self.state is TxState.ACCEPTED and not self.acked:
            # The first ACK for our 2xx ends its retransmission; we stay Accepted until
            # Timer L so that late INVITE retransmissions are still absorbed.
            self.acked = True
            self.stop_timer("2xx")
            return [RequestReceived(ack, source, transport, None)]
        return []

    def on_timer(self, name: str, now: float) -> list[TxEvent]:
        if (name == "G" and self.state is TxState.COMPLETED) or (name == "2xx" and not self.acked):
            if self.last_response is not None:
                self.send(self.last_response)
            self._interval_g = min(2 * self._interval_g, self.host.t2)
            self.start_timer(name, self._interval_g, now)
        elif name == "H" and self.state is TxState.COMPLETED:
            self.terminate()
            return [TransactionTimeout(self.key, self.request, "no_ack")]
        elif name == "L":
            self.terminate()
            if not self.acked:
                return [TransactionTimeout(self.key, self.request, "no_ack")]
        elif name == "I":
            self.terminate()
        return []


class NonInviteServerTransaction(ServerTransaction):
    def start(self, now: float) -> None:
        self.state = TxState.TRYING
        # Not in RFC 3261: a TU that never answers must not leak the transaction. The
        # client has given up by Timer F (64*T1) anyway.
        self.start_timer("abandon", 64 * self.host.t1, now)

    def on_retransmission(self, now: float) -> None:
        if self.last_response is not None:
            self.send(self.last_response)

    def send_response(self, response: SipResponse, now: float) -> None:
        if self.state not in (TxState.TRYING, TxState.PROCEEDING):
            self._ignore(response)
            return
        self._respond(response)
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return
        self.state = TxState.COMPLETED
        self.stop_timer("abandon")
        self.wait_then_terminate("J", 0 if self.reliable else 64 * self.host.t1, now)

    def on_timer(self, name: str, now: float) -> list[TxEvent]:
        if name == "abandon" and self.state in (TxState.TRYING, TxState.PROCEEDING):
            log.debug("%r: no final response from the TU, dropped", self)
            self.terminate()
        elif name == "J":
            self.terminate()
        return []
