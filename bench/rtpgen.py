"""A lean SIP + RTP load generator for the end-to-end benchmarks (bench/rooms.py).

It runs in its own process (pinned to the core the server under test does not use), so the
server's CPU is measured alone. It places N PCMU calls over SIP/UDP (callboard's sans-IO
parser reads the answers; the requests are plain text), then sends pre-encoded 20 ms PCMU
packets on every answered leg from one 20 ms tick (absolute deadlines, one UDP socket per leg)
and measures what comes back: packets, loss, interarrival jitter (RFC 3550), MOS.

Legs come in pairs, leg "a" and leg "b" of room k (the X-Bench-Room / X-Bench-Side headers
tell the orchestrator which legs to put together). In the first few rooms ("latency rooms"),
leg a sends silence with a short chirp every few hundred ms, from its own timer at a phase
offset (so the rooms sample different alignments against the server's clock), and leg b
records what it receives; cross-correlation then gives the one-way mouth-to-ear latency
through the server.

Control is JSON lines: commands on stdin, one answer per command on stdout.

    {"cmd": "setup", "target": "127.0.0.1:5060" | "loopback", "legs": 400, ...}
    {"cmd": "window_start"}   {"cmd": "window_end"}   {"cmd": "hangup"}   {"cmd": "exit"}

With target "loopback" there is no SIP and no server: leg a and leg b of each room send to each
other directly, which measures the generator's own baseline latency (it should be ~0).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import statistics
import struct
import sys
import time
from typing import Any

import numpy as np

from callboard.media.g711 import ulaw_decode, ulaw_encode
from callboard.media.quality import mos_score
from callboard.sdp.description import SessionDescription
from callboard.sdp.remote import remote_endpoint
from callboard.sip.errors import SipParseError
from callboard.sip.message import SipRequest, SipResponse, make_response, parse_message

PERIOD = 0.020
SAMPLES = 160  # 20 ms at 8 kHz
RATE = 8000
MAX_CATCH_UP = 3  # ticks; further behind, ticks are skipped (and counted), as the server does
HEADER = struct.Struct("!BBHII")
SEQ_TS = struct.Struct("!HI")
JITTER_BUCKETS = 10000  # |D| histogram, 0.1 ms buckets
IMPULSE_EVERY = 37  # ticks (0.74 s): not a multiple of anything periodic in the server
IMPULSE_SEARCH = 0.5  # seconds after the send time in which the impulse must arrive
T1 = 0.5  # SIP retransmission timer


def _now() -> float:
    return time.monotonic()


# --- audio ---------------------------------------------------------------------------------


def tone_payloads() -> list[bytes]:
    """One second (50 packets) of a 440 Hz tone at -18 dBFS: loops without a seam."""
    t = np.arange(RATE) / RATE
    pcm = (4000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    return [ulaw_encode(pcm[i : i + SAMPLES]) for i in range(0, RATE, SAMPLES)]


def noise_payloads() -> list[bytes]:
    """One second of white noise at about -30 dBFS (every packet different)."""
    pcm = np.random.default_rng(7).normal(0, 1000, RATE).clip(-32768, 32767).astype(np.int16)
    return [ulaw_encode(pcm[i : i + SAMPLES]) for i in range(0, RATE, SAMPLES)]


SILENCE = ulaw_encode(np.zeros(SAMPLES, dtype=np.int16))


def chirp() -> np.ndarray:
    """10 ms Hann-windowed linear chirp, 300 -> 3400 Hz: a sharp cross-correlation peak."""
    n = 80
    t = np.arange(n) / RATE
    duration = n / RATE
    phase = 2 * np.pi * (300 * t + (3400 - 300) * t * t / (2 * duration))
    return (20000 * np.hanning(n) * np.sin(phase)).astype(np.int16)


def impulse_packet() -> bytes:
    pcm = np.zeros(SAMPLES, dtype=np.int16)
    click = chirp()
    pcm[: click.size] = click
    return ulaw_encode(pcm)


def impulse_template() -> np.ndarray:
    """The chirp as it leaves the generator (through G.711), for the correlation."""
    return ulaw_decode(ulaw_encode(chirp())).astype(np.float64)


def impulse_latencies(
    capture: list[tuple[int, float, bytes]], sends: list[float], template: np.ndarray
) -> list[float | None]:
    """Arrival minus send time of each impulse, in seconds (None: not found).

    `capture` is what leg b received: (RTP timestamp, arrival time, PCMU payload). The stream
    is laid out on its RTP timeline; the time of timeline sample 0 is the median over nearby
    packets of (arrival - position / 8000), which takes out per-packet jitter; an impulse
    found at position p arrived at that base + p / 8000. The chirp starts at the first sample
    of the packet sent at `send`, so a zero-delay path gives 0.
    """
    if len(capture) < 10:
        return [None] * len(sends)
    ts0 = capture[0][0]
    pos = np.array([((ts - ts0 + 0x80000000) & 0xFFFFFFFF) - 0x80000000 for ts, _, _ in capture])
    pos -= pos.min()
    arrival = np.array([a for _, a, _ in capture])
    signal = np.zeros(int(pos.max()) + SAMPLES * 2)
    for p, (_, _, payload) in zip(pos, capture, strict=True):
        samples = ulaw_decode(payload)
        signal[p : p + samples.size] = samples
    offset = arrival - pos / RATE  # time of timeline sample 0, per packet
    m = template.size
    norm_t = float(np.sqrt(np.dot(template, template)))
    results: list[float | None] = []
    for send in sends:
        near = np.abs(arrival - send) < 1.0
        if near.sum() < 10:
            results.append(None)
            continue
        base = float(np.median(offset[near]))
        lo = max(0, int((send - base) * RATE) - SAMPLES)
        hi = min(signal.size - m, int((send - base + IMPULSE_SEARCH) * RATE))
        if hi <= lo:
            results.append(None)
            continue
        segment = signal[lo : hi + m]
        corr = np.correlate(segment, template, mode="valid")
        k = int(np.argmax(np.abs(corr)))
        energy = float(np.sqrt(np.dot(segment[k : k + m], segment[k : k + m])))
        if energy == 0 or abs(corr[k]) / (energy * norm_t) < 0.5:
            results.append(None)
            continue
        results.append(base + (lo + k) / RATE - send)
    return results


# --- statistics ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def histogram_percentile(hist: list[int], q: float, width: float) -> float:
    total = sum(hist)
    if not total:
        return float("nan")
    need = total * q / 100.0
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= need:
            return (i + 1) * width
    return len(hist) * width


class TickLog:
    """Lateness and busy time of recent ticks."""

    def __init__(self) -> None:
        self.late: list[float] = []
        self.busy: list[float] = []
        self.skipped = 0
        self.ticks = 0

    def reset(self) -> None:
        self.late = []
        self.busy = []
        self.skipped = 0
        self.ticks = 0

    def summary(self) -> dict[str, float | None]:
        if not self.ticks:
            return {"ticks": 0}
        return {
            "ticks": self.ticks,
            "late_p50_ms": round(percentile(self.late, 50) * 1e3, 2),
            "late_p99_ms": round(percentile(self.late, 99) * 1e3, 2),
            "late_max_ms": round(max(self.late, default=float("nan")) * 1e3, 2),
            "busy_p99_ms": round(percentile(self.busy, 99) * 1e3, 2),
            "skipped": self.skipped,
        }


class Ticker:
    """Calls `fn(step)` every 20 ms at absolute deadlines start + phase + i * period; `step`
    is 1 plus the number of ticks skipped just before (the RTP timestamp advances by that)."""

    def __init__(self, fn: Any, phase: float, log: TickLog) -> None:
        self.fn = fn
        self.log = log
        self.loop = asyncio.get_running_loop()
        # uvloop timers have millisecond resolution: lateness is measured on time.monotonic.
        self.start = self.loop.time() + phase
        self.mono_start = _now() + phase
        self.index = 1
        self.handle = self.loop.call_at(self.start + PERIOD, self._tick)

    def stop(self) -> None:
        self.handle.cancel()

    def _tick(self, step: int = 1) -> None:
        began = _now()
        self.log.late.append(began - (self.mono_start + self.index * PERIOD))
        self.fn(step)
        self.log.busy.append(_now() - began)
        self.log.ticks += 1
        self.index += 1
        behind = int((self.loop.time() - self.start) / PERIOD) - self.index
        step = 1
        if behind > MAX_CATCH_UP:
            self.log.skipped += behind
            self.index += behind
            step += behind
        self.handle = self.loop.call_at(self.start + self.index * PERIOD, self._tick, step)


# --- one leg ---------------------------------------------------------------------------------


class Leg(asyncio.DatagramProtocol):
    """One call: its SIP dialog state, its RTP socket, and what it received."""

    def __init__(self, gen: Generator, index: int, room: int, side: str) -> None:
        self.gen = gen
        self.index = index
        self.room = room
        self.side = side
        self.transport: asyncio.DatagramTransport | None = None
        self.rtp_port = 0
        self.call_id = f"{secrets.token_hex(8)}-{index}@bench"
        self.from_tag = secrets.token_hex(4)
        self.branch = ""
        self.to_header = ""
        self.request_uri = ""
        self.state = "idle"  # idle, inviting, established, failed, ending, ended
        self.status = 0
        self.sent_at = 0.0
        self.retransmit_at = math.inf
        self.retransmit_interval = T1
        self.request = b""  # the INVITE or BYE being sent (for retransmission)
        self.invite_at = 0.0
        self.answered_at = 0.0
        self.done: asyncio.Future[None] = gen.loop.create_future()
        self.remote: tuple[str, int] | None = None
        self.ssrc = secrets.randbits(32)
        self.seq = secrets.randbits(16)
        self.ts = secrets.randbits(32)
        self.tx = 0
        # Receive side: RFC 3550 A.1 / A.8, plus mean |D| over the window.
        self.rx = 0
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.last_arrival = 0.0
        self.last_ts = 0
        self.jitter = 0.0  # samples, RFC 3550 estimate
        self.abs_d_sum = 0.0
        self.abs_d_n = 0
        self.window_rx = 0
        self.window_expected = 0
        self.capture: list[tuple[int, float, bytes]] | None = None
        self.impulses: list[float] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        self.gen.socket_errors += 1

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = _now()
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            self.gen.bad_packets += 1
            return
        seq, ts = SEQ_TS.unpack_from(data, 2)
        if self.rx:
            if (seq - self.max_seq) & 0xFFFF < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 0x10000
                self.max_seq = seq
            d = (now - self.last_arrival) * RATE - (
                ((ts - self.last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            )
            if d < 0:
                d = -d
            self.jitter += (d - self.jitter) * 0.0625
            self.abs_d_sum += d
            self.abs_d_n += 1
            hist = self.gen.jitter_hist
            i = int(d * 1.25)  # samples -> 0.1 ms buckets
            hist[i if i < JITTER_BUCKETS else JITTER_BUCKETS - 1] += 1
        else:
            self.base_seq = self.max_seq = seq
        self.rx += 1
        self.last_arrival = now
        self.last_ts = ts
        if self.capture is not None and data[1] & 0x7F == 0:
            self.capture.append((ts, now, data[12 + 4 * (data[0] & 0x0F) :]))

    @property
    def expected(self) -> int:
        return self.cycles + self.max_seq - self.base_seq + 1 if self.rx else 0

    def send_rtp(self, payload: bytes, step: int = 1) -> None:
        self.seq = seq = (self.seq + 1) & 0xFFFF
        self.ts = ts = (self.ts + SAMPLES * step) & 0xFFFFFFFF
        assert self.transport is not None
        self.transport.sendto(HEADER.pack(0x80, 0, seq, ts, self.ssrc) + payload, self.remote)
        self.tx += 1

    def window_reset(self) -> None:
        self.window_rx = self.rx
        self.window_expected = self.expected
        self.abs_d_sum = 0.0
        self.abs_d_n = 0

    def window_figures(self) -> tuple[int, int, float]:
        """(received, lost, mean |D| in ms) since window_reset."""
        received = self.rx - self.window_rx
        lost = max(0, self.expected - self.window_expected - received)
        jitter = self.abs_d_sum / self.abs_d_n / 8.0 if self.abs_d_n else float("nan")
        return received, lost, jitter


# --- the generator -----------------------------------------------------------------------------


class SipEndpoint(asyncio.DatagramProtocol):
    def __init__(self, gen: Generator) -> None:
        self.gen = gen

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive
        try:
            message = parse_message(data)
        except SipParseError:
            self.gen.sip_errors += 1
            return
        if isinstance(message, SipResponse):
            self.gen.on_response(message)
        else:
            self.gen.on_request(message, addr)


class Generator:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.legs: list[Leg] = []
        self.by_call_id: dict[str, Leg] = {}
        self.sending: list[Leg] = []
        self.latency_legs: list[Leg] = []
        self.sip: asyncio.DatagramTransport | None = None
        self.sip_port = 0
        self.target: tuple[str, int] = ("127.0.0.1", 5060)
        self.payloads = tone_payloads()
        self.tick_index = 0
        self.ticks = TickLog()
        self.latency_ticks = TickLog()
        self.tickers: list[Ticker] = []
        self.jitter_hist = [0] * JITTER_BUCKETS
        self.bad_packets = 0
        self.socket_errors = 0
        self.sip_errors = 0
        self.retransmissions = 0
        self.remote_byes = 0
        self.impulses_on = False
        self.impulse = impulse_packet()
        self.window_cpu = 0.0
        self.window_t = 0.0
        self.rtcp_sink: asyncio.DatagramTransport | None = None
        self.rtcp_port = 0
        self.retransmitter: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.sip, _ = await self.loop.create_datagram_endpoint(
            lambda: SipEndpoint(self), local_addr=("127.0.0.1", 0)
        )
        self.sip_port = self.sip.get_extra_info("sockname")[1]
        # One socket takes every leg's RTCP (a=rtcp in each offer) and drops it.
        self.rtcp_sink, _ = await self.loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        self.rtcp_port = self.rtcp_sink.get_extra_info("sockname")[1]

    # --- setup ---

    async def setup(self, cmd: dict[str, Any]) -> dict[str, Any]:
        legs = int(cmd["legs"])
        audio = cmd.get("audio", "tone")
        self.payloads = {"tone": tone_payloads, "noise": noise_payloads}.get(
            audio, lambda: [SILENCE]
        )()
        latency_rooms = min(int(cmd.get("latency_rooms", 0)), legs // 2)
        for i in range(legs):
            leg = Leg(self, i, i // 2, "ab"[i % 2])
            await self.loop.create_datagram_endpoint(
                lambda leg=leg: leg, local_addr=("127.0.0.1", 0)
            )
            assert leg.transport is not None
            leg.rtp_port = leg.transport.get_extra_info("sockname")[1]
            self.legs.append(leg)
            self.by_call_id[leg.call_id] = leg
        self.tickers.append(Ticker(self._tick, 0.0, self.ticks))
        for room in range(latency_rooms):
            a, b = self.legs[2 * room], self.legs[2 * room + 1]
            self.latency_legs.append(a)
            b.capture = []
            phase = PERIOD * (room + 0.5) / latency_rooms
            self.tickers.append(Ticker(self._latency_sender(a), phase, self.latency_ticks))
        if cmd["target"] == "loopback":
            return self._loopback()
        host, port = cmd["target"].rsplit(":", 1)
        self.target = (host, int(port))
        self.retransmitter = asyncio.create_task(self._retransmit())
        outstanding = asyncio.Semaphore(int(cmd.get("max_outstanding", 32)))
        cps = float(cmd.get("cps", 0))
        started = _now()
        timeout = float(cmd.get("timeout", 120))

        async def place(leg: Leg) -> None:
            try:
                self._invite(leg)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(leg.done), timeout)
            finally:
                outstanding.release()

        tasks = []
        for i, leg in enumerate(self.legs):  # INVITEs go out in leg order: a before b
            if cps > 0:
                await asyncio.sleep(max(0.0, started + i / cps - _now()))
            await outstanding.acquire()
            tasks.append(asyncio.create_task(place(leg)))
        await asyncio.gather(*tasks)
        established = [leg for leg in self.legs if leg.state == "established"]
        setup_times = [leg.answered_at - leg.invite_at for leg in established]
        last = max((leg.answered_at for leg in established), default=_now())
        failed: dict[str, int] = {}
        for leg in self.legs:
            if leg.state != "established":
                key = f"{leg.state}:{leg.status}"
                failed[key] = failed.get(key, 0) + 1
        return {
            "established": len(established),
            "failed": failed,
            "setup_seconds": round(last - started, 3),
            "setup_per_s": round(len(established) / max(1e-9, last - started), 1),
            "setup_p50_ms": round(percentile(setup_times, 50) * 1e3, 1),
            "setup_p99_ms": round(percentile(setup_times, 99) * 1e3, 1),
            "sip_retransmissions": self.retransmissions,
        }

    def _loopback(self) -> dict[str, Any]:
        for a, b in zip(self.legs[::2], self.legs[1::2], strict=False):
            a.remote = ("127.0.0.1", b.rtp_port)
            b.remote = ("127.0.0.1", a.rtp_port)
            for leg in (a, b):
                leg.state = "established"
                if leg not in self.latency_legs:
                    self.sending.append(leg)
        return {"established": len(self.legs), "failed": {}, "setup_per_s": None}

    def _sdp(self, leg: Leg) -> bytes:
        return (
            f"v=0\r\no=bench {leg.index} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
            f"t=0 0\r\nm=audio {leg.rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=ptime:20\r\na=rtcp:{self.rtcp_port}\r\na=sendrecv\r\n"
        ).encode()

    def _send_sip(self, data: bytes) -> None:
        assert self.sip is not None
        self.sip.sendto(data, self.target)

    def _invite(self, leg: Leg) -> None:
        host, port = self.target
        body = self._sdp(leg)
        leg.branch = "z9hG4bK" + secrets.token_hex(8)
        leg.request = (
            f"INVITE sip:bench@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch={leg.branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:r{leg.room}{leg.side}@127.0.0.1>;tag={leg.from_tag}\r\n"
            f"To: <sip:bench@{host}:{port}>\r\n"
            f"Call-ID: {leg.call_id}\r\n"
            f"CSeq: 1 INVITE\r\n"
            f"Contact: <sip:gen@127.0.0.1:{self.sip_port}>\r\n"
            f"X-Bench-Room: {leg.room}\r\n"
            f"X-Bench-Side: {leg.side}\r\n"
            f"Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        leg.state = "inviting"
        leg.status = 0
        leg.invite_at = leg.sent_at = _now()
        leg.retransmit_interval = T1
        leg.retransmit_at = leg.sent_at + T1
        self._send_sip(leg.request)

    def _in_dialog(self, leg: Leg, method: str, cseq: int, branch: str) -> bytes:
        return (
            f"{method} {leg.request_uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:r{leg.room}{leg.side}@127.0.0.1>;tag={leg.from_tag}\r\n"
            f"To: {leg.to_header}\r\n"
            f"Call-ID: {leg.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()

    def on_response(self, response: SipResponse) -> None:
        leg = self.by_call_id.get(response.call_id)
        if leg is None:
            return
        _, method = response.cseq
        status = response.status
        if method == "INVITE":
            if status < 200:
                leg.retransmit_at = math.inf  # a provisional answer stops INVITE retransmission
                return
            leg.status = status
            if status >= 300:
                # ACK for a non-2xx final answer: same branch, To as answered (RFC 3261 17.1.1.3)
                ack = leg.request.split(b"\r\n", 1)[0].replace(b"INVITE", b"ACK", 1)
                to = response.headers.get("To") or ""
                self._send_sip(
                    ack
                    + (
                        f"\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch={leg.branch};rport"
                        f"\r\nMax-Forwards: 70\r\nFrom: <sip:r{leg.room}{leg.side}@127.0.0.1>"
                        f";tag={leg.from_tag}\r\nTo: {to}\r\nCall-ID: {leg.call_id}\r\n"
                        f"CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                    ).encode()
                )
                if leg.state == "inviting":
                    leg.state = "failed"
                    self._finish(leg)
                return
            if leg.state == "inviting":
                leg.to_header = response.headers.get("To") or ""
                contacts = response.contacts()
                leg.request_uri = (
                    str(contacts[0].uri)
                    if contacts
                    else f"sip:bench@{self.target[0]}:{self.target[1]}"
                )
                try:
                    session = SessionDescription.parse(response.body)
                    endpoint = remote_endpoint(session, session.media[0])
                except (ValueError, IndexError):
                    endpoint = None
                if endpoint is None:
                    leg.state = "failed"
                    self._finish(leg)
                    return
                leg.remote = (endpoint.ip, endpoint.port)
                leg.answered_at = _now()
                leg.state = "established"
                if leg not in self.latency_legs:
                    self.sending.append(leg)
                self._finish(leg)
            # ACK every 2xx (the first and its retransmissions).
            self._send_sip(self._in_dialog(leg, "ACK", 1, "z9hG4bK" + secrets.token_hex(8)))
        elif method == "BYE" and status >= 200 and leg.state == "ending":
            leg.state = "ended"
            leg.status = status
            self._finish(leg)

    def on_request(self, request: SipRequest, addr: tuple[str, int]) -> None:
        if request.method == "ACK":
            return
        leg = self.by_call_id.get((request.headers.get("Call-ID") or "").strip())
        body = b""
        if request.method == "INVITE" and leg is not None:
            body = self._sdp(leg)  # a re-INVITE: same media
        response = make_response(
            request,
            200 if leg is not None or request.method == "OPTIONS" else 481,
            body=body,
            content_type="application/sdp" if body else None,
            extra_headers=[("Contact", f"<sip:gen@127.0.0.1:{self.sip_port}>")],
        )
        assert self.sip is not None
        self.sip.sendto(response.to_bytes(), addr)
        if request.method == "BYE" and leg is not None and leg.state != "ended":
            self.remote_byes += 1
            leg.state = "ended"
            self._stop_sending(leg)
            self._finish(leg)

    def _finish(self, leg: Leg) -> None:
        leg.retransmit_at = math.inf
        if not leg.done.done():
            leg.done.set_result(None)

    def _stop_sending(self, leg: Leg) -> None:
        if leg in self.sending:
            self.sending.remove(leg)

    async def _retransmit(self) -> None:
        """Timer A / E: resend an unanswered INVITE or BYE, doubling up to 4 s, 7 times."""
        while True:
            await asyncio.sleep(0.1)
            now = _now()
            for leg in self.legs:
                if leg.retransmit_at <= now:
                    if now - leg.sent_at > 32:
                        leg.status = 408
                        leg.state = "failed" if leg.state == "inviting" else "ended"
                        self._finish(leg)
                        continue
                    self.retransmissions += 1
                    self._send_sip(leg.request)
                    leg.retransmit_interval = min(leg.retransmit_interval * 2, 4.0)
                    leg.retransmit_at = now + leg.retransmit_interval

    async def hangup(self, max_outstanding: int) -> dict[str, Any]:
        for ticker in self.tickers:
            ticker.stop()
        self.sending = []
        outstanding = asyncio.Semaphore(max_outstanding)

        async def bye(leg: Leg) -> None:
            async with outstanding:
                leg.done = self.loop.create_future()
                leg.state = "ending"
                leg.request = self._in_dialog(leg, "BYE", 2, "z9hG4bK" + secrets.token_hex(8))
                leg.sent_at = _now()
                leg.retransmit_interval = T1
                leg.retransmit_at = leg.sent_at + T1
                self._send_sip(leg.request)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(leg.done, 40)

        if self.retransmitter is not None:
            await asyncio.gather(*(bye(leg) for leg in self.legs if leg.state == "established"))
        return {
            "ended": sum(leg.state == "ended" for leg in self.legs),
            "remote_byes": self.remote_byes,
        }

    # --- media ---

    def _tick(self, step: int) -> None:
        payload = self.payloads[self.tick_index % len(self.payloads)]
        self.tick_index += 1
        pack = HEADER.pack
        for leg in self.sending:
            leg.seq = seq = (leg.seq + 1) & 0xFFFF
            leg.ts = ts = (leg.ts + SAMPLES * step) & 0xFFFFFFFF
            leg.transport.sendto(pack(0x80, 0, seq, ts, leg.ssrc) + payload, leg.remote)  # type: ignore[union-attr]
            leg.tx += 1

    def _latency_sender(self, leg: Leg) -> Any:
        count = 0

        def send(step: int) -> None:
            nonlocal count
            if leg.state != "established":
                return
            count += 1
            if self.impulses_on and count % IMPULSE_EVERY == 0:
                leg.impulses.append(_now())
                leg.send_rtp(self.impulse, step)
            else:
                leg.send_rtp(SILENCE, step)

        return send

    # --- measurement window ---

    def window_start(self) -> dict[str, Any]:
        for leg in self.legs:
            leg.window_reset()
            if leg.capture is not None:
                leg.capture.clear()
        for leg in self.latency_legs:
            leg.impulses.clear()
        self.jitter_hist = [0] * JITTER_BUCKETS
        self.ticks.reset()
        self.latency_ticks.reset()
        self.impulses_on = True
        self.window_cpu = time.process_time()
        self.window_t = _now()
        return {"started": True}

    def window_end(self) -> dict[str, Any]:
        seconds = _now() - self.window_t
        cpu = time.process_time() - self.window_cpu
        self.impulses_on = False
        rx_total = lost_total = 0
        jitters: list[float] = []
        moses: list[float] = []
        silent = 0
        due = seconds / PERIOD  # packets each leg should have received in the window
        for leg in self.legs:
            if leg.state != "established":
                continue
            received, lost, jitter = leg.window_figures()
            rx_total += received
            lost_total += lost
            if received == 0:
                silent += 1
                continue
            jitters.append(jitter)
            # A packet that never came is a gap to the listener whether or not its sequence
            # number was skipped: the MOS counts both.
            missing = min(1.0, max(lost, due - received) / due)
            moses.append(mos_score(missing, jitter))
        template = impulse_template()
        latencies: list[dict[str, Any]] = []
        for a in self.latency_legs:
            b = self.legs[a.index + 1]
            found = impulse_latencies(b.capture or [], a.impulses, template)
            ms = [round(x * 1e3, 2) for x in found if x is not None]
            latencies.append(
                {"room": a.room, "impulses": len(a.impulses), "found": len(ms), "ms": ms}
            )
        established = sum(leg.state == "established" for leg in self.legs)
        return {
            "seconds": round(seconds, 2),
            "legs": established,
            "rx_packets": rx_total,
            "lost_packets": lost_total,
            "loss_pct": round(100.0 * lost_total / max(1, rx_total + lost_total), 4),
            "rx_pps_per_leg": round(rx_total / max(1, established) / seconds, 2),
            # Packets that never came although none was lost (the sender skipped ticks).
            "underrun_pct": round(
                max(0.0, 100.0 * (1 - (rx_total + lost_total) / (established * seconds / PERIOD)))
                if established
                else 0.0,
                2,
            ),
            "silent_legs": silent,
            "jitter_ms_mean": round(statistics.fmean(jitters), 3) if jitters else None,
            "jitter_ms_max_leg": round(max(jitters), 3) if jitters else None,
            "transit_delta_p50_ms": histogram_percentile(self.jitter_hist, 50, 0.1),
            "transit_delta_p99_ms": histogram_percentile(self.jitter_hist, 99, 0.1),
            "mos_min": round(min(moses), 2) if moses else None,
            "mos_mean": round(statistics.fmean(moses), 2) if moses else None,
            "gen_cpu_pct": round(100.0 * cpu / seconds, 1),
            "gen_tick": self.ticks.summary(),
            "gen_latency_tick": self.latency_ticks.summary(),
            "bad_packets": self.bad_packets,
            "socket_errors": self.socket_errors,
            "remote_byes": self.remote_byes,
            "latency": latencies,
        }


async def serve() -> None:
    gen = Generator()
    await gen.open()
    reader = asyncio.StreamReader()
    await gen.loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def answer(payload: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(payload) + "\n")
        sys.stdout.flush()

    answer({"ready": True, "sip_port": gen.sip_port, "pid": os.getpid()})
    while line := await reader.readline():
        cmd = json.loads(line)
        name = cmd.get("cmd")
        if name == "setup":
            answer(await gen.setup(cmd))
        elif name == "window_start":
            answer(gen.window_start())
        elif name == "window_end":
            answer(gen.window_end())
        elif name == "hangup":
            answer(await gen.hangup(int(cmd.get("max_outstanding", 32))))
        elif name == "exit":
            answer({"bye": True})
            return
        else:
            answer({"error": f"unknown command {name!r}"})


def main() -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve())
    else:
        uvloop.run(serve())


if __name__ == "__main__":
    main()
