"""WebRTC leg benchmark (issue 12): what one browser leg costs the server, DTLS-SRTP and ICE
included, with the codec the browser chose (Opus unless --codec pcmu).

The server runs as users run it (bench/harness.py), pinned to core 1. The browsers are aiortc
peers (tests/helpers/webrtc_peer.py) in a child process pinned to core 0, each sending a 440 Hz
tone; they join rooms two by two (--per-room): with two on one codec, each is sent the other's
packets (no encode); with three or more, every leg is decoded, mixed and encoded every tick.
Server CPU comes from /proc over the window, per leg-second; the clock's p99 lateness from
/metrics.

    python bench/webrtc.py [--legs 10] [--seconds 20] [--codec opus|pcmu] [--per-room 2]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import Instance, pinned

ROOT = Path(__file__).resolve().parent.parent


def browsers(base_url: str, legs: int, codec: str, per_room: int, hold_s: float) -> None:
    """The child process: `legs` aiortc peers, `per_room` to a room, kept up until the
    parent closes our stdin (or hold_s passes, should the parent be gone)."""
    from tests.helpers.webrtc_peer import WebRtcPeer

    peers = []
    for index in range(legs):
        peer = WebRtcPeer(base_url, sine_hz=440.0 + 20 * index, codec=codec)
        peer.connect(room_id=f"bench-{index // per_room}")
        peers.append(peer)
    print("ready", flush=True)
    done = threading.Thread(target=sys.stdin.read, daemon=True)
    done.start()
    done.join(hold_s)
    for peer in peers:
        peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--codec", choices=("opus", "pcmu"), default="opus")
    parser.add_argument("--per-room", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        browsers(args.child[0], args.legs, args.codec, args.per_room, float(args.child[1]))
        return

    server = Instance("bench-webrtc", 30000, cpu=1)
    hold = args.warmup + args.seconds + 60
    child = subprocess.Popen(
        pinned(
            [
                sys.executable,
                __file__,
                "--legs",
                str(args.legs),
                "--codec",
                args.codec,
                "--per-room",
                str(args.per_room),
                "--child",
                server.base_url,
                str(hold),
            ],
            0,
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the browsers did not connect")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            legs = server.http.get("/v1/legs").json()
            if sum(leg["state"] == "connected" for leg in legs) == args.legs:
                break
            time.sleep(0.2)
        connected = sum(leg["state"] == "connected" for leg in legs)
        time.sleep(args.warmup)
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        time.sleep(args.seconds)
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
        metrics = server.metrics()
        legs = server.http.get("/v1/legs").json()
    finally:
        assert child.stdin is not None
        child.stdin.close()  # the browsers hang up
        child.wait(timeout=hold + 30)
        server.stop()
    window = t1 - t0
    per_leg = (cpu1 - cpu0) / (window * args.legs) * 1e6
    late = metrics.get('callboard_media_tick_lateness_seconds{quantile="0.99"}', float("nan"))
    print(
        json.dumps(
            {
                "legs": args.legs,
                "codec": args.codec,
                "per_room": args.per_room,
                "connected": connected,
                "seconds": round(window, 1),
                "server_cpu_us_per_leg_s": round(per_leg, 1),
                "server_cpu_pct": round((cpu1 - cpu0) / window * 100, 1),
                "tick_late_p99_ms": round(late * 1000, 2) if late == late else None,
                "legs_still_up": len(legs),
                # Legs that ended or never connected make the figure meaningless.
                "valid": connected == args.legs and len(legs) == args.legs,
            }
        )
    )


if __name__ == "__main__":
    main()
