"""SIP floods against one instance started as users start it (docs/RELIABILITY.md).

`python bench/flood.py calls --cps 200 --seconds 60`: SIPp places calls at `cps`; an app on
the VSI stream answers each one (`answer_leg`); SIPp sends 2 s of PCMU and hangs up. Checks:
every call that rang gets exactly one `leg.disconnected`; afterwards (once the SIP layer's
40 s linger for late retransmissions is over) no leg, RTP port pair, extra task or file
descriptor is left (from /metrics and /proc), and RSS is back within 10 % of its value after
a warm-up.

`python bench/flood.py invites`: one source (127.0.0.2) floods INVITEs at 500 a second while
another (127.0.0.3) places 5 calls a second; with the default per-source limit the flood is
answered 503 and the other source's calls all go through.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Instance, process_memory_mb

SCENARIO = Path(__file__).resolve().parent / "scenarios" / "uac_flood.xml"


def ulaw_file(seconds: float) -> Path:
    """A 440 Hz tone as raw mu-law, for SIPp's rtp_stream."""
    t = np.arange(int(8000 * seconds)) / 8000
    pcm = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(x) + 132, 32767)
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    ulaw = (~(sign | (exponent << 4) | mantissa)) & 0xFF
    path = Path(tempfile.mkstemp(suffix=".ulaw")[1])
    path.write_bytes(ulaw.astype(np.uint8).tobytes())
    return path


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def snapshot(server: Instance) -> dict[str, float]:
    metrics = server.metrics()
    return {
        "legs": metrics.get("callboard_active_legs", float("nan")),
        "rtp_pairs": metrics.get("callboard_rtp_port_pairs_in_use", float("nan")),
        "tasks": metrics.get("callboard_asyncio_tasks", float("nan")),
        "fds": fds(server.pid),
        "rss_mb": process_memory_mb(server.pid),
    }


async def answering_app(server: Instance, stop: asyncio.Event, seen: dict[str, Any]) -> None:
    """The application: answers every ringing leg over the VSI, counts disconnects."""
    url = f"ws://127.0.0.1:{server.http_port}/v1/vsi"
    async with websockets.connect(url, max_size=None) as ws:
        n = 0
        while not stop.is_set():
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            kind = message.get("type")
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong", "event_id": message.get("event_id")}))
            elif kind == "leg.ringing":
                n += 1
                seen["ringing"].add(message["leg_id"])
                command = {"type": "answer_leg", "request_id": f"a{n}",
                           "payload": {"leg_id": message["leg_id"]}}  # fmt: skip
                await ws.send(json.dumps(command))
            elif kind == "leg.disconnected":
                seen["disconnected"][message["leg_id"]] += 1
                seen["packets"].append(
                    (message.get("quality") or {}).get("rtp_packets_received", 0)
                )
                seen["reasons"][message["cdr"]["reason"]] += 1
            elif kind == "error":
                seen["errors"] += 1


def sipp(target: str, *, cps: float, calls: int, source: str, rtp_file: Path, log: Path) -> Any:
    # SIPp does not expand keywords in an action's attributes: write the file's path in.
    scenario = log.with_suffix(".xml")
    scenario.write_text(SCENARIO.read_text().replace("[rtp_file]", str(rtp_file)))
    args = [
        "sipp", "-sf", str(scenario), "-s", "flood", "-i", source, "-mi", source,
        "-p", "0", "-mp", "0", "-r", f"{cps:g}", "-m", str(calls), "-l", str(int(cps * 10)),
        "-nostdin", "-timeout", f"{calls / cps + 60:.0f}s",
        "-trace_stat", "-stf", str(log), "-fd", "1", "-recv_timeout", "30000", target,
    ]  # fmt: skip
    errors = open(log.with_suffix(".err"), "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=errors)


def sipp_counts(log: Path) -> dict[str, int]:
    if not log.exists():
        raise RuntimeError(f"SIPp wrote no statistics: {log.with_suffix('.err').read_text()}")
    lines = log.read_text().splitlines()
    header, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(header, last, strict=False))
    counts = {k: int(row.get(f"{k}(C)", 0) or 0) for k in ("SuccessfulCall", "FailedCall")}
    counts["TotalCallCreated"] = int(row.get("TotalCallCreated", 0) or 0)
    return counts


