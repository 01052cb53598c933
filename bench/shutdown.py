"""Graceful shutdown under load (docs/RELIABILITY.md): `python bench/shutdown.py`.

Instance B places `--calls` calls to instance A, an app answers them on A's VSI, A records
`--recordings` of them, and A's webhooks go to a receiver that takes 50 ms per request (so
events queue). Then A gets SIGTERM. Checks: A exits within 10 s; every A leg's
`leg.disconnected` says `api_hangup`; every recording's `recording.finished` arrives and its
WAV reads; A's log reports no undelivered webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import wave
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flood import answering_app
from harness import HookReceiver, Instance


async def run(args: argparse.Namespace) -> int:
    hooks = HookReceiver(delay=0.05)
    a = Instance("shutdown-a", 32000, None, {"WEBHOOK_URL": hooks.url})
    b = Instance("shutdown-b", 36000, None)
    stop = asyncio.Event()
    seen: dict[str, Any] = {"ringing": set(), "disconnected": Counter(), "reasons": Counter(),
                            "errors": 0, "packets": []}  # fmt: skip
    app = asyncio.create_task(answering_app(a, stop, seen))
    await asyncio.sleep(0.5)
    for n in range(args.calls):
        response = b.http.post(
            "/v1/legs", json={"type": "sip", "uri": f"sip:u{n}@127.0.0.1:{a.sip_port}"}
        )
        assert response.status_code == 201, response.text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        legs = a.http.get("/v1/legs").json()
        if sum(1 for leg in legs if leg["state"] == "connected") >= args.calls:
            break
        await asyncio.sleep(0.5)
    a_legs = [leg["id"] for leg in a.http.get("/v1/legs").json()]
    for leg in a_legs[: args.recordings]:
        assert a.http.post(f"/v1/legs/{leg}/record", json={}).status_code in (200, 201, 202)
    await asyncio.sleep(2.0)
    stop.set()
    await app
    started = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    a.proc.wait(30)
    took = time.monotonic() - started
    await asyncio.sleep(1.0)
    b.stop()
    a.log.close()
    disconnects = {e["leg_id"]: e["cdr"]["reason"] for e in hooks.of("leg.disconnected")}
    finished = hooks.of("recording.finished")
    readable = 0
    for event in finished:
        with wave.open(event["file"]) as wav:
            readable += wav.getnframes() > 0
    log = Path("/tmp/bench-shutdown-a.log").read_text(errors="replace")
    report = {
        "legs on A": len(a_legs),
        "exit seconds": round(took, 2),
        "exit code": a.proc.returncode,
        "api_hangup": sum(1 for leg in a_legs if disconnects.get(leg) == "api_hangup"),
        "recordings finished": len(finished),
        "recordings readable": readable,
        "webhook events delivered": len(hooks.events),
        "undelivered reported": "undelivered" in log,
    }
    print(json.dumps(report, indent=2))
    ok = (
        took < 10
        and report["api_hangup"] == len(a_legs) == args.calls
        and readable == len(finished) == args.recordings
        and not report["undelivered reported"]
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--recordings", type=int, default=20)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
