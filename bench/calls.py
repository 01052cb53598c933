"""End-to-end media benchmark: N concurrent calls (PCMU unless --codec) into the server under test.

A second Callboard instance (its own process, pinned to the other core) is the load generator:
it places N calls to the instance under test, which answers them all. Both ends then send
20 ms RTP both ways (comfort silence or a tone) for the measurement window. We report the
server's CPU per leg-second from /proc, its RSS, the media clock's tick lateness from
/metrics, and RTP loss/jitter/MOS as both ends saw them (leg.disconnected over VSI).

    python bench/calls.py --legs 50 100 200 --seconds 60 [--codec opus]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from harness import Instance, collect_disconnects, disconnect_quality


async def run_point(legs: int, seconds: float, tone: bool, codec: str = "PCMU") -> dict[str, Any]:
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
                    "codecs": [codec],
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
        "at_generator": disconnect_quality(ends_gen),
        "at_server": disconnect_quality(ends_server),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, nargs="+", default=[50])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--tone", action="store_true", help="generator plays a tone on each leg")
    parser.add_argument("--codec", default="PCMU", choices=("PCMU", "PCMA", "G722", "opus"))
    args = parser.parse_args()
    for legs in args.legs:
        result = asyncio.run(run_point(legs, args.seconds, args.tone, args.codec))
        result["codec"] = args.codec
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
