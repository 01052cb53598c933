"""Sample SIP messages and builders shared by the SIP unit tests."""

from __future__ import annotations

from callboard.sip.header_map import Headers
from callboard.sip.message import SipRequest, SipResponse, make_response
from callboard.sip.transaction import Outgoing, TransactionLayer, TxEvent

SDP = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
)


def with_length(head: str, body: bytes = b"") -> bytes:
    """Wire bytes for `head` (CRLF lines, no Content-Length) plus a correct Content-Length."""
    lines = head.strip("\n").split("\n")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


SIPP_INVITE = with_length(
    """INVITE sip:service@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4181-1-0
From: sipp <sip:sipp@127.0.0.1:5061>;tag=4181SIPpTag001
To: service <sip:service@127.0.0.1:5060>
Call-ID: 1-4181@127.0.0.1
CSeq: 1 INVITE
Contact: sip:sipp@127.0.0.1:5061
Max-Forwards: 70
Subject: Performance Test
Content-Type: application/sdp""",
    SDP,
)

BARESIP_INVITE = with_length(
    """INVITE sip:callboard@127.0.0.1:5060;transport=udp SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:35000;branch=z9hG4bK9f1a2b3c4d;rport
Contact: <sip:alice-0x55d1@127.0.0.1:35000;transport=udp>;+sip.instance="<urn:uuid:1-2-3>"
Max-Forwards: 70
To: <sip:callboard@127.0.0.1:5060;transport=udp>
From: "Alice \\"Al\\" Smith" <sip:alice@127.0.0.1>;tag=9c8b7a6d5e
Call-ID: 2f3e4d5c6b7a8990
CSeq: 11209 INVITE
User-Agent: baresip v3.10.1 (x86_64/Linux)
Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER
Supported: replaces,norefersub,100rel
Content-Type: application/sdp""",
    SDP,
)

RINGING_RESPONSE = with_length(
    """SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKa1;received=192.0.2.7;rport=5062, VIA2
Record-Route: <sip:proxy.example.com;lr>
From: <sip:a@example.com>;tag=abc
To: <sip:b@example.com>;tag=xyz
Call-ID: call-1@10.0.0.2
CSeq: 7 INVITE
Contact: <sip:b@192.0.2.9:5070>""".replace("VIA2", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1")
)


def request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKtest1",
    call_id: str = "call-1@test",
    cseq: int = 1,
    via_host: str = "10.0.0.1",
    via_port: int = 5060,
    transport: str = "UDP",
    from_tag: str = "from1",
    to_tag: str | None = None,
    routes: tuple[str, ...] = (),
) -> SipRequest:
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {via_host}:{via_port};branch={branch}"),
            ("Max-Forwards", "70"),
            *(("Route", route) for route in routes),
            ("From", f'"Alice" <sip:alice@example.com>;tag={from_tag}'),
            ("To", to),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:alice@{via_host}:{via_port}>"),
        ]
    )
    return SipRequest(method, "sip:bob@example.com", headers)


def response(req: SipRequest, status: int, to_tag: str | None = "totag") -> SipResponse:
    return make_response(req, status, to_tag=to_tag if status != 100 else None)


class FakeClock:
    """Drives a TransactionLayer through time, recording what it sends and when."""

    def __init__(self, layer: TransactionLayer) -> None:
        self.layer = layer
        self.now = 0.0
        self.sent: list[tuple[float, Outgoing]] = []
        self.events: list[tuple[float, TxEvent]] = []

    def collect(self, events: list[TxEvent] | None = None) -> list[TxEvent]:
        for out in self.layer.pop_outgoing():
            self.sent.append((self.now, out))
        for event in events or []:
            self.events.append((self.now, event))
        return events or []

    def run_until(self, until: float) -> list[TxEvent]:
        """Fire every timer due up to `until`; return the events they produced."""
        fired: list[TxEvent] = []
        while (deadline := self.layer.next_deadline()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            fired += self.collect(self.layer.handle_timers(self.now))
        self.now = max(self.now, until)
        return fired

    def sent_times(self, method_or_status: str | int) -> list[float]:
        times = []
        for when, out in self.sent:
            msg = out.message
            key: str | int = msg.method if isinstance(msg, SipRequest) else msg.status
            if key == method_or_status:
                times.append(round(when, 6))
        return times

    def take_sent(self) -> list[Outgoing]:
        sent = [out for _, out in self.sent]
        self.sent.clear()
        return sent
