"""AI-agent benchmark (issue 11): the latency a leg agent session adds each way, how soon a
barge-in silences the agent on the wire, and what N agent sessions cost the server.

The server is started as users start it (bench/harness.py), pinned to core 1 (everything else
on core 0; --no-pin leaves it to the scheduler), and configured by environment for the
provider stand-ins of tests/helpers (ElevenLabs, Deepgram, VAPI), which run in this process in
uvicorn threads. For --latency and --barge-in this process is also the caller: rtpgen's SIP +
RTP generator (bench/rtpgen.py), in-process, places one PCMU call and sends 20 ms packets of
silence with 440 Hz bursts; the agent is attached to the server's side of that call, one
provider after the other. Every time is time.monotonic() taken in this one process (stand-in
threads included), so they compare directly; the GIL switch interval is lowered so that a
thread waiting for the GIL skews a timestamp by well under a millisecond.

Both ends are walked over every phase of the server's 20 ms clock (a fixed phase would give a
fixed wait for the next tick): the caller's packets move 20 ms / turns later before each turn,
and the stand-ins hold back each reply's first chunk and each interruption by a varying part
of a tick (Phases) before noting its time.

Figures (over many turns: p50 / p95 / max / min, in ms):
- inbound: the bench sends the first RTP packet of a burst -> the stand-in's tone agent is fed
  the first 20 ms frame of it (RMS >= 1000, the stand-ins' own "voiced" threshold). Covers UDP,
  the jitter buffer, the wait for the tick, decode and 8 -> 16 kHz, the session's queue and
  sender, the WebSocket and the stand-in's parsing.
- outbound: the stand-in's speaker takes the reply's first chunk to send -> the first RTP packet
  carrying the reply (RMS >= 1000) arrives at the bench. Covers the WebSocket, the client's
  decode, the paced buffer, the wait for the tick, 16 -> 8 kHz, encode and UDP.
- barge-in: the stand-in notes its interruption (knobs.log "interrupt", just before it sends its
  provider's signal; Deepgram's UserStartedSpeaking goes just before the note) -> the last RTP
  packet with reply audio arrives at the bench (`cut_ms`; that packet carries only the
  resampler's ring-out of the flushed speech: `last_packet_reply_audio_ms`) and -> the first
  silent packet (`silent_ms`).
- load: N PCMU calls (N - 1 from bench/rtpgen.py in its own process, a 440 Hz tone on every
  leg; one from this process, the probe, a 200 ms burst every second), each server leg with a
  Pipecat agent on its own pipeline of one real pipecat-ai echo bot process
  (tests/helpers/pipecat_bots.py --kind echo --count N); the same N calls without agents on a
  fresh server are the baseline. Server CPU from /proc over the window, per call-second; the
  clock's quantiles from /metrics (they cover its last 3000 ticks: the window and up to 30 s
  before it) and, exactly, its "ran N ms late" warnings (ticks over 10 ms late) in the window
  from its log. The probe proves the echo flows and times its round trip (the bot's pipeline
  included).

    python bench/agents.py --latency [--provider elevenlabs|deepgram|vapi|all] [--turns 20]
    python bench/agents.py --barge-in [--provider all] [--turns 12]
    python bench/agents.py --load [N=50] [--seconds 30]
    ... [--runs N] [--no-pin]

Each prints one JSON line per provider (per run). Other work on the machine shows in
`machine_busy_pct` / `core_busy_pct` (% of one core) against `ours_pct` (and, for --load,
`others_on_server_core_pct`).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from harness import Instance, pinned, process_cpu_seconds, watch_vsi  # noqa: E402
from rooms import GeneratorProcess, RoomMaker, source_state  # noqa: E402
from rtpgen import PERIOD, SILENCE, Generator  # noqa: E402
from tests.helpers.agent_calls import CloudAgent, start_cloud_agent  # noqa: E402
from tests.helpers.standins import agent_common, deepgram_agent, elevenlabs_agent, vapi  # noqa: E402
from tests.helpers.standins.stt_common import (  # noqa: E402
    VOICED_RMS,
    Heard,
    ToneRecogniser,
)

from callboard.media.g711 import ulaw_decode, ulaw_encode  # noqa: E402

T = TypeVar("T")
SERVER_CPU: int | None = 1
BENCH_CPU: int | None = 0  # this process, the load generator and the echo bot
PROVIDERS = ("elevenlabs", "deepgram", "vapi")
BURST_HZ = 440.0
BURST_SECONDS = 0.3  # the stand-ins' tone agent needs a burst, then 0.3 s of quiet
LATENCY_REPLY_SECONDS = 0.5
BARGE_REPLY_SECONDS = 5.0
BARGE_AFTER = 0.8  # seconds into the reply (as heard at the bench) the caller barges in
TURN_GAP = 0.25  # quiet between a reply's end and the next burst
PROBE_EVERY = 1.0  # load probe: a burst this often...
PROBE_BURST = 0.2  # ...this long
RTP_LOW_LATENCY = 36000
RTP_LOW_LOAD = 40000
LATE_LINE = re.compile(r"(\S+ \S+) WARNING callboard\.media\.clock: media clock ran (\d+) ms late")


# --- timing hooks on the stand-ins ---------------------------------------------------------------


class Phases:
    """Delays that put the stand-ins' reactions at every phase of the server's 20 ms clock.

    A stand-in reacts to a frame the server has just sent, i.e. always a millisecond or two
    after one of the server's ticks, and a 20 ms clock turns that fixed phase into a fixed wait
    for the next tick; a real provider's answers come at any phase. So the first chunk of each
    reply (and, in --barge-in, each interruption) is held back by a fraction of a tick that
    walks over the whole tick in golden-ratio steps (evenly spread for any number of turns),
    before its time is noted."""

    def __init__(self) -> None:
        self.count = 0
        self.barge_in = False  # hold back interruptions too

    def wait(self) -> None:
        self.count += 1
        time.sleep((self.count * 0.6180339887) % 1.0 * PERIOD)  # the stand-in's thread only


PHASES = Phases()


class NotedChunks(list[bytes]):
    """A reply's chunks that note ("chunk0" in the knobs' log) when the stand-in's speaker takes
    the first one to send: every stand-in's speaker iterates the chunks and sends each at once."""

    def __init__(self, chunks: list[bytes], knobs: agent_common.AgentKnobs) -> None:
        super().__init__(chunks)
        self.knobs = knobs

    def __iter__(self) -> Any:
        first = True
        for chunk in super().__iter__():
            if first:
                PHASES.wait()
                self.knobs.note("chunk0")
                first = False
            yield chunk


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


