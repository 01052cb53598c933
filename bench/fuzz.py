"""Long fuzzing run of the SIP parser, the SDP parser and the SIP stack (transaction layer and
call router together), outside CI: `python bench/fuzz.py --inputs 1000000`.

Inputs are mutations of real messages (SIPp's and baresip's INVITEs, a 180, a BYE, an SDP
offer): byte flips, insertions, deletions, duplicated or dropped lines, header values blown up
to kilobytes, splices of two messages. Each target gets a third of the inputs. A crash is any
exception other than the parser's own error type (for the stack: any exception at all); a
hang is one input taking over HANG_S; memory is the process's peak RSS before and after, and
the stack's transactions and calls once its timers have run out.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import resource
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from callboard.sdp.description import SdpError, SessionDescription
from callboard.sip.call_events import (
    CancelInvite,
    SendRequest,
    SendResponse,
    SendStateless,
)
from callboard.sip.call_model import LocalIdentity, TimerSettings
from callboard.sip.call_router import CallRouter, IncomingCall
from callboard.sip.errors import SipParseError
from callboard.sip.message import parse_message
from callboard.sip.transaction import TransactionLayer

HANG_S = 1.0

SDP = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 9 111 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:9 G722/8000\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)


def _message(first: str, headers: list[str], body: str = "") -> bytes:
    lines = [first, *headers, f"Content-Length: {len(body.encode())}", "", body]
    return "\r\n".join(lines).encode()


def seeds() -> list[bytes]:
    via = "Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bK-{b};rport"
    common = [
        'From: "sipp" <sip:sipp@192.0.2.7:5062>;tag=8712SIPpTag001',
        "To: <sip:callboard@192.0.2.1:5060>",
        "Call-ID: 1-8712@192.0.2.7",
        "Contact: <sip:sipp@192.0.2.7:5062;transport=UDP>",
        "Max-Forwards: 70",
    ]
    return [
        _message(
            "INVITE sip:callboard@192.0.2.1:5060 SIP/2.0",
            [
                via.format(b="1"),
                *common,
                "CSeq: 1 INVITE",
                "Session-Expires: 1800;refresher=uac",
                "Supported: timer, replaces",
                "Content-Type: application/sdp",
            ],
            SDP,
        ),
        _message(
            "INVITE sip:bob@192.0.2.1;transport=tcp SIP/2.0",
            [
                "v: SIP/2.0/TCP 192.0.2.9:44123;branch=z9hG4bKbaresip;alias",
                "Record-Route: <sip:proxy.example.com;lr>",
                "f: <sip:alice@example.com>;tag=b1",
                "t: <sip:bob@192.0.2.1>",
                "i: baresip-call@192.0.2.9",
                "CSeq: 7 INVITE",
                "m: <sip:alice@192.0.2.9:44123;transport=tcp>",
                'Authorization: Digest username="alice", realm="callboard", nonce="abc", '
                'uri="sip:bob@192.0.2.1", response="00", algorithm=MD5, qop=auth, nc=00000001, '
                'cnonce="x"',
                "Replaces: c@h;to-tag=a;from-tag=b",
                "c: application/sdp",
            ],
            SDP,
        ),
        _message(
            "SIP/2.0 180 Ringing",
            [via.format(b="2"), *common[:-1], "CSeq: 1 INVITE"],
        ),
        _message(
            "BYE sip:callboard@192.0.2.1:5060 SIP/2.0",
            [via.format(b="3"), common[0], common[1] + ";tag=abc", common[2], "CSeq: 2 BYE"],
        ),
        _message(
            "REFER sip:callboard@192.0.2.1:5060 SIP/2.0",
            [
                via.format(b="4"),
                common[0],
                common[1] + ";tag=abc",
                common[2],
                "CSeq: 3 REFER",
                "Refer-To: <sip:carol@198.51.100.7?Replaces=c%40h%3Bto-tag%3Da%3Bfrom-tag%3Db>",
            ],
        ),
        SDP.encode(),
    ]


def mutate(data: bytes, rng: random.Random, pool: list[bytes]) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        action = rng.randrange(8)
        if not out:
            out = bytearray(rng.choice(pool))
        i = rng.randrange(len(out))
        if action == 0:
            out[i] = rng.randrange(256)
        elif action == 1:
            out[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif action == 2:
            del out[i : i + rng.randint(1, 16)]
        elif action == 3:  # blow a line up
            end = out.find(b"\r\n", i)
            end = len(out) if end < 0 else end
            out[end:end] = rng.choice([b"a", b";x=y", b",", b" ", b"\x00", b"%"]) * rng.choice(
                [10, 100, 3000]
            )
        elif action == 4:  # duplicate a line
            lines = bytes(out).split(b"\r\n")
            line = rng.choice(lines)
            lines.insert(rng.randrange(len(lines) + 1), line)
            out = bytearray(b"\r\n".join(lines))
        elif action == 5:  # drop a line
            lines = bytes(out).split(b"\r\n")
            del lines[rng.randrange(len(lines))]
            out = bytearray(b"\r\n".join(lines))
        elif action == 6:  # splice with another seed
            other = rng.choice(pool)
            j = rng.randrange(len(other) + 1)
            out = out[:i] + bytearray(other[j:])
        else:  # a number somewhere becomes huge or negative
            digits = rng.choice([b"-1", b"0", b"99999999999999999999", b"4294967296"])
            out[i:i] = digits
    return bytes(out)


class Stack:
    """A transaction layer and call router as the server runs them, fed from the wire."""

    def __init__(self) -> None:
        self.layer = TransactionLayer()
        self.router = CallRouter(LocalIdentity("192.0.2.1", 5060, "fuzz", TimerSettings()))
        self.router.accept_calls = True
        self.now = 0.0

    def feed(self, data: bytes) -> None:
        try:
            message = parse_message(data)
        except SipParseError:
            return
        for event in self.layer.receive(message, ("192.0.2.7", 5062), "udp", self.now):
            self.router.receive(event, self.now)
        self.pump()

    def pump(self) -> None:
        """Carry out the router's actions as the adapter does; the TU refuses every call."""
        while actions := self.router.pop_actions(self.now):
            for action in actions:
                if isinstance(action, SendRequest):
                    self.layer.send_request(
                        action.request, (action.host, action.port), "udp", self.now
                    )
                elif isinstance(action, SendResponse):
                    with contextlib.suppress(KeyError):
                        self.layer.send_response(action.response, self.now)
                elif isinstance(action, SendStateless):
                    self.layer.send_stateless(action.message, (action.host, action.port), "udp")
                elif isinstance(action, CancelInvite):
                    self.layer.cancel_request(action.tx_key, self.now)
                elif isinstance(action, IncomingCall):
                    action.session.reject(486, now=self.now)
        self.layer.pop_outgoing()  # the wire

    def run_timers(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            deadlines = [d for d in (self.layer.next_deadline(), self.router.next_deadline()) if d]
            if not deadlines or min(deadlines) > end:
                break
            self.now = max(self.now, min(deadlines))
            for event in self.layer.handle_timers(self.now):
                self.router.receive(event, self.now)
            self.router.handle_timers(self.now)
            self.pump()
        self.now = end


def run(name: str, target: Callable[[bytes], None], inputs: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    pool = seeds()
    crashes = hangs = 0
    slowest = 0.0
    started = time.perf_counter()
    for n in range(inputs):
        data = mutate(rng.choice(pool), rng, pool)
        begin = time.perf_counter()
        try:
            target(data)
        except Exception:
            crashes += 1
            if crashes <= 5:
                print(f"{name}: crash on input {n}: {data[:200]!r}", file=sys.stderr)
                traceback.print_exc()
        took = time.perf_counter() - begin
        slowest = max(slowest, took)
        hangs += took > HANG_S
    return {
        "inputs": inputs,
        "crashes": crashes,
        "hangs": hangs,
        "slowest_ms": slowest * 1000,
        "seconds": time.perf_counter() - started,
    }


def parse_sip(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError:
        return
    parse_message(message.to_bytes())  # what we parse we can write back and read again


def parse_sdp(data: bytes) -> None:
    try:
        SessionDescription.parse(data)
    except SdpError:
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="in all, split 3 ways")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    each = args.inputs // 3
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = {
        "sip parser": run("sip parser", parse_sip, each, args.seed),
        "sdp parser": run("sdp parser", parse_sdp, each, args.seed + 1),
    }
    stack = Stack()

    def feed(data: bytes) -> None:
        stack.feed(data)
        if stack.now < 1e9:
            stack.run_timers(0.05)

    results["sip stack"] = run("sip stack", feed, each, args.seed + 2)
    stack.run_timers(600)  # every transaction and call times out or ends
    left = (len(stack.layer), len(stack.router.calls))
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, r in results.items():
        print(
            f"{name:11s} {r['inputs']:>9,d} inputs  {r['crashes']} crashes  {r['hangs']} hangs"
            f"  slowest {r['slowest_ms']:.1f} ms  {r['seconds']:.0f} s"
        )
    print(f"stack after its timers: {left[0]} transactions, {left[1]} calls")
    print(f"peak RSS {rss_before / 1024:.0f} MB before, {rss_after / 1024:.0f} MB after")
    failed = any(r["crashes"] or r["hangs"] for r in results.values()) or any(left)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
