"""Raw SIP over UDP for tests that play a SIP peer by hand: requests built as text, the
server's messages collected as they come (junk INVITEs, silent or late-answering callees)."""

from __future__ import annotations

import contextlib
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.helpers.server import ServerProcess

LOCAL = "127.0.0.1"


# -- SIP messages ---------------------------------------------------------------------------


def sdp_offer(port: int = 40000, formats: str = "0 8 101", extra: str = "") -> str:
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {LOCAL}",
        "s=-",
        f"c=IN IP4 {LOCAL}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=sendrecv",
    ]
    return "\r\n".join(lines) + "\r\n" + extra


def sip_request(
    method: str,
    target: ServerProcess,
    local_port: int,
    *,
    call_id: str | None = None,
    body: bytes | str = b"",
    content_type: str | None = "application/sdp",
    content_length: str | None = None,
    transport: str = "UDP",
    extra_headers: tuple[str, ...] = (),
) -> bytes:
    """A well-formed request (unless ``content_length`` lies); mandatory headers come first."""
    if isinstance(body, str):
        body = body.encode()
    call_id = call_id or f"bad-{uuid.uuid4().hex}"
    lines = [
        f"{method} sip:bob@{LOCAL}:{target.sip_port} SIP/2.0",
        f"Via: SIP/2.0/{transport} {LOCAL}:{local_port};branch=z9hG4bK{uuid.uuid4().hex};rport",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"From: <sip:mallory@{LOCAL}>;tag={uuid.uuid4().hex[:10]}",
        f"To: <sip:bob@{LOCAL}:{target.sip_port}>",
        f"Contact: <sip:mallory@{LOCAL}:{local_port}>",
        "Max-Forwards: 70",
        *extra_headers,
    ]
    if body and content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {content_length if content_length is not None else len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_STATUS_RE = re.compile(rb"^SIP/2\.0 (\d{3}) ")
_CALL_ID_RE = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class Message:
    """A SIP message the server sent us; ``status`` is 0 for a request."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        match = _STATUS_RE.match(data)
        self.status = int(match.group(1)) if match else 0
        call_id = _CALL_ID_RE.search(data)
        self.call_id = call_id.group(1).decode() if call_id else ""

    def header(self, name: str) -> str | None:
        match = re.search(
            rb"^" + re.escape(name.encode()) + rb"\s*:\s*(.*?)\r?$",
            self.data.split(b"\r\n\r\n", 1)[0],
            re.IGNORECASE | re.MULTILINE,
        )
        return match.group(1).decode() if match else None

    def __repr__(self) -> str:
        return f"<{self.status} {self.call_id}>"


class UdpPeer:
    """A raw UDP socket that sends datagrams to the server and collects its responses."""

    def __init__(self, target: ServerProcess, bind_ip: str = LOCAL) -> None:
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.sock.bind((bind_ip, 0))  # another loopback address is another source
        self.port = self.sock.getsockname()[1]
        self.responses: list[Message] = []
        self.requests: list[Message] = []

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, (LOCAL, self.target.sip_port))

    def drain(self, wait: float = 0.0, *, until_any: bool = False) -> list[Message]:
        """Collect what arrives within ``wait`` seconds (at least what is queued now); with
        ``until_any``, stop waiting once something has arrived."""
        got: list[Message] = []
        deadline = time.monotonic() + wait
        while True:
            remaining = deadline - time.monotonic()
            if until_any and got:
                remaining = 0.0
            self.sock.settimeout(remaining if remaining > 0 else 0.0)
            try:
                data = self.sock.recv(70000)
            except (TimeoutError, BlockingIOError):
                break
            message = Message(data)
            (self.responses if message.status else self.requests).append(message)
            got.append(message)
        return got

    def wait_final(self, call_id: str, timeout: float) -> Message | None:
        """The first final (>= 200) response for ``call_id``, if one arrives in time."""
        deadline = time.monotonic() + timeout
        while True:
            for response in self.responses:
                if response.call_id == call_id and response.status >= 200:
                    return response
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.drain(remaining, until_any=True)

    def request(self, data: bytes, timeout: float = 3.0) -> Message:
        """Send a request, retransmitting it like a UAC (a burst may fill the server's socket
        buffer), and return its final response; an INVITE's non-2xx is ACKed."""
        match = _CALL_ID_RE.search(data)
        assert match
        call_id = match.group(1).decode()
        deadline = time.monotonic() + timeout
        response = None
        while response is None:
            if time.monotonic() >= deadline:
                pytest.fail(f"no final response for {call_id} in {timeout:g}s", pytrace=False)
            self.send(data)
            response = self.wait_final(call_id, 0.5)
        if data.startswith(b"INVITE ") and response.status >= 300:
            self.send(ack_for(data, response))  # stop the retransmissions
        return response

    def close(self) -> None:
        self.sock.close()


def ack_for(invite: bytes, response: Message) -> bytes:
    """The ACK of a final response (RFC 3261 17.1.1.3, 13.2.2.4): To with the tag; a 2xx is
    ACKed in a transaction of its own (a new branch)."""
    head = invite.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = [line for line in head[1:] if line.split(":", 1)[0] in ("Via", "Call-ID", "From")]
    if response.status < 300:
        keep = [re.sub(r"branch=[^;]+", f"branch=z9hG4bK{uuid.uuid4().hex}", x) for x in keep]
    to = response.header("To") or ""
    lines = [head[0].replace("INVITE", "ACK", 1), *keep, f"To: {to}", "CSeq: 1 ACK"]
    return ("\r\n".join([*lines, "Max-Forwards: 70", "Content-Length: 0"]) + "\r\n\r\n").encode()


def ok_for(request: Message) -> bytes:
    """A 200 OK to a request the server sent us (a BYE)."""
    return response_for(request, 200)


REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 486: "Busy Here"}


def response_for(
    request: Message, status: int, *, to_tag: str | None = None, sdp: str | None = None
) -> bytes:
    """A response to a request the server sent us, as a UAS would build it: Via, From,
    Call-ID and CSeq copied, To with ``to_tag`` added, a Contact on a 2xx, and an SDP body."""
    head = request.data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    names = ("via", "v", "from", "f", "call-id", "i", "cseq")
    lines = [f"SIP/2.0 {status} {REASONS.get(status, 'Whatever')}"]
    lines += [line for line in head[1:] if line.split(":", 1)[0].strip().lower() in names]
    to = request.header("To") or request.header("t") or ""
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    lines.append(f"To: {to}")
    if 200 <= status < 300 and request.data.startswith(b"INVITE "):
        lines.append(f"Contact: <sip:callee@{LOCAL}:{_via_port(request)}>")
    body = (sdp or "").encode()
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _via_port(request: Message) -> str:
    """The port the request was sent to is ours; its Request-URI names it."""
    first = request.data.split(b"\r\n", 1)[0].decode()
    match = re.search(r":(\d+)(?:[;> ]|$)", first.split(" ")[1])
    return match.group(1) if match else "5060"


@contextlib.contextmanager
def udp_peer(target: ServerProcess, bind_ip: str = LOCAL) -> Iterator[UdpPeer]:
    peer = UdpPeer(target, bind_ip)
    try:
        yield peer
    finally:
        peer.close()


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Flip, drop or duplicate a few bytes of ``data``."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(out))
        action = rng.random()
        if action < 0.6:
            out[i] = rng.randrange(256)
        elif action < 0.8:
            del out[i]
        else:
            out[i:i] = out[i : i + rng.randint(1, 40)]
    return bytes(out)