class TimedToneAgent(agent_common.ToneAgent):
    """The stand-ins' tone agent, plus two notes with monotonic times: "voiced_in" when it is fed
    the first voiced frame after quiet, and "chunk0" (NotedChunks) for each reply; in --barge-in
    an interruption is held back by PHASES before ToneAgent notes and returns it."""

    def __init__(self, in_rate: int, out_rate: int, knobs: agent_common.AgentKnobs) -> None:
        super().__init__(in_rate, out_rate, knobs)
        self._voiced = False

    def feed(self, samples: np.ndarray) -> list[agent_common.AgentAction]:
        if len(samples):
            voiced = rms(samples) >= VOICED_RMS
            if voiced and not self._voiced:
                self.knobs.note("voiced_in")
                # Deepgram's stand-in signals the barge-in before feeding us (PhasedRecogniser).
                deepgram = isinstance(self.knobs, deepgram_agent.DeepgramAgentKnobs)
                if PHASES.barge_in and not deepgram and time.monotonic() < self.playing_until:
                    PHASES.wait()
            self._voiced = voiced
        return super().feed(samples)

    def speak(self, seconds: float | None = None) -> agent_common.Reply:
        reply = super().speak(seconds)
        return agent_common.Reply(NotedChunks(reply.chunks, self.knobs), reply.seconds)


class PhasedRecogniser(ToneRecogniser):
    """Deepgram's stand-in sends UserStartedSpeaking (the barge-in) when its own recogniser sees
    a burst start, before its tone agent hears the frame: in --barge-in, hold that back."""

    def feed(self, samples: np.ndarray) -> list[Heard]:
        if PHASES.barge_in and not self.in_burst and rms(samples) >= VOICED_RMS:
            PHASES.wait()
        return super().feed(samples)


# The stand-in modules build these by name: swap in the timed ones (in this process only).
for _module in (elevenlabs_agent, deepgram_agent, vapi):
    _module.ToneAgent = TimedToneAgent
deepgram_agent.ToneRecogniser = PhasedRecogniser


# --- the caller: one call from this process ------------------------------------------------------


