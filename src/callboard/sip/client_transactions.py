"""Client transactions: INVITE (RFC 3261 17.1.1 with RFC 6026) and non-INVITE (17.1.2)."""

from __future__ import annotations

from callboard.sip.derived_requests import build_cancel, build_non_2xx_ack
from callboard.sip.message import SipRequest, SipResponse
from callboard.sip.transaction_base import Transaction, TransactionHost, TxState
from callboard.sip.transaction_events import ResponseReceived, TransactionTimeout, TxEvent

_ACTIVE = (TxState.CALLING, TxState.TRYING, TxState.PROCEEDING)


class ClientTransaction(Transaction):
    def start(self, now: float) -> None:
        raise NotImplementedError

    def on_response(self, response: SipResponse, now: float) -> list[TxEvent]:
        raise NotImplementedError

    @property
    def awaiting_final(self) -> bool:
        return self.state in _ACTIVE

    def _timeout(self) -> list[TxEvent]:
        self.terminate()
        return [TransactionTimeout(self.key, self.request, "no_response")]


class InviteClientTransaction(ClientTransaction):
    def __init__(
        self,
        host: TransactionHost,
        key: str,
        request: SipRequest,
        peer: tuple[str, int],
        transport: str,
    ) -> None:
        super().__init__(host, key, request, peer, transport)
        self._interval_a = host.t1
        self._ack: SipRequest | None = None
        self.cancel: SipRequest | None = None  # built once the TU asks to cancel
        self.cancel_sent = False

    def start(self, now: float) -> None:
        self.state = TxState.CALLING
        self.send(self.request)
        if not self.reliable:
            self.start_timer("A", self._interval_a, now)
        self.start_timer("B", 64 * self.host.t1, now)

    def request_cancel(self, now: float) -> SipRequest | None:
        """Remember the CANCEL; it goes out now if a provisional response arrived, otherwise
        with the first one (RFC 3261 9.1). None once the INVITE got a final response."""
        if not self.awaiting_final:
            return None
        if self.cancel is None:
            self.cancel = build_cancel(self.request)
            if self.state is TxState.PROCEEDING:
                self._send_cancel(now)
        return self.cancel

    def _send_cancel(self, now: float) -> None:
        assert self.cancel is not None
        self.cancel_sent = True
        self.host.start_cancel(self.cancel, self.peer, self.transport, now)
        # RFC 3261 9.1: without a final response 64*T1 after the CANCEL, give the INVITE up.
        self.start_timer("cancel_guard", 64 * self.host.t1, now)

    def on_response(self, response: SipResponse, now: float) -> list[TxEvent]:
        status = response.status
        event = ResponseReceived(response, self.key)
        if self.awaiting_final:
            if status < 200:
                if self.state is TxState.CALLING:
                    self.state = TxState.PROCEEDING
                    self.stop_timer("A")
                    self.stop_timer("B")
                    if self.cancel is not None:
                        self._send_cancel(now)
                return [event]
            for name in ("A", "B", "cancel_guard"):
                self.stop_timer(name)
            if status < 300:
                # RFC 6026 Accepted: later 2xx (retransmissions, forks) still reach the TU.
                self.state = TxState.ACCEPTED
                self.start_timer("M", 64 * self.host.t1, now)
                return [event]
            self.state = TxState.COMPLETED
            self._ack = build_non_2xx_ack(self.request, response)
            self.send(self._ack)
            self.wait_then_terminate("D", 0 if self.reliable else 32.0, now)
            return [event]
        if self.state is TxState.ACCEPTED and 200 <= status < 300:
            return [event]
        if self.state is TxState.COMPLETED and status >= 300 and self._ack is not None:
            self.send(self._ack)  # our ACK was lost: the final response is retransmitted
        return []

    def on_timer(self, name: str, now: float) -> list[TxEvent]:
        if name == "A" and self.state is TxState.CALLING:
            self.send(self.request)
            self._interval_a *= 2  # no T2 cap for INVITE (RFC 3261 17.1.1.2)
            self.start_timer("A", self._interval_a, now)
        elif name in ("B", "cancel_guard") and self.awaiting_final:
            return self._timeout()
        elif name in ("D", "M"):
            self.terminate()
        return []


class NonInviteClientTransaction(ClientTransaction):
    def __init__(
        self,
        host: TransactionHost,
        key: str,
        request: SipRequest,
        peer: tuple[str, int],
        transport: str,
    ) -> None:
        super().__init__(host, key, request, peer, transport)
        self._interval_e = host.t1

    def start(self, now: float) -> None:
        self.state = TxState.TRYING
        self.send(self.request)
        if not self.reliable:
            self.start_timer("E", self._interval_e, now)
        self.start_timer("F", 64 * self.host.t1, now)

    def on_response(self, response: SipResponse, now: float) -> list[TxEvent]:
        if not self.awaiting_final:
            return []  # retransmitted final response: absorbed in Completed
        if response.status < 200:
            self.state = TxState.PROCEEDING
            return [ResponseReceived(response, self.key)]
        self.state = TxState.COMPLETED
        self.stop_timer("E")
        self.stop_timer("F")
        self.wait_then_terminate("K", 0 if self.reliable else self.host.t4, now)
        return [ResponseReceived(response, self.key)]

    def on_timer(self, name: str, now: float) -> list[TxEvent]:
        if name == "E" and self.awaiting_final:
            self.send(self.request)
            if self.state is TxState.PROCEEDING:
                self._interval_e = self.host.t2
            else:
                self._interval_e = min(2 * self._interval_e, self.host.t2)
            self.start_timer("E", self._interval_e, now)
        elif name == "F" and self.awaiting_final:
            return self._timeout()
        elif name == "K":
            self.terminate()
        return []
