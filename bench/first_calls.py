"""Media clock lateness over a fresh pair of instances' start-up and first calls.

Two Callboard instances on loopback (the test suite's helpers); A calls B eight times, 150 ms
apart, each call playing a tone, then both instances' p50/p99 tick lateness since start is read
from /metrics and every "media clock ran N ms late" line of their logs is printed.

    python bench/first_calls.py [--calls 8] [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver


def connect(a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver) -> str:
    since = hooks.mark()
    a_leg = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")}).json()["id"]
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    b.api("POST", f"/legs/{b_leg}/answer")
    hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
    return str(a_leg)


def lateness_ms(server: ServerProcess) -> dict[str, float]:
    found = {}
    for line in server.client.get("/metrics").text.splitlines():
        if line.startswith("callboard_media_tick_lateness_seconds{"):
            quantile = line.split('quantile="')[1].split('"')[0]
            found[f"p{float(quantile) * 100:g}"] = round(float(line.split()[-1]) * 1e3, 2)
    return found


def run(calls: int) -> None:
    hooks = WebhookReceiver()
    with tempfile.TemporaryDirectory() as workdir:
        factory = ServerFactory(Path(workdir))
        a, b = factory(WEBHOOK_URL=hooks.url), factory(WEBHOOK_URL=hooks.url)
        try:
            legs = []
            for _ in range(calls):
                legs.append(connect(a, b, hooks))
                a.api("POST", f"/legs/{legs[-1]}/play", {"tone": "us_dial"})
                time.sleep(0.15)
            time.sleep(2)
            print(f"tick lateness since start: A {lateness_ms(a)}  B {lateness_ms(b)}")
            for server in (a, b):
                for line in server.log_tail(100000).splitlines():
                    if "media clock ran" in line:
                        print(f"  {server.instance_id}: {line}")
            for leg in legs:
                a.api("DELETE", f"/legs/{leg}")
        finally:
            factory.close()
            hooks.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        run(args.calls)


if __name__ == "__main__":
    main()