def burst_payloads() -> list[bytes]:
    """One second (50 packets) of the 440 Hz test tone at the stand-ins' amplitude (RMS ~7000)."""
    t = np.arange(8000) / 8000
    pcm = np.rint(10_000 * np.sin(2 * np.pi * BURST_HZ * t)).astype(np.int16)
    return [ulaw_encode(pcm[i : i + 160]) for i in range(0, 8000, 160)]


def voiced(payload: bytes) -> bool:
    pcm = ulaw_decode(payload).astype(np.float64)
    return bool(pcm.size) and float(np.sqrt(np.mean(pcm * pcm))) >= VOICED_RMS


class Caller(Generator):
    """rtpgen's generator with one call whose audio this script writes: silence, and a 440 Hz
    burst when asked; `burst_starts` keeps the send time of each burst's first packet, and
    `heard` what came back."""

    def __init__(self) -> None:
        super().__init__()
        self.tone = burst_payloads()
        self.burst_left = 0
        self.burst_index = 0
        self.burst_starts: list[float] = []
        self.heard = Incoming()

    def burst(self, seconds: float) -> int:
        """Start a burst at the next tick; its index in `burst_starts`."""
        self.burst_left = max(1, round(seconds / PERIOD))
        self.burst_index = 0
        return len(self.burst_starts)

    async def burst_sent(self, seconds: float) -> float:
        index = self.burst(seconds)
        return await until(
            lambda: self.burst_starts[index] if len(self.burst_starts) > index else None,
            2.0,
            "the burst did not go out",
        )

    def shift(self, seconds: float) -> None:
        """Send every packet from the next one on `seconds` later (RTP timestamps unchanged):
        the bursts then sample every phase of the server's clock."""
        for ticker in self.tickers:
            ticker.start += seconds
            ticker.mono_start += seconds

    def _tick(self, step: int) -> None:
        for leg in self.sending:
            payload = SILENCE
            if self.burst_left > 0:
                payload = self.tone[self.burst_index % len(self.tone)]
                if self.burst_index == 0:
                    self.burst_starts.append(time.monotonic())
                self.burst_index += 1
                self.burst_left -= 1
            leg.send_rtp(payload, step)

    async def place(self, target: str) -> None:
        result = await self.setup(
            {"target": target, "legs": 1, "latency_rooms": 0, "audio": "silence", "timeout": 20}
        )
        if result["established"] != 1:
            raise RuntimeError(f"the bench's call failed: {result}")
        self.legs[0].capture = self.heard.capture

    def close(self) -> None:
        for transport in (self.sip, self.rtcp_sink, *(leg.transport for leg in self.legs)):
            if transport is not None:
                transport.close()


class Incoming:
    """The RTP the bench's call received: arrival times and whether each packet was voiced."""

    def __init__(self) -> None:
        self.capture: list[tuple[int, float, bytes]] = []  # filled by rtpgen's Leg
        self.arrivals: list[float] = []
        self.voiced: list[bool] = []

    def _update(self) -> None:
        for _, at, payload in self.capture[len(self.arrivals) :]:
            self.arrivals.append(at)
            self.voiced.append(voiced(payload))

    def first(self, after: float, is_voiced: bool = True, before: float = float("inf")) -> int:
        """Index of the first packet arriving after `after` (and before `before`) that is (not)
        voiced; -1 if none yet."""
        self._update()
        for i in range(bisect.bisect_right(self.arrivals, after), len(self.arrivals)):
            if self.arrivals[i] >= before:
                break
            if self.voiced[i] == is_voiced:
                return i
        return -1

    async def wait(self, after: float, is_voiced: bool, timeout: float) -> int:
        what = "reply audio" if is_voiced else "silence"
        return await until(
            lambda: None if (i := self.first(after, is_voiced)) < 0 else i,
            timeout,
            f"no {what} at the bench",
        )

    def in_window(self, start: float, end: float) -> tuple[int, int]:
        """(packets, voiced packets) that arrived in [start, end)."""
        self._update()
        lo, hi = bisect.bisect_left(self.arrivals, start), bisect.bisect_left(self.arrivals, end)
        return hi - lo, sum(self.voiced[lo:hi])


# --- small helpers -------------------------------------------------------------------------------


async def until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.002)


def note_after(knobs: agent_common.AgentKnobs, what: str, after: float) -> float | None:
    return next((t for t, _ in knobs.events(what) if t > after), None)


def spread(seconds: list[float]) -> dict[str, Any]:
    if not seconds:
        return {"n": 0}
    ms = np.array(seconds) * 1e3
    return {
        "n": len(seconds),
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "max": round(float(ms.max()), 2),
        "min": round(float(ms.min()), 2),
    }