async def calls(args: argparse.Namespace) -> int:
    server = Instance("flood", 20000, cpu=None, extra_env={"RTP_PORT_MAX": "29999"})
    rtp_file = ulaw_file(2.0)
    log = Path(tempfile.mkdtemp()) / "flood.csv"
    try:
        warm = sipp(server_target(server), cps=20, calls=100, source="127.0.0.1",
                    rtp_file=rtp_file, log=log)  # fmt: skip
        seen: dict[str, Any] = {"ringing": set(), "disconnected": Counter(),
                                "reasons": Counter(), "errors": 0, "packets": []}  # fmt: skip
        stop = asyncio.Event()
        app = asyncio.create_task(answering_app(server, stop, seen))
        await asyncio.to_thread(warm.wait)
        await settle(server)
        before = snapshot(server)
        seen["ringing"].clear()
        seen["disconnected"].clear()
        seen["reasons"].clear()
        seen["packets"].clear()
        total = int(args.cps * args.seconds)
        rounds: list[dict[str, float]] = []
        peak = 0.0
        started = time.monotonic()
        cpu0 = server.cpu_seconds()
        for _ in range(args.rounds):
            flood = sipp(server_target(server), cps=args.cps, calls=total, source="127.0.0.1",
                         rtp_file=rtp_file, log=log)  # fmt: skip
            while flood.poll() is None:
                await asyncio.sleep(1.0)
                peak = max(peak, snapshot(server)["legs"])
            counts = sipp_counts(log)
            await settle(server)
            rounds.append({**snapshot(server), "sipp_successful": counts["SuccessfulCall"]})
        elapsed = time.monotonic() - started
        cpu = server.cpu_seconds() - cpu0
        # The SIP layer keeps ended calls for 40 s (late retransmissions): measure once
        # that has passed and the server has given back its idle memory.
        await asyncio.sleep(args.idle)
        after = snapshot(server)
        await asyncio.sleep(2.0)
        stop.set()
        await app
    finally:
        server.stop()
        rtp_file.unlink(missing_ok=True)
    rang = seen["ringing"]
    once = sum(1 for leg in rang if seen["disconnected"][leg] == 1)
    twice = sum(1 for n in seen["disconnected"].values() if n > 1)
    report = {
        "calls placed per round": total,
        "rounds": rounds,
        "legs that rang": len(rang),
        "exactly one leg.disconnected": once,
        "more than one": twice,
        "reasons": dict(seen["reasons"]),
        "RTP packets received per leg (median)": float(np.median(seen["packets"] or [0])),
        "peak concurrent legs": peak,
        "elapsed s": round(elapsed, 1),
        "server CPU s": round(cpu, 1),
        "before": before,
        "after": after,
    }
    print(json.dumps(report, indent=2))
    leaked = any(after[k] > before[k] for k in ("legs", "rtp_pairs", "tasks", "fds"))
    rss_ok = after["rss_mb"] <= before["rss_mb"] * 1.10
    ok = once == len(rang) and not twice and not leaked and rss_ok
    print("PASS" if ok else "FAIL", f"(RSS {before['rss_mb']:.0f} -> {after['rss_mb']:.0f} MB)")
    return 0 if ok else 1


async def invites(args: argparse.Namespace) -> int:
    server = Instance("invite-flood", 20000, cpu=None, extra_env={"SIP_INVITE_RATE": "50"})
    rtp_file = ulaw_file(2.0)
    logs = Path(tempfile.mkdtemp())
    try:
        seen: dict[str, Any] = {"ringing": set(), "disconnected": Counter(),
                                "reasons": Counter(), "errors": 0, "packets": []}  # fmt: skip
        stop = asyncio.Event()
        app = asyncio.create_task(answering_app(server, stop, seen))
        await asyncio.sleep(0.5)
        total = int(args.seconds)
        flood = sipp(server_target(server), cps=500, calls=500 * total, source="127.0.0.2",
                     rtp_file=rtp_file, log=logs / "flood.csv")  # fmt: skip
        legit = sipp(server_target(server), cps=5, calls=5 * total, source="127.0.0.3",
                     rtp_file=rtp_file, log=logs / "legit.csv")  # fmt: skip
        await asyncio.to_thread(legit.wait)
        await asyncio.to_thread(flood.wait)
        await settle(server)
        stop.set()
        await app
        refused = server.metric("callboard_sip_requests_screened_total", 'action="refused"')
    finally:
        server.stop()
        rtp_file.unlink(missing_ok=True)
    flood_counts = sipp_counts(logs / "flood.csv")
    legit_counts = sipp_counts(logs / "legit.csv")
    print(json.dumps({"flood": flood_counts, "other source": legit_counts,
                      "refused by the gate": refused}, indent=2))  # fmt: skip
    ok = legit_counts["SuccessfulCall"] == 5 * total and refused > 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def server_target(server: Instance) -> str:
    return f"127.0.0.1:{server.sip_port}"


async def settle(server: Instance, timeout: float = 60.0) -> None:
    """Until no leg is left (or the timeout), then a moment for tasks to finish."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and snapshot(server)["legs"] > 0:
        await asyncio.sleep(0.5)
    await asyncio.sleep(3.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("calls", "invites"))
    parser.add_argument("--cps", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rounds", type=int, default=1, help="floods one after the other")
    parser.add_argument("--idle", type=float, default=50, help="seconds idle before 'after'")
    args = parser.parse_args()
    sys.exit(asyncio.run(calls(args) if args.mode == "calls" else invites(args)))


if __name__ == "__main__":
    main()
