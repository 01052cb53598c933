"""Bad input on the SIP and RTP ports: answered with a SIP error or dropped, never fatal.

Raw sockets play the attacker; two server instances (A calls B) prove after every barrage
that B is alive, leaked no leg, and still carries a real call with clean media. The servers
and the webhook receiver are shared by the whole module to keep it fast; each test waits
only for events that arrived after it started (``since=hooks.mark()``).
"""

from __future__ import annotations

import contextlib
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.raw_sip import (
    LOCAL,
    Message,
    ack_for,
    mutate,
    ok_for,
    sdp_offer,
    sip_request,
    udp_peer,
)
from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import module_fixtures

SEED = 20240611


# -- fixtures: one caller, one callee, one receiver for the module --------------------------


hooks, servers = module_fixtures("bad_input")


@pytest.fixture
def callee(servers: tuple[ServerProcess, ServerProcess]) -> ServerProcess:
    return servers[1]


# -- TCP ------------------------------------------------------------------------------------


def tcp_connect(target: ServerProcess, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((LOCAL, target.sip_port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the server sends until it closes the connection; fails if it does not."""
    received = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(
                f"server kept the connection open; it sent {bytes(received[:200])!r}",
                pytrace=False,
            )
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(received)
        except TimeoutError:
            continue
        if not chunk:
            return bytes(received)
        received += chunk


def send_all_tolerant(sock: socket.socket, data: bytes, chunk: int = 16384) -> int:
    """Send ``data`` until done or the server closes on us; returns the bytes sent."""
    sent = 0
    sock.settimeout(5.0)
    try:
        while sent < len(data):
            sent += sock.send(data[sent : sent + chunk])
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


def tcp_responses(data: bytes) -> list[int]:
    return [int(m.group(1)) for m in re.finditer(rb"SIP/2\.0 (\d{3}) ", data)]


def tcp_request(
    target: ServerProcess, build: Callable[[int], bytes], timeout: float = 5.0
) -> Message:
    """Send ``build(local_port)`` on a fresh connection; return the first final response."""
    with tcp_connect(target) as sock:
        sock.sendall(build(sock.getsockname()[1]))
        buffer = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            for part in re.split(rb"(?=SIP/2\.0 \d{3} )", buffer):
                if part.startswith(b"SIP/2.0") and b"\r\n\r\n" in part:
                    response = Message(part)
                    if response.status >= 200:
                        return response
    pytest.fail(f"no final response over TCP; got {buffer[:300]!r}", pytrace=False)


# -- health checks ----------------------------------------------------------------------------


def rss_kib(server: ServerProcess) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match
    return int(match.group(1))


def metric(server: ServerProcess, name: str) -> float:
    text = server.api("GET", "/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"metric {name} missing"
    return float(match.group(1))


def call(
    caller: ServerProcess,
    callee: ServerProcess,
    hooks: WebhookReceiver,
    talk: float = 0.5,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A calls B, B answers, both talk for ``talk`` s, A hangs up; both leg.disconnected."""
    since = hooks.mark()
    response = caller.api("POST", "/legs", {"type": "sip", "uri": callee.sip_uri("bob")})
    assert response.status_code == 201, response.text
    a_leg = response.json()["id"]
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=callee.instance_id)["leg_id"]
    assert callee.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
    hooks.wait_for("leg.connected", since=since, leg_id=b_leg)
    time.sleep(talk)
    assert caller.api("DELETE", f"/legs/{a_leg}").status_code == 200
    end_a = hooks.wait_for("leg.disconnected", since=since, leg_id=a_leg)
    end_b = hooks.wait_for("leg.disconnected", since=since, leg_id=b_leg)
    assert end_a["cdr"]["reason"] == "api_hangup"
    assert end_b["cdr"]["reason"] == "remote_bye"
    return end_a, end_b


def assert_still_serving(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    """Alive, no leaked leg, and a real call from the other instance still connects."""
    caller, callee = servers
    for server in servers:
        assert server.running(), f"{server.name} died\n{server.log_tail()}"
        # bad input is logged as such, never as a crash with a stack trace
        assert "Traceback" not in server.log_text(), f"{server.name}: a stack trace was logged"
    assert callee.api("GET", "/legs").json() == []
    end_a, end_b = call(caller, callee, hooks)
    for end in (end_a, end_b):
        assert end["quality"]["rtp_packets_received"] >= 10
    assert callee.api("GET", "/legs").json() == []
    assert caller.api("GET", "/legs").json() == []


# -- UDP ------------------------------------------------------------------------------------


def test_udp_garbage_is_dropped_and_sip_keeps_answering(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, callee: ServerProcess
) -> None:
    rng = random.Random(SEED)
    with udp_peer(callee) as peer:
        options = sip_request("OPTIONS", callee, peer.port, content_type=None)
        garbage: list[bytes] = []
        for _ in range(1500):  # pure noise
            garbage.append(rng.randbytes(rng.choice((1, 2, 12, 100, 500, 1400))))
        for _ in range(500):  # text that looks a bit like SIP
            words = [rng.choice((b"INVITE", b"SIP/2.0", b"Via:", b":", b";", b"\r\n", b"sip:"))]
            words += [rng.randbytes(rng.randint(0, 8)) for _ in range(rng.randint(0, 20))]
            garbage.append(b" ".join(words))
        for _ in range(1500):  # a valid OPTIONS with a few bytes broken
            garbage.append(mutate(options, rng))
        garbage += [b"\x00" * 1400, b"\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", rng.randbytes(65000)]
        rng.shuffle(garbage)
        # An empty first Via line before a good one: the top Via is the empty one.
        two_vias = options.replace(b"\r\nVia: ", b"\r\nVia: ,\r\nVia: ", 1)
        assert peer.request(two_vias).status == 400
        probes = 0
        for start in range(0, len(garbage), 50):
            for datagram in garbage[start : start + 50]:
                peer.send(datagram)
            # the server still answers a well-formed request between the bursts
            probe = sip_request("OPTIONS", callee, peer.port, content_type=None)
            assert peer.request(probe).status == 200
            probes += 1
        peer.drain(0.3)
        assert probes == 71
        statuses = sorted({r.status for r in peer.responses})
        # Broken requests get 4xx (or 505/513); nothing may fail inside the server.
        assert all(s in (200, 505, 513) or 400 <= s < 500 for s in statuses), statuses
        assert 400 in statuses, "some mutated OPTIONS should have been answered 400"
    assert_still_serving(servers, hooks)


def test_udp_truncated_invites(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, callee: ServerProcess
) -> None:
    with udp_peer(callee) as peer:
        template = sip_request("INVITE", callee, peer.port, body=sdp_offer(), call_id="X" * 40)
        # Start line, Via, Call-ID and CSeq are enough to answer: from there on, every prefix
        # must get a 400; shorter ones may be answered or dropped but never accepted.
        answerable = template.index(b"\r\n", template.index(b"CSeq:")) + 2
        answered = 0
        for length in range(1, len(template)):
            call_id = f"trunc-{length:05d}-{uuid.uuid4().hex}"[:40]
            prefix = template.replace(b"X" * 40, call_id.encode())[:length]
            if length >= answerable:
                response = peer.request(prefix)
                assert response.status == 400, (length, prefix[-40:], response.data[:200])
                answered += 1
            else:
                peer.send(prefix)
        peer.drain(0.3)
        assert answered > 300
        assert {r.status for r in peer.responses} == {400}
    assert_still_serving(servers, hooks)


def _sdp_lines(remove: str = "", replace: tuple[str, str] = ("", "")) -> str:
    text = sdp_offer().replace(replace[0], replace[1]) if replace[0] else sdp_offer()
    return "".join(line + "\r\n" for line in text.split("\r\n") if line and line != remove)


MALFORMED_SDP: dict[str, bytes | str] = {
    "not SDP at all": "hello world, this is not SDP\r\n",
    "binary": bytes(range(256)) * 4,
    "m= port not a number": _sdp_lines(replace=("m=audio 40000", "m=audio abc")),
    "m= port out of range": sdp_offer(port=70000),
    "no m= line": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n",
    "SDP version 1": _sdp_lines(replace=("v=0", "v=1")),
    "61 KB of junk": b"x" * 61000,
}

UNACCEPTABLE_SDP: dict[str, str] = {
    "G.729 only": sdp_offer(formats="18") + "a=rtpmap:18 G729/8000\r\n",
    "video only": _sdp_lines(replace=("m=audio 40000 RTP/AVP 0 8 101", "m=video 40000 RTP/AVP 96")),
    "telephone-event only": sdp_offer(formats="101"),
    "SRTP only": _sdp_lines(replace=("RTP/AVP", "RTP/SAVP")),
    "no connection address": _sdp_lines(remove=f"c=IN IP4 {LOCAL}"),
    "invalid IPv4 address": _sdp_lines(replace=(f"c=IN IP4 {LOCAL}", "c=IN IP4 999.1.2.3")),
    "host name, not an address": _sdp_lines(
        replace=(f"c=IN IP4 {LOCAL}", "c=IN IP4 media.example.invalid")
    ),
}

BOGUS_CONTENT_LENGTH: dict[str, dict[str, Any]] = {
    "not a number": {"content_length": "abc"},
    "negative": {"content_length": "-1"},
    "exponent": {"content_length": "1e3"},
    "beyond the datagram": {"content_length": "99999"},
    "beyond 64 bits": {"content_length": "9" * 25},
    "two that disagree": {"extra_headers": ("Content-Length: 5",)},
}


def test_udp_invites_with_bad_bodies_are_refused(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, callee: ServerProcess
) -> None:
    with udp_peer(callee) as peer:

        def invite(**fields: Any) -> Message:
            return peer.request(sip_request("INVITE", callee, peer.port, **fields))

        for name, body in MALFORMED_SDP.items():
            response = invite(body=body)
            assert response.status == 400, name
            assert "Bad SDP" in (response.header("Warning") or ""), name
        for name, body in UNACCEPTABLE_SDP.items():
            assert invite(body=body).status == 488, name
        for name, fields in BOGUS_CONTENT_LENGTH.items():
            response = invite(body=sdp_offer(), **fields)
            assert response.status == 400, name
            assert "Content-Length" in (response.header("Warning") or ""), name
        # A Content-Length shorter than the body cuts the SDP short: malformed SDP.
        response = invite(body=sdp_offer(), content_length="10")
        assert response.status == 400
        assert "Bad SDP" in (response.header("Warning") or "")
        assert invite(body=sdp_offer(), content_type="text/plain").status == 415
        # Big datagrams: a 64 KB OPTIONS is still a request, 64 KB of noise is not.
        pad = ("X-Pad: " + "p" * 64000,)
        big = sip_request("OPTIONS", callee, peer.port, content_type=None, extra_headers=pad)
        assert len(big) > 64000
        assert peer.request(big).status == 200
        peer.send(random.Random(SEED).randbytes(65000))
        peer.drain(0.3)
        # The noise got no answer, and no INVITE rang.
        assert {r.status for r in peer.responses} == {100, 200, 400, 415, 488}
        assert peer.requests == []
    assert_still_serving(servers, hooks)


# -- TCP ------------------------------------------------------------------------------------


def assert_closed_with_error_or_nothing(received: bytes) -> None:
    statuses = tcp_responses(received)
    assert all(s in (400, 513) for s in statuses), received[:300]


def test_tcp_garbage_and_truncated_streams(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, callee: ServerProcess
) -> None:
    rng = random.Random(SEED + 2)
    # Noise with line breaks: the first line is no SIP start line, so the server hangs up.
    with tcp_connect(callee) as sock:
        send_all_tolerant(sock, b"\r\n".join(rng.randbytes(100) for _ in range(100)))
        assert_closed_with_error_or_nothing(read_until_closed(sock))
    # 100 KB without a line break: more than any header section may be.
    with tcp_connect(callee) as sock:
        noise = bytes(b for b in rng.randbytes(120_000) if b not in b"\r\n")
        send_all_tolerant(sock, noise)
        assert_closed_with_error_or_nothing(read_until_closed(sock))
    # A good request, then noise on the same connection: the first is answered, then bye.
    with tcp_connect(callee) as sock:
        port = sock.getsockname()[1]
        good = sip_request("OPTIONS", callee, port, content_type=None, transport="TCP")
        send_all_tolerant(sock, good + b"GARBAGE \x00\xff\r\n" + rng.randbytes(5000))
        received = read_until_closed(sock)
        assert tcp_responses(received)[:1] == [200]
        assert set(tcp_responses(received)) <= {200, 400, 513}
    # Truncated messages, then the client goes away: nothing happens, nothing leaks.
    for which in range(5):
        with tcp_connect(callee) as sock:
            port = sock.getsockname()[1]
            invite = sip_request("INVITE", callee, port, body=sdp_offer(), transport="TCP")
            head = invite.index(b"\r\n\r\n")
            # in the start line, in the headers, just before the empty line, in the body,
            # one byte short
            cut = (20, head // 2, head + 2, head + 64, len(invite) - 1)[which]
            sock.sendall(invite[:cut])
            time.sleep(0.05)
    # A complete INVITE with a broken offer is answered on its connection.
    response = tcp_request(
        callee,
        lambda port: sip_request(
            "INVITE", callee, port, body=MALFORMED_SDP["not SDP at all"], transport="TCP"
        ),
    )
    assert response.status == 400
    response = tcp_request(
        callee,
        lambda port: sip_request(
            "INVITE", callee, port, body=UNACCEPTABLE_SDP["G.729 only"], transport="TCP"
        ),
    )
    assert response.status == 488
    assert_still_serving(servers, hooks)


def test_tcp_one_megabyte_body_is_refused_without_buffering(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, callee: ServerProcess
) -> None:
    before = rss_kib(callee)
    megabyte = b"v=0\r\n" + b"a=x\r\n" * (1_000_000 // 5)
    results: list[bytes] = []

    def upload() -> None:
        with tcp_connect(callee) as sock:
            port = sock.getsockname()[1]
            head = sip_request(
                "INVITE", callee, port, transport="TCP", content_length="1000000"
            ).rstrip(b"\r\n")
            # sip_request put a Content-Type only with a body; add it to the announced one
            message = head + b"\r\nContent-Type: application/sdp\r\n\r\n" + megabyte[:1_000_000]
            send_all_tolerant(sock, message)
            results.append(read_until_closed(sock))

    threads = [threading.Thread(target=upload) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 8, "an upload did not finish: the server kept reading"
    for received in results:
        assert_closed_with_error_or_nothing(received)
    assert rss_kib(callee) - before < 30_000, "the server buffered the bodies"
    assert_still_serving(servers, hooks)


def test_many_junk_tcp_connections(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, callee: ServerProcess
) -> None:
    rng = random.Random(SEED + 3)
    idle: list[socket.socket] = []
    junk: list[socket.socket] = []
    try:
        for i in range(300):
            sock = tcp_connect(callee)
            if i % 3 == 0:
                idle.append(sock)  # says nothing at all
            elif i % 3 == 1:
                sock.sendall(b"INVITE sip:")  # starts and stalls
                idle.append(sock)
            else:
                sock.sendall(rng.randbytes(200) + b"\r\n")
                junk.append(sock)
        for sock in junk:
            assert_closed_with_error_or_nothing(read_until_closed(sock))
        # With hundreds of connections hanging, a new one is still served ...
        response = tcp_request(
            callee,
            lambda port: sip_request("OPTIONS", callee, port, content_type=None, transport="TCP"),
        )
        assert response.status == 200
        # ... and so is UDP, including a whole call.
        assert_still_serving(servers, hooks)
    finally:
        for sock in idle + junk:
            sock.close()


# -- media ----------------------------------------------------------------------------------


def test_unreachable_media_address_does_not_break_other_calls(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, callee: ServerProcess
) -> None:
    """An answered call whose offer names an address the RTP socket cannot send to (IPv6 on
    an IPv4 server) gets no media, and nothing else: the media tick serves every other call."""
    caller = servers[0]
    since = hooks.mark()
    with udp_peer(callee) as peer:
        offer = _sdp_lines(replace=(f"c=IN IP4 {LOCAL}", "c=IN IP6 ::1"))
        invite = sip_request("INVITE", callee, peer.port, body=offer)
        peer.send(invite)
        ringing = hooks.wait_for("leg.ringing", since=since, instance_id=callee.instance_id)
        odd_leg = ringing["leg_id"]
        assert callee.api("POST", f"/legs/{odd_leg}/answer").status_code == 200
        call_id = Message(invite).call_id
        ok = peer.wait_final(call_id, 3.0)
        assert ok is not None and ok.status == 200
        peer.send(ack_for(invite, ok))
        # the odd call is first in line for the media tick; a normal call comes after it
        end_a, end_b = call(caller, callee, hooks, talk=1.0)
        assert end_a.get("quality", {}).get("rtp_packets_received", 0) >= 30, end_a
        assert end_b.get("quality", {}).get("rtp_packets_received", 0) >= 30, end_b
        assert callee.api("DELETE", f"/legs/{odd_leg}").status_code == 200
        bye = None
        for _ in range(40):
            peer.drain(0.05)
            bye = next((r for r in peer.requests if r.data.startswith(b"BYE ")), None)
            if bye is not None:
                break
        assert bye is not None, "no BYE for the odd call"
        peer.send(ok_for(bye))
        end = hooks.wait_for("leg.disconnected", since=since, leg_id=odd_leg)
        assert end["cdr"]["reason"] == "api_hangup"
    assert "Traceback" not in callee.log_text()
    assert_still_serving(servers, hooks)


def connect_pair(
    caller: ServerProcess, callee: ServerProcess, hooks: WebhookReceiver, since: int
) -> tuple[str, str]:
    response = caller.api("POST", "/legs", {"type": "sip", "uri": callee.sip_uri("bob")})
    assert response.status_code == 201, response.text
    a_leg = response.json()["id"]
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=callee.instance_id)["leg_id"]
    assert callee.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
    hooks.wait_for("leg.connected", since=since, leg_id=b_leg)
    return a_leg, b_leg


def rtp_noise(rng: random.Random) -> bytes:
    """Random bytes, or packets that look like RTP or RTCP with random fields."""
    kind = rng.random()
    if kind < 0.4:
        return rng.randbytes(rng.choice((1, 4, 11, 12, 13, 172, 1500)))
    if kind < 0.8:  # RTP v2, payload type PCMU/PCMA/telephone-event/anything
        first = 0x80 | rng.choice((0, 0x10, 0x20, 0x0F))  # maybe extension, padding, CSRCs
        pt = rng.choice((0, 8, 101, 13, rng.randrange(128))) | rng.choice((0, 0x80))
        header = bytes((first, pt)) + rng.randbytes(10)
        return header + rng.randbytes(rng.choice((0, 4, 160, 320)))
    # RTCP: SR, RR, SDES, BYE, APP with a random count and a length that may lie
    return bytes((0x80 | rng.randrange(32), rng.randrange(200, 205))) + rng.randbytes(
        rng.choice((2, 6, 26, 50))
    )


def test_garbage_rtp_during_a_call(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    caller, callee = servers
    since = hooks.mark()
    a_leg, b_leg = connect_pair(caller, callee, hooks, since)
    time.sleep(0.3)  # both sides have latched on to each other's media
    ports = [
        port
        for server in (callee, caller)
        for port in range(server.rtp_window.low, server.rtp_window.high + 1)
    ]
    stop = threading.Event()
    sent: list[int] = [0]

    def spray() -> None:
        rng = random.Random(SEED + 4)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.is_set():
                for port in ports:
                    with contextlib.suppress(OSError):
                        sock.sendto(rtp_noise(rng), (LOCAL, port))
                        sent[0] += 1
                time.sleep(0.02)

    sprayer = threading.Thread(target=spray, daemon=True)
    sprayer.start()
    try:
        time.sleep(0.3)
        assert caller.api("POST", f"/legs/{a_leg}/dtmf", {"digits": "159#"}).status_code == 200
        assert callee.api("POST", f"/legs/{b_leg}/dtmf", {"digits": "*07"}).status_code == 200
        to_b = hooks.wait_for_count(4, "dtmf.received", timeout=10, leg_id=b_leg)
        to_a = hooks.wait_for_count(3, "dtmf.received", timeout=10, leg_id=a_leg)
        time.sleep(0.5)
    finally:
        stop.set()
        sprayer.join(timeout=5)
    assert sent[0] > 2000, sent
    # the noise reached the sockets of the call (each side logs what it drops, at debug)
    for server in servers:
        assert re.search(r"dropped RTC?P packet", server.log_text()), server.name
    assert "".join(e["digit"] for e in to_b) == "159#"
    assert "".join(e["digit"] for e in to_a) == "*07"
    assert [e["type"] for e in hooks.events("leg.disconnected", since=since)] == []
    assert callee.get_leg(b_leg)["state"] == "connected"  # type: ignore[index]
    assert caller.get_leg(a_leg)["state"] == "connected"  # type: ignore[index]
    assert caller.api("DELETE", f"/legs/{a_leg}").status_code == 200
    end_a = hooks.wait_for("leg.disconnected", since=since, leg_id=a_leg)
    end_b = hooks.wait_for("leg.disconnected", since=since, leg_id=b_leg)
    assert end_b["cdr"]["reason"] == "remote_bye"
    for end in (end_a, end_b):
        # the noise was not counted as the peer's media, nor did it lose any of it
        assert end["quality"]["rtp_packets_lost"] == 0, end
        assert 40 <= end["quality"]["rtp_packets_received"] <= 400, end
    assert_still_serving(servers, hooks)


def test_media_clock_keeps_time_under_a_sip_flood(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    """After all of the above, and while junk keeps arriving on the SIP port, a call's media
    is complete and on time."""
    caller, callee = servers
    stop = threading.Event()
    sent: list[int] = [0]

    def flood() -> None:
        rng = random.Random(SEED + 5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            while not stop.is_set():
                for _ in range(50):
                    sock.sendto(rng.randbytes(rng.randint(1, 1400)), (LOCAL, callee.sip_port))
                    sent[0] += 1
                time.sleep(0.01)

    flooder = threading.Thread(target=flood, daemon=True)
    skipped_before = metric(callee, "callboard_media_ticks_skipped")
    flooder.start()
    try:
        end_a, end_b = call(caller, callee, hooks, talk=2.0)
    finally:
        stop.set()
        flooder.join(timeout=5)
    assert sent[0] > 3000
    for end in (end_a, end_b):
        quality = end["quality"]
        assert quality["rtp_packets_lost"] == 0, end
        assert quality["rtp_packets_received"] >= 90, end  # 2 s of 20 ms packets
        assert quality["rtp_jitter_ms"] < 10, end
        assert quality["mos_score"] >= 4.0, end
    assert metric(callee, "callboard_media_ticks_skipped") == skipped_before
    assert callee.running() and caller.running()
    for server in servers:
        assert "Traceback" not in server.log_text(), server.log_tail()
