"""Shared pieces of the end-to-end benchmarks: a Callboard instance in its own (pinned)
process, read from /proc and /metrics, and the VSI event stream."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import websockets

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    """`cmd` run on one core with taskset, when there is a core to pin to and taskset."""
    if cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu), *cmd]
    return cmd


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A /proc/<pid>/status memory line (VmRSS, VmHWM...) in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value}, comments skipped."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            values[key] = float(value)
        except ValueError:
            continue
    return values


class Instance:
    """One Callboard server process, optionally pinned to a core, with an HTTP client."""

    def __init__(
        self,
        name: str,
        rtp_low: int,
        cpu: int | None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.http_port = free_port()
        self.sip_port = free_port()
        env = {
            **os.environ,
            "HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "SIP_PORT": str(self.sip_port),
            "RTP_PORT_MIN": str(rtp_low),
            "RTP_PORT_MAX": str(rtp_low + 3999),
            "INSTANCE_ID": name,
            "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "warning"),
            # The load generator is one source standing for many callers (as a trunk is):
            # the per-source INVITE limit is lifted as such a user would (README).
            "SIP_INVITE_RATE": "0",
            **(extra_env or {}),
        }
        # The environment a user has: nothing here tunes the server (no BLAS thread limits;
        # the server sets its own).
        for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
            env.pop(variable, None)
        cmd = pinned([sys.executable, "-m", "callboard"], cpu)
        self.log = open(f"/tmp/bench-{name}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.http_port}", timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if self.http.get("/v1/legs").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{name} did not start (see /tmp/bench-{name}.log)")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def rss_mb(self) -> float:
        return process_memory_mb(self.pid, "VmRSS")

    def peak_rss_mb(self) -> float:
        return process_memory_mb(self.pid, "VmHWM")

    def metrics(self) -> dict[str, float]:
        return parse_metrics(self.http.get("/metrics").text)

    def metric(self, name: str, labels: str = "") -> float:
        key = f"{name}{{{labels}}}" if labels else name
        return self.metrics().get(key, float("nan"))

    def stop(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def watch_vsi(
    port: int, on_event: Callable[[dict[str, Any]], None], stop: asyncio.Event
) -> None:
    """Feed every event of an instance's VSI stream to `on_event` until `stop` is set."""
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/vsi", max_size=None) as ws:
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if message.get("type") == "ping":
                await ws.send(json.dumps({"type": "pong", "event_id": message.get("event_id")}))
                continue
            on_event(message)


async def collect_disconnects(port: int, sink: list[dict[str, Any]], stop: asyncio.Event) -> None:
    def keep(message: dict[str, Any]) -> None:
        if message.get("type") == "leg.disconnected":
            sink.append(message)

    await watch_vsi(port, keep, stop)


def disconnect_quality(ends: list[dict[str, Any]]) -> dict[str, float]:
    """Loss, jitter and MOS over the `quality` of leg.disconnected events."""
    qs = [e["quality"] for e in ends if "quality" in e]
    received = sum(q["rtp_packets_received"] for q in qs)
    lost = sum(q["rtp_packets_lost"] for q in qs)
    return {
        "legs_reporting": len(qs),
        "loss_pct": 100.0 * lost / max(1, received + lost),
        "jitter_ms_mean": statistics.fmean(q["rtp_jitter_ms"] for q in qs) if qs else 0.0,
        "mos_min": min((q["mos_score"] for q in qs), default=0.0),
    }


class HookReceiver:
    """A webhook receiver for benches: answers 500 while `failing`, else 200 after `delay`
    seconds; keeps each delivered event and the time of every attempt."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.failing = False
        self.attempts: list[float] = []
        self.events: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.attempts.append(time.monotonic())
                time.sleep(outer.delay)
                status = 500 if outer.failing else 200
                if status == 200:
                    outer.events.append(json.loads(body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]