def read_log(path: str) -> list[str]:
    """The server's log lines (it runs at LOG_LEVEL=warning: warnings and errors). Read before
    the next instance starts: harness.Instance names every log /tmp/bench-OMP_NUM_THREADS.log
    (its loop over the BLAS variables reuses `name`), so each instance overwrites the last."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def log_summary(lines: list[str], windows: list[tuple[float, float]]) -> dict[str, Any]:
    """The log's warnings, and the clock's "ran N ms late" ones (ticks over 10 ms late) that
    fall in each (wall-clock) window: exact, where the /metrics quantiles cover 60 s."""
    late: list[list[int]] = [[] for _ in windows]
    for line in lines:
        match = LATE_LINE.match(line)
        if match is None:
            continue
        stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for i, (start, end) in enumerate(windows):
            if start <= stamp <= end:
                late[i].append(int(match[2]))
    others = [line[:240] for line in lines if LATE_LINE.match(line) is None]
    return {"lines": len(lines), "clock_late_ms_in_window": late, "not_clock": others[:4]}


def core_busy() -> list[float]:
    """Busy CPU seconds of each core since boot (/proc/stat: all but idle and iowait)."""
    cores = []
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                fields = [int(v) for v in values]
                cores.append((sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK"))
    return cores


class MachineLoad:
    """How busy the machine was while a measurement ran, in % of one core: each core's busy
    time from /proc/stat, and ours (this process and `pids`). /proc/stat is sampled at the
    kernel's tick while per-process times are exact: with light, bursty loads (one call) the
    machine can read less busy than we alone were; under load the two agree."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.t0, self.cores0, self.ours0 = time.monotonic(), core_busy(), self._ours()

    def _ours(self) -> float:
        total = time.process_time()
        for pid in self.pids():
            with contextlib.suppress(OSError):
                total += process_cpu_seconds(pid)
        return total

    def figures(self) -> dict[str, Any]:
        seconds = max(time.monotonic() - self.t0, 1e-9)
        cores = [100 * (b - a) / seconds for a, b in zip(self.cores0, core_busy(), strict=True)]
        return {
            "machine_busy_pct": round(sum(cores), 1),
            "core_busy_pct": [round(c, 1) for c in cores],
            "ours_pct": round(100 * (self._ours() - self.ours0) / seconds, 1),
        }


# --- one call with an agent (--latency, --barge-in) ----------------------------------------------


class AgentCall:
    """The server under test, its VSI stream, and the bench's call into it."""

    def __init__(self, server: Instance) -> None:
        self.server = server
        self.http = httpx.AsyncClient(base_url=server.base_url, timeout=30)
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.caller = Caller()
        self.leg_id = ""

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append((time.monotonic(), event))
        leg_id = event.get("leg_id")
        if event.get("type") == "leg.ringing" and isinstance(leg_id, str):
            self.leg_id = self.leg_id or leg_id
            task = asyncio.get_running_loop().create_task(
                self.http.post(f"/v1/legs/{leg_id}/answer")
            )
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def event(self, kind: str, since: float, timeout: float = 10.0) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for t, e in self.events:
                if t >= since and e.get("type") == kind and e.get("leg_id") == self.leg_id:
                    return e
            return None

        return await until(find, timeout, f"no {kind}")

    async def open(self) -> None:
        self.tasks.add(
            asyncio.create_task(watch_vsi(self.server.http_port, self.on_event, self.stop))
        )
        await asyncio.sleep(0.3)
        await self.caller.open()
        since = time.monotonic()
        await self.caller.place(f"127.0.0.1:{self.server.sip_port}")
        await self.event("leg.connected", since)

    async def attach(self, provider: CloudAgent) -> None:
        since = time.monotonic()
        r = await self.http.post(
            f"/v1/legs/{self.leg_id}/agent/{provider.provider}", json=provider.body
        )
        if r.status_code != 200:
            raise RuntimeError(f"attach {provider.provider}: {r.status_code} {r.text}")
        await self.event("agent.connected", since)
        await asyncio.sleep(0.3)

    async def detach(self) -> None:
        since = time.monotonic()
        await self.http.delete(f"/v1/legs/{self.leg_id}/agent")
        await self.event("agent.disconnected", since)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.caller.hangup(1), 10)
        self.caller.close()
        self.stop.set()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.http.aclose()


