"""A webhook receiver answering 500 for minutes, and what it costs (docs/RELIABILITY.md):
`python bench/webhook_outage.py --minutes 5`.

One instance with `--calls` calls through it (a second instance is the far end) reports to a
receiver that answers 500 for the whole outage, while a client times `GET /v1/legs` every
200 ms and the calls are muted/unmuted (each an event). Reported: the receiver's attempts
during the outage (the breaker keeps them to a probe per cool-down), API latency p50/p99,
the media clock's p99 lateness from /metrics, and, once the receiver recovers, how many of
the outage's events still arrive (the rest are counted as dropped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import HookReceiver, Instance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    receiver = HookReceiver()
    receiver.failing = True
    a = Instance("outage-a", 32000, None, {"WEBHOOK_URL": receiver.url})
    b = Instance("outage-b", 36000, None)
    try:
        for n in range(args.calls):
            uri = f"sip:u{n}@127.0.0.1:{b.sip_port}"
            assert a.http.post("/v1/legs", json={"type": "sip", "uri": uri}).status_code == 201
        time.sleep(1.0)
        for leg in b.http.get("/v1/legs").json():
            b.http.post(f"/v1/legs/{leg['id']}/answer")
        legs = [leg["id"] for leg in a.http.get("/v1/legs").json()]
        latencies: list[float] = []
        started = time.monotonic()
        toggles = 0
        while time.monotonic() - started < args.minutes * 60:
            t0 = time.perf_counter()
            a.http.get("/v1/legs")
            latencies.append(time.perf_counter() - t0)
            if len(latencies) % 5 == 0:  # an event a second per leg
                method = "POST" if toggles % 2 == 0 else "DELETE"  # mute, unmute
                for leg in legs:
                    response = a.http.request(method, f"/v1/legs/{leg}/mute")
                    assert response.status_code == 200, response.text
                toggles += 1
            time.sleep(0.2)
        during = len(receiver.attempts)
        metrics = a.metrics()
        receiver.failing = False
        # Past the longest cool-down the breaker probes and recovers; then the queue drains.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and a.metric("callboard_webhook_queued") > 0:
            time.sleep(1.0)
        lateness = metrics.get('callboard_media_tick_lateness_seconds{quantile="0.99"}', 0.0)
        outcomes = {
            key.split('outcome="')[1].rstrip('"}'): value
            for key, value in a.metrics().items()
            if key.startswith("callboard_webhook_events_total")
        }
        report = {
            "outage minutes": args.minutes,
            "events published during the outage (mute/unmute)": toggles * len(legs),
            "receiver attempts during the outage": during,
            "API GET /v1/legs p50 / p99 ms": [
                round(float(np.percentile(latencies, 50)) * 1000, 1),
                round(float(np.percentile(latencies, 99)) * 1000, 1),
            ],
            "media tick lateness p99 ms (end of outage)": round(lateness * 1000, 1),
            "events delivered after recovery": len(receiver.events),
            "webhook outcomes (events)": outcomes,
            "queued at the end": a.metric("callboard_webhook_queued"),
        }
        print(json.dumps(report, indent=2))
    finally:
        a.stop()
        b.stop()


if __name__ == "__main__":
    main()
