"""The sans-IO transaction layer (RFC 3261 section 17, RFC 6026).

Feed it messages and the time; take back events for the TU (`receive`, `handle_timers`) and
messages for the wire (`pop_outgoing`). It never reads a clock or touches a socket.

Transaction keys are strings: "c:<branch>:<METHOD>" for client transactions and
"s:<branch>:<sent-by host>:<port>:<METHOD>" for server transactions (an ACK or CANCEL finds
its INVITE by swapping the method in). Requests from RFC 2543 peers, whose branch lacks the
magic cookie, get "s2543:..." keys built from Call-ID, From tag, CSeq and sent-by.
"""

from __future__ import annotations

import logging

from callboard.sip.client_transactions import (
    ClientTransaction,
    InviteClientTransaction,
    NonInviteClientTransaction,
)
from callboard.sip.errors import SipParseError
from callboard.sip.identifiers import MAGIC_COOKIE, generate_tag
from callboard.sip.message import SipMessage, SipRequest, SipResponse, make_response
from callboard.sip.server_transactions import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
)
from callboard.sip.timer_queue import TimerQueue
from callboard.sip.transaction_base import Transaction, TxState
from callboard.sip.transaction_events import (
    Outgoing,
    RequestReceived,
    ResponseReceived,
    TransactionTimeout,
    TransportFailure,
    TxEvent,
)

__all__ = [
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "TransactionLayer",
    "TransactionTimeout",
    "TransportFailure",
    "TxEvent",
    "client_key",
    "is_client_key",
    "server_key",
]

log = logging.getLogger(__name__)


def client_key(branch: str, method: str) -> str:
    return f"c:{branch}:{method}"


def is_client_key(key: str, method: str) -> bool:
    """Whether `key` is a client_key of a `method` transaction."""
    return key.startswith("c:") and key.endswith(f":{method}")


def server_key(message: SipMessage, method: str) -> str:
    """RFC 3261 17.2.3 matching key of the server transaction `message` belongs to."""
    via = message.top_via
    host, port = via.sent_by
    sent_by = f"{host.lower()}:{port}"
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        return f"s:{branch}:{sent_by}:{method}"
    from_tag = message.from_addr.tag or ""
    return f"s2543:{message.call_id}:{from_tag}:{message.cseq[0]}:{sent_by}:{branch or ''}:{method}"