async def latency_turns(call: AgentCall, provider: CloudAgent, turns: int) -> dict[str, Any]:
    knobs = provider.knobs
    knobs.reply_seconds = LATENCY_REPLY_SECONDS
    heard = call.caller.heard
    inbound: list[float] = []
    outbound: list[float] = []
    failed: list[str] = []
    for turn in range(turns):
        call.caller.shift(PERIOD / turns)  # one walk over the server's tick in all
        await asyncio.sleep(0.1)
        try:
            sent = await call.caller.burst_sent(BURST_SECONDS)
            first = heard.arrivals[await heard.wait(sent, True, 5.0)]
            voiced_in = note_after(knobs, "voiced_in", sent)
            chunk0 = note_after(knobs, "chunk0", voiced_in or sent)
            if voiced_in is None or chunk0 is None or first < chunk0:
                failed.append(f"turn {turn}: voiced_in={voiced_in} chunk0={chunk0} heard={first}")
            else:
                inbound.append(voiced_in - sent)
                outbound.append(first - chunk0)
            await heard.wait(first, False, LATENCY_REPLY_SECONDS + 3.0)
        except TimeoutError as exc:
            failed.append(f"turn {turn}: {exc}")
        await asyncio.sleep(TURN_GAP)
    return {
        "turns": turns,
        "inbound_ms": spread(inbound),
        "outbound_ms": spread(outbound),
        "failed": failed[:5],
    }


async def barge_in_turns(call: AgentCall, provider: CloudAgent, turns: int) -> dict[str, Any]:
    knobs = provider.knobs
    knobs.reply_seconds = BARGE_REPLY_SECONDS
    heard = call.caller.heard
    cut: list[float] = []
    silent: list[float] = []
    tail: list[float] = []
    failed: list[str] = []
    sent = await call.caller.burst_sent(BURST_SECONDS)
    reply = heard.arrivals[await heard.wait(sent, True, 5.0)]
    for turn in range(turns):
        try:
            await asyncio.sleep(max(0.0, reply + BARGE_AFTER - time.monotonic()))
            sent = await call.caller.burst_sent(BURST_SECONDS)
            quiet = await heard.wait(sent, False, 3.0)
            interrupt = note_after(knobs, "interrupt", sent)
            quiet_at = heard.arrivals[quiet]
            last_voiced = heard.arrivals[quiet - 1] if quiet and heard.voiced[quiet - 1] else None
            if interrupt is None or last_voiced is None or quiet_at - interrupt > 1.0:
                failed.append(f"turn {turn}: interrupt={interrupt} silence={quiet_at}")
            else:
                cut.append(last_voiced - interrupt)
                silent.append(quiet_at - interrupt)
                # How much reply audio that last packet carries (the resampler's ring-out).
                pcm = ulaw_decode(heard.capture[quiet - 1][2])
                tail.append(float(np.count_nonzero(np.abs(pcm) >= VOICED_RMS)) / 8000)
            # The barge-in is a turn of its own: the agent answers it (a new 5 s reply).
            reply = heard.arrivals[await heard.wait(quiet_at, True, 5.0)]
        except TimeoutError as exc:
            failed.append(f"turn {turn}: {exc}")
            with contextlib.suppress(TimeoutError):
                await heard.wait(time.monotonic(), False, BARGE_REPLY_SECONDS + 1)
            sent = await call.caller.burst_sent(BURST_SECONDS)
            reply = heard.arrivals[await heard.wait(sent, True, 5.0)]
    return {
        "turns": turns,
        "cut_ms": spread(cut),
        "silent_ms": spread(silent),
        "last_packet_reply_audio_ms": spread(tail),
        "failed": failed[:5],
    }


