"""End-to-end media benchmark: N concurrent PCMU calls into the server under test.

A second Callboard instance (its own process, pinned to the other core) is the load generator:
it places N calls to the instance under test, which answers them all. Both ends then send
20 ms RTP both ways (comfort silence or a tone) for the measurement window. We report the
server's CPU per leg-second from /proc, its RSS, the media clock's tick lateness from
/metrics, and RTP loss/jitter/MOS as both ends saw them (leg.disconnected over VSI).

    python bench/calls.py --legs 50 100 200 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import websockets

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Instance:
    def __init__(self, name: str, rtp_low: int, cpu: int | None) -> None:
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
            "LOG_LEVEL": "warning",
            "OPENBLAS_NUM_THREADS": "1",
        }
        cmd = [sys.executable, "-m", "callboard"]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu), *cmd]
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
        raise RuntimeError(f"{name} did not start")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def metric(self, name: str, labels: str = "") -> float:
        text = self.http.get("/metrics").text
        key = f"{name}{{{labels}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return float("nan")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


async def collect_disconnects(port: int, sink: list[dict[str, Any]], stop: asyncio.Event) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/v1/vsi", max_size=None) as ws:
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            if message.get("type") == "leg.disconnected":
                sink.append(message)


async def run_point(legs: int, seconds: float, tone: bool) -> dict[str, Any]:
    server = Instance("under-test", 20000, cpu=1)
    generator = Instance("generator", 30000, cpu=0)
    ends_server: list[dict[str, Any]] = []
    ends_gen: list[dict[str, Any]] = []
    stop = asyncio.Event()
    watchers = [
        asyncio.create_task(collect_disconnects(server.http_port, ends_server, stop)),
        asyncio.create_task(collect_disconnects(generator.http_port, ends_gen, stop)),
    ]
    await asyncio.sleep(0.5)
    try:
        started = time.monotonic()
        out_ids = []
        for _ in range(legs):
            r = generator.http.post(
                "/v1/legs",
                json={
                    "type": "sip",
                    "uri": f"sip:bench@127.0.0.1:{server.sip_port}",
                    "codecs": ["PCMU"],
                },
            )
            r.raise_for_status()
            out_ids.append(r.json()["id"])
        answered = 0
        deadline = time.monotonic() + 60
        while answered < legs and time.monotonic() < deadline:
            for leg in server.http.get("/v1/legs").json():
                if (
                    leg["state"] == "ringing"
                    and server.http.post(f"/v1/legs/{leg['id']}/answer").status_code == 200
                ):
                    answered += 1
            await asyncio.sleep(0.05)
        setup_rate = legs / (time.monotonic() - started)
        if tone:
            for leg_id in out_ids:
                generator.http.post(f"/v1/legs/{leg_id}/play", json={"tone": "de_dial"})
        await asyncio.sleep(5)  # warm-up
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
        late50 = server.metric("callboard_media_tick_lateness_seconds", 'quantile="0.5"')
        late99 = server.metric("callboard_media_tick_lateness_seconds", 'quantile="0.99"')
        busy99 = server.metric("callboard_media_tick_busy_seconds", 'quantile="0.99"')
        skipped = server.metric("callboard_media_ticks_skipped")
        rss = server.rss_mb()
        for leg_id in out_ids:
            generator.http.delete(f"/v1/legs/{leg_id}")
        deadline = time.monotonic() + 30
        while (len(ends_gen) < legs or len(ends_server) < legs) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        for w in watchers:
            w.cancel()
        server.stop()
        generator.stop()

    def quality(ends: list[dict[str, Any]]) -> dict[str, float]:
        qs = [e["quality"] for e in ends if "quality" in e]
        received = sum(q["rtp_packets_received"] for q in qs)
        lost = sum(q["rtp_packets_lost"] for q in qs)
        return {
            "legs_reporting": len(qs),
            "loss_pct": 100.0 * lost / max(1, received + lost),
            "jitter_ms_mean": statistics.fmean(q["rtp_jitter_ms"] for q in qs) if qs else 0.0,
            "mos_min": min((q["mos_score"] for q in qs), default=0.0),
        }

    return {
        "legs": legs,
        "answered": answered,
        "setup_per_s": round(setup_rate, 1),
        "cpu_us_per_leg_s": round((cpu1 - cpu0) / (t1 - t0) / legs * 1e6, 1),
        "cpu_pct_of_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
        "rss_mb": round(rss, 1),
        "tick_late_p50_ms": round(late50 * 1e3, 2),
        "tick_late_p99_ms": round(late99 * 1e3, 2),
        "tick_busy_p99_ms": round(busy99 * 1e3, 2),
        "ticks_skipped": skipped,
        "at_generator": quality(ends_gen),
        "at_server": quality(ends_server),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, nargs="+", default=[50])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--tone", action="store_true", help="generator plays a tone on each leg")
    args = parser.parse_args()
    for legs in args.legs:
        result = asyncio.run(run_point(legs, args.seconds, args.tone))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