class TransactionLayer:
    def __init__(self, *, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0) -> None:
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self._clients: dict[str, ClientTransaction] = {}
        self._servers: dict[str, ServerTransaction] = {}
        # INVITE server transactions in Accepted, by (Call-ID, CSeq number): the ACK for a 2xx
        # is a new transaction with its own branch, so it is matched by dialog instead.
        self._accepted: dict[tuple[str, int], InviteServerTransaction] = {}
        self._timers = TimerQueue()
        self._outgoing: list[Outgoing] = []

    # --- input from the wire -------------------------------------------------------------

    def receive(
        self,
        message: SipRequest | SipResponse,
        source: tuple[str, int],
        transport: str,
        now: float,
    ) -> list[TxEvent]:
        try:
            if isinstance(message, SipResponse):
                return self._receive_response(message, now)
            return self._receive_request(message, source, transport.lower(), now)
        except SipParseError as exc:  # only for messages that did not come from parse_message
            log.debug("dropping unmatchable message: %s", exc)
            return []

    def _receive_response(self, response: SipResponse, now: float) -> list[TxEvent]:
        branch = response.top_via.branch
        tx = self._clients.get(client_key(branch, response.cseq[1])) if branch else None
        if tx is None:
            log.debug("stray response %d %s dropped", response.status, response.call_id)
            return []
        return tx.on_response(response, now)

    def _receive_request(
        self, request: SipRequest, source: tuple[str, int], transport: str, now: float
    ) -> list[TxEvent]:
        method = request.method
        if method == "ACK":
            return self._receive_ack(request, source, transport, now)
        key = server_key(request, method)
        existing = self._servers.get(key)
        if existing is not None:
            existing.on_retransmission(now)
            return []
        if method == "CANCEL":
            return self._receive_cancel(request, key, source, transport, now)
        tx: ServerTransaction
        if method == "INVITE":
            tx = InviteServerTransaction(self, key, request, source, transport)
        else:
            tx = NonInviteServerTransaction(self, key, request, source, transport)
        self._servers[key] = tx
        tx.start(now)
        return [RequestReceived(request, source, transport, key)]

    def _receive_ack(
        self, ack: SipRequest, source: tuple[str, int], transport: str, now: float
    ) -> list[TxEvent]:
        tx = self._servers.get(server_key(ack, "INVITE"))
        if not isinstance(tx, InviteServerTransaction):
            tx = self._accepted.get((ack.call_id, ack.cseq[0]))
        if tx is not None:
            return tx.on_ack(ack, source, transport, now)
        # an ACK for a 2xx whose transaction is gone (or was never ours): the TU decides
        return [RequestReceived(ack, source, transport, None)]

    def _receive_cancel(
        self,
        cancel: SipRequest,
        key: str,
        source: tuple[str, int],
        transport: str,
        now: float,
    ) -> list[TxEvent]:
        cancel_tx = NonInviteServerTransaction(self, key, cancel, source, transport)
        self._servers[key] = cancel_tx
        cancel_tx.start(now)
        invite_tx = self._servers.get(server_key(cancel, "INVITE"))
        if not isinstance(invite_tx, InviteServerTransaction):
            cancel_tx.send_response(make_response(cancel, 481, to_tag=generate_tag()), now)
            return []
        to_tag = invite_tx.to_tag
        cancel_tx.send_response(make_response(cancel, 200, to_tag=to_tag), now)
        if invite_tx.state is not TxState.PROCEEDING:
            return []  # already answered finally: the CANCEL has no effect (RFC 3261 9.2)
        invite_tx.send_response(make_response(invite_tx.request, 487, to_tag=to_tag), now)
        return [RequestReceived(cancel, source, transport, invite_tx.key)]

    # --- input from the TU ---------------------------------------------------------------

    def send_request(
        self, request: SipRequest, dest: tuple[str, int], transport: str, now: float
    ) -> str:
        if request.method == "ACK":
            raise ValueError("ACK has no client transaction; use send_stateless")
        branch = request.top_via.branch
        if not branch:
            raise ValueError("the request's top Via has no branch")
        key = client_key(branch, request.cseq[1])
        if key in self._clients:
            raise ValueError(f"a client transaction {key} already exists")
        tx: ClientTransaction
        transport = transport.lower()
        if request.method == "INVITE":
            tx = InviteClientTransaction(self, key, request, dest, transport)
        else:
            tx = NonInviteClientTransaction(self, key, request, dest, transport)
        self._clients[key] = tx
        tx.start(now)
        return key

    def send_response(self, response: SipResponse, now: float) -> None:
        key = server_key(response, response.cseq[1])
        tx = self._servers.get(key)
        if tx is None:
            raise KeyError(key)
        tx.send_response(response, now)
        if isinstance(tx, InviteServerTransaction) and tx.state is TxState.ACCEPTED:
            self._accepted[(response.call_id, response.cseq[0])] = tx

    def has_server_transaction(self, request: SipRequest) -> bool:
        """A retransmission of a request already in a server transaction."""
        method = "INVITE" if request.method == "ACK" else request.method
        try:
            return server_key(request, method) in self._servers
        except SipParseError:
            return False

    def send_stateless(
        self, message: SipRequest | SipResponse, dest: tuple[str, int], transport: str
    ) -> None:
        self.send(message, dest, transport.lower())

    def cancel_request(self, tx_key: str, now: float) -> str | None:
        tx = self._clients.get(tx_key)
        if not isinstance(tx, InviteClientTransaction):
            return None
        cancel = tx.request_cancel(now)
        if cancel is None:
            return None
        return client_key(cancel.top_via.branch or "", "CANCEL")

    def report_transport_error(
        self, dest: tuple[str, int], transport: str, now: float
    ) -> list[TxEvent]:
        transport = transport.lower()
        failed = [
            tx
            for tx in self._clients.values()
            if tx.peer == dest and tx.transport == transport and tx.awaiting_final
        ]
        events: list[TxEvent] = []
        for tx in failed:
            tx.terminate()
            events.append(TransportFailure(tx.key, tx.request))
        return events

    def handle_timers(self, now: float) -> list[TxEvent]:
        events: list[TxEvent] = []
        while (due := self._timers.pop_due(now)) is not None:
            tx, name = due
            assert isinstance(tx, Transaction)
            events += tx.on_timer(name, now)
        return events

    def next_deadline(self) -> float | None:
        return self._timers.next_deadline()

    def pop_outgoing(self) -> list[Outgoing]:
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def __bool__(self) -> bool:
        return True  # an idle layer is still a layer (`layer or default` must not replace it)

    # --- services for the transactions (TransactionHost) ---------------------------------

    def send(
        self, message: SipRequest | SipResponse, dest: tuple[str, int], transport: str
    ) -> None:
        self._outgoing.append(Outgoing(message, dest, transport))

    def schedule(self, tx: Transaction, name: str, when: float) -> None:
        self._timers.schedule(tx, name, when)

    def cancel_timer(self, tx: Transaction, name: str) -> None:
        self._timers.cancel(tx, name)

    def remove(self, tx: Transaction) -> None:
        self._timers.cancel_all(tx)
        if isinstance(tx, ClientTransaction):
            if self._clients.get(tx.key) is tx:
                del self._clients[tx.key]
        elif self._servers.get(tx.key) is tx:
            del self._servers[tx.key]
            if isinstance(tx, InviteServerTransaction):
                ack_key = (tx.request.call_id, tx.request.cseq[0])
                if self._accepted.get(ack_key) is tx:
                    del self._accepted[ack_key]

    def start_cancel(
        self, cancel: SipRequest, dest: tuple[str, int], transport: str, now: float
    ) -> None:
        self.send_request(cancel, dest, transport, now)

    # Exposed for tests and diagnostics.
    def transaction_state(self, tx_key: str) -> TxState | None:
        tx = self._clients.get(tx_key) or self._servers.get(tx_key)
        return tx.state if tx is not None else None