async def one_call_run(mode: str, names: list[str], turns: int, run: int) -> list[dict[str, Any]]:
    providers = [start_cloud_agent(name) for name in names]
    env: dict[str, str] = {}
    for provider in providers:
        env.update(provider.env)
    PHASES.barge_in = mode == "barge-in"
    server = Instance(f"agents-{mode}", RTP_LOW_LATENCY, cpu=SERVER_CPU, extra_env=env)
    call: AgentCall | None = None
    rows: list[dict[str, Any]] = []
    windows: list[tuple[float, float]] = []  # each provider's, from its attach to its detach
    try:
        call = AgentCall(server)
        await call.open()
        for provider in providers:
            load = MachineLoad(lambda: [server.pid])
            cpu0, t0, wall0 = server.cpu_seconds(), time.monotonic(), time.time()
            await call.attach(provider)
            if mode == "latency":
                figures = await latency_turns(call, provider, turns)
            else:
                figures = await barge_in_turns(call, provider, turns)
            await call.detach()
            window = time.monotonic() - t0
            windows.append((wall0, time.time()))
            rows.append(
                {
                    "mode": mode,
                    "provider": provider.provider,
                    "run": run,
                    **figures,
                    "seconds": round(window, 1),
                    "server_cpu_pct": round(100 * (server.cpu_seconds() - cpu0) / window, 1),
                    **load.figures(),
                }
            )
            await asyncio.sleep(0.2)
    finally:
        if call is not None:
            await call.close()
        server.stop()
        for provider in providers:
            provider.stop()
    log = log_summary(read_log(server.log.name), windows)
    for i, row in enumerate(rows):
        row.update(
            clock_late_ms=log["clock_late_ms_in_window"][i],
            server_log={"lines": log["lines"], "not_clock": log["not_clock"]},
            cores=os.cpu_count(),
            loadavg=round(os.getloadavg()[0], 2),
            source=source_state(),
        )
    return rows


# --- N calls with Pipecat agents (--load) --------------------------------------------------------


def free_port_run(count: int) -> int:
    """A first port P with P..P+count-1 all free on 127.0.0.1 (checked, not reserved)."""
    for base in range(50000, 60000 - count, count + 7):
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


