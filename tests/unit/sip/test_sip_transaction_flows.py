"""Two transaction layers talking through a simulated lossy network: a whole call survives
lost packets, every event is delivered once, and nothing leaks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from callboard.sip.dialog import Dialog
from callboard.sip.header_map import Headers
from callboard.sip.headers import NameAddr, Via
from callboard.sip.message import (
    SipRequest,
    SipResponse,
    generate_branch,
    make_response,
    parse_message,
)
from callboard.sip.transaction import (
    Outgoing,
    RequestReceived,
    ResponseReceived,
    TransactionLayer,
    TransactionTimeout,
    TxEvent,
)
from callboard.sip.uri import SipUri

UAC_ADDR = ("10.0.0.1", 5060)
UAS_ADDR = ("10.0.0.2", 5060)
LATENCY = 0.02


@dataclass
class Peer:
    addr: tuple[str, int]
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    log: list[TxEvent] = field(default_factory=list)


class Network:
    def __init__(self, drop: Callable[[Outgoing, int], bool]) -> None:
        self.uac = Peer(UAC_ADDR)
        self.uas = Peer(UAS_ADDR)
        self.now = 0.0
        self.drop = drop
        self.in_flight: list[tuple[float, Peer, bytes, tuple[str, int]]] = []
        self.seen: dict[str, int] = {}

    def pump(self, peer: Peer) -> None:
        for out in peer.layer.pop_outgoing():
            label = out.message.start_line()
            self.seen[label] = self.seen.get(label, 0) + 1
            if self.drop(out, self.seen[label]):
                continue
            target = self.uas if out.dest == UAS_ADDR else self.uac
            self.in_flight.append((self.now + LATENCY, target, out.message.to_bytes(), peer.addr))

    def run(self, handler: Callable[[Network, Peer, TxEvent], None], until: float) -> None:
        while True:
            deadlines = [t for t, *_ in self.in_flight]
            for peer in (self.uac, self.uas):
                d = peer.layer.next_deadline()
                if d is not None:
                    deadlines.append(d)
            if not deadlines or min(deadlines) > until:
                return
            self.now = min(deadlines)
            due = [m for m in self.in_flight if m[0] <= self.now]
            self.in_flight = [m for m in self.in_flight if m[0] > self.now]
            for _, target, data, source in due:
                events = target.layer.receive(parse_message(data), source, "udp", self.now)
                self.dispatch(handler, target, events)
            for peer in (self.uac, self.uas):
                self.dispatch(handler, peer, peer.layer.handle_timers(self.now))

    def dispatch(
        self, handler: Callable[[Network, Peer, TxEvent], None], peer: Peer, events: list[TxEvent]
    ) -> None:
        for event in events:
            peer.log.append(event)
            handler(self, peer, event)
        self.pump(peer)


def via(addr: tuple[str, int]) -> Via:
    return Via("UDP", addr[0], addr[1], {"branch": generate_branch()})


def make_invite() -> SipRequest:
    headers = Headers(
        [
            ("Via", str(via(UAC_ADDR))),
            ("Max-Forwards", "70"),
            ("From", "<sip:alice@10.0.0.1>;tag=a1"),
            ("To", "<sip:bob@10.0.0.2>"),
            ("Call-ID", "flow-1"),
            ("CSeq", "1 INVITE"),
            ("Contact", "<sip:alice@10.0.0.1:5060>"),
        ]
    )
    return SipRequest("INVITE", SipUri.parse("sip:bob@10.0.0.2"), headers)


class CallScript:
    """UAC: INVITE, ACK every 2xx, then BYE. UAS: 180 + 200, then 200 for the BYE."""

    def __init__(self) -> None:
        self.invite = make_invite()
        self.dialog: Dialog | None = None
        self.bye_key: str | None = None

    def __call__(self, net: Network, peer: Peer, event: TxEvent) -> None:
        if peer is net.uas and isinstance(event, RequestReceived):
            req = event.request
            if req.method == "INVITE":
                contact = [("Contact", "<sip:bob@10.0.0.2:5060>")]
                peer.layer.send_response(make_response(req, 180, to_tag="b1"), net.now)
                peer.layer.send_response(
                    make_response(req, 200, to_tag="b1", extra_headers=contact), net.now
                )
            elif req.method == "BYE":
                peer.layer.send_response(make_response(req, 200), net.now)
        elif peer is net.uac and isinstance(event, ResponseReceived):
            resp = event.response
            if resp.cseq[1] == "INVITE" and resp.status == 200:
                if self.dialog is None:
                    self.dialog = Dialog.from_uac_response(self.invite, resp)
                ack = self.dialog.create_ack(1, via=via(UAC_ADDR))
                host, port, transport = self.dialog.next_hop()
                peer.layer.send_stateless(ack, (host, port), transport)
                if self.bye_key is None:
                    bye = self.dialog.create_request("BYE", via=via(UAC_ADDR))
                    self.bye_key = peer.layer.send_request(bye, (host, port), transport, net.now)


def run_call(drop: Callable[[Outgoing, int], bool]) -> tuple[Network, CallScript]:
    net = Network(drop)
    script = CallScript()
    net.uac.layer.send_request(script.invite, UAS_ADDR, "udp", 0.0)
    net.pump(net.uac)
    net.run(script, until=300)
    return net, script


def requests_seen(log: list[TxEvent]) -> list[str]:
    return [e.request.method for e in log if isinstance(e, RequestReceived)]


def responses_seen(log: list[TxEvent]) -> list[str]:
    return [
        f"{e.response.status} {e.response.cseq[1]}" for e in log if isinstance(e, ResponseReceived)
    ]


def test_clean_call() -> None:
    net, _ = run_call(lambda out, nth: False)
    assert requests_seen(net.uas.log) == ["INVITE", "ACK", "BYE"]
    assert responses_seen(net.uac.log) == [
        "100 INVITE",
        "180 INVITE",
        "200 INVITE",
        "200 BYE",
    ]
    assert len(net.uac.layer) == len(net.uas.layer) == 0


def test_call_survives_lost_packets() -> None:
    def lossy(out: Outgoing, nth: int) -> bool:
        msg = out.message
        first_invite = isinstance(msg, SipRequest) and msg.method == "INVITE" and nth == 1
        first_two_oks = (
            isinstance(msg, SipResponse)
            and msg.status == 200
            and msg.cseq[1] == "INVITE"
            and nth <= 2
        )
        first_bye = isinstance(msg, SipRequest) and msg.method == "BYE" and nth <= 2
        return first_invite or first_two_oks or first_bye

    net, _ = run_call(lossy)
    # each request reaches the UAS TU exactly once despite the retransmissions
    assert requests_seen(net.uas.log) == ["INVITE", "ACK", "BYE"]
    uac = responses_seen(net.uac.log)
    assert uac.count("200 BYE") == 1 and "200 INVITE" in uac
    assert net.seen["INVITE sip:bob@10.0.0.2 SIP/2.0"] == 2
    assert net.seen["SIP/2.0 200 OK"] >= 3
    assert not [e for p in (net.uac, net.uas) for e in p.log if isinstance(e, TransactionTimeout)]
    assert len(net.uac.layer) == len(net.uas.layer) == 0


def test_everything_lost_times_out_cleanly() -> None:
    net, _ = run_call(lambda out, nth: isinstance(out.message, SipRequest))
    timeouts = [e for e in net.uac.log if isinstance(e, TransactionTimeout)]
    assert [t.kind for t in timeouts] == ["no_response"]
    assert len(net.uac.layer) == len(net.uas.layer) == 0


def test_lost_acks_time_out_the_uas() -> None:
    net, _ = run_call(
        lambda out, nth: isinstance(out.message, SipRequest) and out.message.method == "ACK"
    )
    kinds = [e.kind for e in net.uas.log if isinstance(e, TransactionTimeout)]
    assert kinds == ["no_ack"]
    assert len(net.uac.layer) == len(net.uas.layer) == 0


def test_contact_used_as_remote_target() -> None:
    _, script = run_call(lambda out, nth: False)
    assert script.dialog is not None
    assert str(script.dialog.remote_target) == "sip:bob@10.0.0.2:5060"
    assert NameAddr.parse(str(script.dialog.remote_uri)).tag == "b1"