class EchoBots:
    """tests/helpers/pipecat_bots.py --kind echo --count N: N pipelines in one process."""

    def __init__(self, count: int, cpu: int | None) -> None:
        self.count = count
        self.cpu = cpu
        self.port = free_port_run(count)
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Task[None] | None = None

    async def start(self) -> None:
        cmd = [sys.executable, "-m", "tests.helpers.pipecat_bots", "--kind", "echo"]
        cmd += ["--port", str(self.port), "--count", str(self.count)]
        with open("/tmp/bench-agents-bots.log", "wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *pinned(cmd, self.cpu), cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=log
            )
        self.ready = asyncio.create_task(self._ready())

    async def _ready(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            if line.startswith(b"ready "):
                return
        raise RuntimeError("the echo bots exited (see /tmp/bench-agents-bots.log)")

    async def wait_ready(self, timeout: float = 90) -> None:
        assert self.ready is not None
        await asyncio.wait_for(asyncio.shield(self.ready), timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.port + index}"

    async def stop(self) -> None:
        if self.ready is not None:
            self.ready.cancel()
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def load_phase(
    n: int, seconds: float, warmup: float, bots: EchoBots, agents: bool
) -> dict[str, Any]:
    name = f"agents-load-{'agents' if agents else 'baseline'}"
    server = Instance(name, RTP_LOW_LOAD, cpu=SERVER_CPU)
    maker = RoomMaker(server.base_url, use_rooms=False, workers=8)
    agent_events: list[dict[str, Any]] = []
    first_ringing: list[str] = []
    attach_window = (0.0, 0.0)
    stop = asyncio.Event()

    def on_event(event: dict[str, Any]) -> None:
        maker.on_event(event)
        kind = str(event.get("type"))
        if kind == "leg.ringing" and not first_ringing:
            first_ringing.append(str(event.get("leg_id")))
        elif kind.startswith("agent."):
            agent_events.append(event)

    background = [
        asyncio.create_task(watch_vsi(server.http_port, on_event, stop)),
        asyncio.create_task(maker.poll_ringing()),
    ]
    gen: GeneratorProcess | None = None
    probe: Caller | None = None
    prober: asyncio.Task[None] | None = None
    attach_errors: list[str] = []
    try:
        await asyncio.sleep(0.3)
        # The probe call first, so that the first leg to ring on the server is the probe's.
        probe = Caller()
        await probe.open()
        await probe.place(f"127.0.0.1:{server.sip_port}")
        gen = await GeneratorProcess.start(BENCH_CPU)
        setup = await gen.call(
            "setup", target=f"127.0.0.1:{server.sip_port}", legs=n - 1, latency_rooms=0
        )
        background[1].cancel()
        listed = (await maker.client.get("/v1/legs")).json()
        legs = [leg["id"] for leg in listed if leg.get("state") == "connected"]
        legs = [leg for leg in legs if leg != first_ringing[0]] + [first_ringing[0]]
        if agents:
            await bots.wait_ready()

            async def attach(index: int, leg_id: str) -> None:
                body = {"websocket_url": bots.url(index)}
                r = await maker.client.post(f"/v1/legs/{leg_id}/agent/pipecat", json=body)
                if r.status_code != 200:
                    attach_errors.append(f"{leg_id}: {r.status_code} {r.text[:200]}")

            attach_wall = time.time()
            await asyncio.gather(*(attach(i, leg) for i, leg in enumerate(legs)))
            with contextlib.suppress(TimeoutError):
                await until(
                    lambda: (
                        True
                        if sum(e["type"] == "agent.connected" for e in agent_events) >= len(legs)
                        else None
                    ),
                    30,
                    "agents",
                )
            attach_window = (attach_wall, time.time())
        connected = sum(e["type"] == "agent.connected" for e in agent_events)

        async def probe_bursts() -> None:
            assert probe is not None
            while True:
                probe.burst(PROBE_BURST)
                await asyncio.sleep(PROBE_EVERY)

        prober = asyncio.create_task(probe_bursts())
        await bots.wait_ready()  # its start-up is not in the baseline's window either
        await asyncio.sleep(warmup)

        metrics0 = server.metrics()
        late = 'callboard_media_tick_{}_seconds{{quantile="{}"}}'
        await gen.call("window_start")
        load = MachineLoad(lambda: [server.pid, bots.pid, gen.pid if gen else server.pid])
        cpu0, t0, wall0 = server.cpu_seconds(), time.monotonic(), time.time()
        bot0, gen0 = process_cpu_seconds(bots.pid), process_cpu_seconds(gen.pid)
        starts0 = len(probe.burst_starts)
        await asyncio.sleep(seconds)
        cpu1, t1, wall1 = server.cpu_seconds(), time.monotonic(), time.time()
        bot1, gen1 = process_cpu_seconds(bots.pid), process_cpu_seconds(gen.pid)
        machine = load.figures()
        at_gen = await gen.call("window_end")
        metrics = server.metrics()
        rss = server.rss_mb()
        prober.cancel()
        # The probe's bursts in the window, and the echo's first voiced packet after each.
        starts = probe.burst_starts[starts0:]
        rtt = []
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else t1
            k = probe.heard.first(start, True, before=end)
            if k >= 0:
                rtt.append(probe.heard.arrivals[k] - start)
        packets, voiced_packets = probe.heard.in_window(t0, t1)
        errors_during = [
            e
            for e in agent_events
            if e["type"] == "agent.disconnected" and e.get("reason") == "error"
        ]
        await gen.call("hangup")
        await asyncio.wait_for(probe.hangup(1), 10)
        with contextlib.suppress(TimeoutError):  # every session should end as "hangup"
            await until(
                lambda: (
                    True
                    if sum(e["type"] == "agent.disconnected" for e in agent_events) >= connected
                    else None
                ),
                10,
                "agent.disconnected",
            )
    finally:
        stop.set()
        if prober is not None:
            prober.cancel()
        for task in background:
            task.cancel()
        await maker.close()
        if gen is not None:
            await gen.close()
        if probe is not None:
            probe.close()
        server.stop()

    window = t1 - t0
    log = log_summary(read_log(server.log.name), [attach_window, (wall0, wall1)])
    calls = setup["established"] + 1
    disconnects: dict[str, int] = {}
    for e in agent_events:
        if e["type"] == "agent.disconnected":
            key = str(e.get("reason"))
            disconnects[key] = disconnects.get(key, 0) + 1
    return {
        "agents": agents,
        "calls": calls,
        "setup_failed": setup["failed"],
        "agents_connected": connected if agents else 0,
        "attach_errors": attach_errors[:3],
        "agent_errors": [e.get("error") for e in errors_during][:3],
        "agent_disconnects": disconnects,
        "window_s": round(window, 1),
        "server_cpu_pct": round(100 * (cpu1 - cpu0) / window, 1),
        # What else ran on the server's core (its own core when pinned): contention.
        "others_on_server_core_pct": (
            round(machine["core_busy_pct"][SERVER_CPU] - 100 * (cpu1 - cpu0) / window, 1)
            if SERVER_CPU is not None
            else None
        ),
        "server_cpu_us_per_call_s": round((cpu1 - cpu0) / window / calls * 1e6, 1),
        "rss_mb": round(rss, 1),
        "tick_late_p50_ms": round(metrics.get(late.format("lateness", "0.5"), 0) * 1e3, 2),
        "tick_late_p99_ms": round(metrics.get(late.format("lateness", "0.99"), 0) * 1e3, 2),
        "tick_late_p99_ms_at_window_start": round(
            metrics0.get(late.format("lateness", "0.99"), 0) * 1e3, 2
        ),
        "tick_busy_p99_ms": round(metrics.get(late.format("busy", "0.99"), 0) * 1e3, 2),
        "ticks_skipped": metrics.get("callboard_media_ticks_skipped", 0)
        - metrics0.get("callboard_media_ticks_skipped", 0),
        "gen_loss_pct": at_gen["loss_pct"],
        "gen_underrun_pct": at_gen["underrun_pct"],
        "gen_rx_pps_per_leg": at_gen["rx_pps_per_leg"],
        "gen_tick_late_p99_ms": at_gen["gen_tick"].get("late_p99_ms"),
        "probe": {
            "bursts": len(starts),
            "echoed": len(rtt),
            "echo_round_trip_ms": spread(rtt),
            "voiced_pct": round(100 * voiced_packets / max(1, packets), 1),
        },
        "echo_bots_cpu_pct": round(100 * (bot1 - bot0) / window, 1),
        "generator_cpu_pct": round(100 * (gen1 - gen0) / window, 1),
        **machine,
        "clock_late_ms_in_window": log["clock_late_ms_in_window"][1],
        "clock_late_ms_while_attaching": log["clock_late_ms_in_window"][0],
        "server_log": {"lines": log["lines"], "not_clock": log["not_clock"]},
    }


async def load_run(n: int, seconds: float, warmup: float, run: int) -> dict[str, Any]:
    bots = EchoBots(n, BENCH_CPU)
    await bots.start()  # it loads pipecat while the baseline sets up
    try:
        baseline = await load_phase(n, seconds, warmup, bots, agents=False)
        with_agents = await load_phase(n, seconds, warmup, bots, agents=True)
    finally:
        await bots.stop()
    per_session = with_agents["server_cpu_us_per_call_s"]
    return {
        "mode": "load",
        "run": run,
        "sessions": n,
        "seconds": seconds,
        "server_cpu_us_per_agent_session_s": per_session,
        "baseline_cpu_us_per_call_s": baseline["server_cpu_us_per_call_s"],
        "agent_own_cpu_us_per_session_s": round(
            per_session - baseline["server_cpu_us_per_call_s"], 1
        ),
        "tick_late_p99_ms": with_agents["tick_late_p99_ms"],
        "baseline_tick_late_p99_ms": baseline["tick_late_p99_ms"],
        "echo_bots_cpu_pct": with_agents["echo_bots_cpu_pct"],
        "with_agents": with_agents,
        "baseline": baseline,
        "cores": os.cpu_count(),
        "loadavg": round(os.getloadavg()[0], 2),
        "source": source_state(),
    }


# --- main ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--latency", action="store_true", help="added latency each way")
    mode.add_argument("--barge-in", action="store_true", help="interruption to silence")
    mode.add_argument("--load", type=int, nargs="?", const=50, metavar="N", help="N sessions")
    parser.add_argument("--provider", choices=[*PROVIDERS, "all"], help="stand-in (not --load)")
    parser.add_argument("--turns", type=int, help="turns per provider (20 latency, 12 barge-in)")
    parser.add_argument("--seconds", type=float, default=30, help="--load measuring window")
    parser.add_argument("--warmup", type=float, default=3, help="--load: s before the window")
    parser.add_argument("--runs", type=int, default=1, help="repeat, a fresh server each time")
    parser.add_argument("--no-pin", action="store_true", help="leave processes to the scheduler")
    args = parser.parse_args()
    global SERVER_CPU, BENCH_CPU
    if args.no_pin or (os.cpu_count() or 1) < 2:
        SERVER_CPU = BENCH_CPU = None
    elif hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {BENCH_CPU or 0})  # off the server's core (threads inherit it)
    for run in range(1, args.runs + 1):
        if args.load is not None:
            if args.load < 2:
                parser.error("--load needs at least 2 sessions (the probe and one generated)")
            result = asyncio.run(load_run(args.load, args.seconds, args.warmup, run))
            print(json.dumps(result), flush=True)
            continue
        kind = "latency" if args.latency else "barge-in"
        default = "elevenlabs" if args.latency else "all"
        chosen = args.provider or default
        names = list(PROVIDERS) if chosen == "all" else [chosen]
        turns = args.turns or (20 if args.latency else 12)
        # Threads hand the GIL over every 0.5 ms instead of 5 ms: timestamps stay honest.
        sys.setswitchinterval(0.0005)
        for row in asyncio.run(one_call_run(kind, names, turns, run)):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
