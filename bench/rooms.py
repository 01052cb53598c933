"""Rooms benchmark: N PCMU legs in two-leg rooms through the server under test.

Three processes. The server under test (a Callboard instance, pinned to core 1) answers every
inbound call and puts each pair of legs into a room over the REST API (`POST /v1/rooms`, then
`POST /v1/rooms/{id}/legs` for both legs; a ringing leg added to a room is answered). The load
generator (bench/rtpgen.py, pinned to core 0) places the calls over SIP/UDP and sends and
receives real 20 ms PCMU RTP on every leg; it measures loss, jitter and MOS itself. This
script (also on core 0) is the orchestrator: it reacts to `leg.ringing` on the server's VSI
stream, reads the server's CPU and peak RSS from /proc and its media-clock figures from
/metrics, and asks the generator for its figures.

Latency: in the first few rooms, leg a sends silence and a 10 ms chirp every 0.74 s and leg b
records what it hears; the chirp is found by cross-correlation and its arrival time (on the
received stream's RTP timeline) minus its send time is the mouth-to-ear latency through the
room. The same measurement with the generator's legs wired straight to each other (no server)
gives the baseline, which is subtracted.

    python bench/rooms.py --legs 50 100 200 400 800 --seconds 60 [--markdown]
    python bench/rooms.py --no-rooms ...   # the server only answers (no latency then)
    python bench/rooms.py --probe          # does POST /v1/rooms work yet?
    python bench/rooms.py --record ...     # every room also records its mix to WAV
    python bench/rooms.py --room-rate 8000 ...  # rooms mixing at 8 (or 16, 48) kHz
    python bench/rooms.py --no-pin ...     # nothing pinned: the scheduler places everything

The server runs with the environment a user's shell gives `./scripts/serve`: the harness
sets only the addresses, ports and log level, and removes any BLAS thread setting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from harness import Instance, disconnect_quality, pinned, process_cpu_seconds, watch_vsi

HERE = Path(__file__).resolve().parent
SERVER_CPU: int | None = 1
GENERATOR_CPU: int | None = 0


# --- the generator process ---------------------------------------------------------------------


class GeneratorProcess:
    """bench/rtpgen.py in its own process, driven by JSON lines over its stdin/stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, cpu: int | None) -> GeneratorProcess:
        log = open("/tmp/bench-rtpgen.log", "ab")  # noqa: SIM115
        proc = await asyncio.create_subprocess_exec(
            *pinned([sys.executable, str(HERE / "rtpgen.py")], cpu),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )
        log.close()
        gen = cls(proc)
        hello = await gen._read()
        if not hello.get("ready"):
            raise RuntimeError(f"generator did not start: {hello}")
        return gen

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("generator exited (see /tmp/bench-rtpgen.log)")
        return dict(json.loads(line))

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self._read()

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.call("exit"), 5)
                await asyncio.wait_for(self.proc.wait(), 5)
            except (TimeoutError, RuntimeError, BrokenPipeError, ConnectionResetError):
                self.proc.kill()
                await self.proc.wait()


# --- the server side: answer and pair the legs -------------------------------------------------


class RoomMaker:
    """Puts the two legs of bench room k into room `bench-<k>` as they ring (or, without
    rooms, just answers them), from a few concurrent workers."""

    def __init__(
        self,
        base_url: str,
        use_rooms: bool,
        workers: int,
        record: bool = False,
        room_rate: int | None = None,
    ) -> None:
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=30,
            limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        )
        self.use_rooms = use_rooms
        self.record = record
        self.room_rate = room_rate  # None: the server's DEFAULT_SAMPLE_RATE
        self.queue: asyncio.Queue[tuple[str, int, str]] = asyncio.Queue()
        self.seen: set[str] = set()
        self.room_ready: dict[int, asyncio.Future[None]] = {}
        self.errors: list[str] = []
        self.ends: list[dict[str, Any]] = []
        self.attached = 0
        self.tasks = [asyncio.create_task(self._worker()) for _ in range(workers)]

    def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "leg.ringing":
            self._offer(event.get("leg_id"), event.get("sip_headers"))
        elif kind == "leg.disconnected":
            self.ends.append(event)

    def _offer(self, leg_id: Any, headers: Any) -> None:
        if not isinstance(leg_id, str) or leg_id in self.seen or not isinstance(headers, dict):
            return
        fields = {str(k).lower(): v for k, v in headers.items()}
        room, side = fields.get("x-bench-room"), fields.get("x-bench-side")
        if room is None or side not in ("a", "b"):
            return
        self.seen.add(leg_id)
        self.queue.put_nowait((leg_id, int(room), side))

    async def poll_ringing(self) -> None:
        """A safety net for leg.ringing events the VSI stream dropped under load."""
        while True:
            await asyncio.sleep(3)
            try:
                legs = (await self.client.get("/v1/legs")).json()
            except (httpx.HTTPError, ValueError):
                continue
            for leg in legs:
                if leg.get("state") == "ringing":
                    self._offer(leg.get("id"), leg.get("sip_headers"))

    async def _worker(self) -> None:
        while True:
            leg_id, room, side = await self.queue.get()
            try:
                await self._attach(leg_id, room, side)
                self.attached += 1
            except Exception as exc:  # report, keep going: the figures will show the gap
                self.errors.append(f"{leg_id} room {room}{side}: {exc}")

    async def _attach(self, leg_id: str, room: int, side: str) -> None:
        if not self.use_rooms:
            r = await self.client.post(f"/v1/legs/{leg_id}/answer")
            if r.status_code != 200:
                raise RuntimeError(f"answer: {r.status_code} {r.text}")
            return
        room_id = f"bench-{room}"
        ready = self.room_ready.setdefault(room, asyncio.get_running_loop().create_future())
        if side == "a":
            body: dict[str, Any] = {"id": room_id}
            if self.room_rate:
                body["sample_rate"] = self.room_rate
            r = await self.client.post("/v1/rooms", json=body)
            if r.status_code not in (200, 201, 409):
                raise RuntimeError(f"create room: {r.status_code} {r.text}")
            if self.record:
                r = await self.client.post(f"/v1/rooms/{room_id}/record", json={})
                if r.status_code != 200:
                    raise RuntimeError(f"record room: {r.status_code} {r.text}")
            ready.set_result(None)
        else:
            await asyncio.wait_for(asyncio.shield(ready), 30)
        r = await self.client.post(f"/v1/rooms/{room_id}/legs", json={"leg_id": leg_id})
        if r.status_code != 200 or r.json().get("status") != "added":
            raise RuntimeError(f"add to room: {r.status_code} {r.text}")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.client.aclose()


def rooms_status(server: Instance) -> int:
    """Status of `POST /v1/rooms` on a fresh instance (201 once rooms exist); cleans up."""
    r = server.http.post("/v1/rooms", json={"id": "bench-probe"})
    if r.status_code in (200, 201):
        server.http.delete("/v1/rooms/bench-probe")
    return r.status_code


# --- machine state -----------------------------------------------------------------------------


def busy_jiffies() -> float:
    """CPU seconds spent busy by all cores since boot (/proc/stat: all but idle + iowait)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def foreign_load(seconds: float = 3.0) -> float:
    """Percent of one core used by everything else over `seconds` (we are idle meanwhile)."""
    before = busy_jiffies()
    time.sleep(seconds)
    return 100.0 * (busy_jiffies() - before) / seconds


def wait_for_quiet(limit_pct: float, max_wait: float) -> float:
    """Wait (up to max_wait s) until other processes use less than limit_pct of a core."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = foreign_load()
        if busy < limit_pct or time.monotonic() > deadline:
            return busy
        print(f"# machine busy ({busy:.0f}% of a core elsewhere), waiting", file=sys.stderr)
        time.sleep(20)


# --- one point of the curve ------------------------------------------------------------------


async def loopback_baseline(latency_rooms: int, seconds: float) -> float | None:
    """Median impulse latency with the generator's legs wired to each other: no server."""
    gen = await GeneratorProcess.start(GENERATOR_CPU)
    try:
        await gen.call(
            "setup", target="loopback", legs=2 * latency_rooms, latency_rooms=latency_rooms
        )
        await asyncio.sleep(1)
        await gen.call("window_start")
        await asyncio.sleep(seconds)
        figures = await gen.call("window_end")
    finally:
        await gen.close()
    found = [ms for room in figures["latency"] for ms in room["ms"]]
    return statistics.median(found) if found else None


def summarise_latency(rooms: list[dict[str, Any]]) -> dict[str, Any]:
    found = [ms for room in rooms for ms in room["ms"]]
    sent = sum(room["impulses"] for room in rooms)
    if not found:
        return {"impulses": sent, "found": 0}
    per_room = [round(statistics.median(room["ms"]), 2) for room in rooms if room["ms"]]
    return {
        "impulses": sent,
        "found": len(found),
        # Under overload the server drops frames and the chirp is lost or smeared.
        "reliable": len(found) >= 0.9 * sent,
        "median_ms": round(statistics.median(found), 2),
        "min_ms": min(found),
        "max_ms": max(found),
        "per_room_median_ms": per_room,
    }


async def run_point(legs: int, args: argparse.Namespace, baseline: float | None) -> dict[str, Any]:
    legs -= legs % 2
    server = Instance("rooms-under-test", 20000, cpu=SERVER_CPU)
    gen: GeneratorProcess | None = None
    maker: RoomMaker | None = None
    stop = asyncio.Event()
    background: list[asyncio.Task[None]] = []
    try:
        status = rooms_status(server)
        use_rooms = not args.no_rooms
        if use_rooms and status not in (200, 201):
            raise SystemExit(
                f"POST /v1/rooms answers {status}: rooms are not available yet (try --no-rooms)"
            )
        maker = RoomMaker(
            server.base_url, use_rooms, args.workers, record=args.record, room_rate=args.room_rate
        )
        background.append(asyncio.create_task(watch_vsi(server.http_port, maker.on_event, stop)))
        background.append(asyncio.create_task(maker.poll_ringing()))
        gen = await GeneratorProcess.start(GENERATOR_CPU)
        await asyncio.sleep(0.5)
        setup = await gen.call(
            "setup",
            target=f"127.0.0.1:{server.sip_port}",
            legs=legs,
            latency_rooms=args.latency_rooms if use_rooms else 0,
            audio=args.audio,
            max_outstanding=args.max_outstanding,
            cps=args.cps,
        )
        background[1].cancel()  # no more ringing expected
        await asyncio.sleep(args.warmup)

        skipped0 = server.metrics().get("callboard_media_ticks_skipped", float("nan"))
        await gen.call("window_start")
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        gen_cpu0, own_cpu0, all0 = process_cpu_seconds(gen.pid), time.process_time(), busy_jiffies()
        await asyncio.sleep(args.seconds)
        cpu1, t1 = server.cpu_seconds(), time.monotonic()
        gen_cpu1, own_cpu1, all1 = process_cpu_seconds(gen.pid), time.process_time(), busy_jiffies()
        at_gen = await gen.call("window_end")
        metrics = server.metrics()  # the clock's quantiles cover its last 3000 ticks (60 s)
        peak_rss, rss = server.peak_rss_mb(), server.rss_mb()

        hangup = await gen.call("hangup", max_outstanding=args.max_outstanding)
        deadline = time.monotonic() + 30
        while len(maker.ends) < setup["established"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        for task in background:
            task.cancel()
        if maker is not None:
            await maker.close()
        if gen is not None:
            await gen.close()
        server.stop()

    window = t1 - t0
    cpu = cpu1 - cpu0
    foreign = (all1 - all0) - cpu - (gen_cpu1 - gen_cpu0) - (own_cpu1 - own_cpu0)
    latency = (
        summarise_latency(at_gen["latency"])
        if use_rooms
        else {"impulses": 0, "note": "not measurable without rooms: no audio is routed back"}
    )
    if "median_ms" in latency and baseline is not None:
        latency["baseline_ms"] = round(baseline, 2)
        latency["added_ms"] = round(latency["median_ms"] - baseline, 2)
    quantile = 'callboard_media_tick_{}_seconds{{quantile="{}"}}'
    return {
        "legs": legs,
        "rooms": legs // 2 if use_rooms else 0,
        "established": setup["established"],
        "setup_failed": setup["failed"],
        "setup_per_s": setup["setup_per_s"],
        "setup_p99_ms": setup.get("setup_p99_ms"),
        "attach_errors": maker.errors[:5] if maker else [],
        "window_s": round(window, 1),
        "cpu_us_per_leg_s": round(cpu / window / max(1, setup["established"]) * 1e6, 1),
        "cpu_pct_of_core": round(100 * cpu / window, 1),
        "peak_rss_mb": round(peak_rss, 1),
        "rss_mb": round(rss, 1),
        "tick_late_p50_ms": round(metrics.get(quantile.format("lateness", "0.5"), 0) * 1e3, 2),
        "tick_late_p99_ms": round(metrics.get(quantile.format("lateness", "0.99"), 0) * 1e3, 2),
        "tick_busy_p99_ms": round(metrics.get(quantile.format("busy", "0.99"), 0) * 1e3, 2),
        "ticks_skipped": metrics.get("callboard_media_ticks_skipped", 0) - skipped0,
        "loss_pct": at_gen["loss_pct"],
        "lost_packets": at_gen["lost_packets"],
        "rx_pps_per_leg": at_gen["rx_pps_per_leg"],
        "underrun_pct": at_gen["underrun_pct"],
        "jitter_ms_mean": at_gen["jitter_ms_mean"],
        "jitter_ms_max_leg": at_gen["jitter_ms_max_leg"],
        "transit_delta_p99_ms": at_gen["transit_delta_p99_ms"],
        "mos_min": at_gen["mos_min"],
        "mos_mean": at_gen["mos_mean"],
        "latency": latency,
        "generator": {
            "cpu_pct": round(100 * (gen_cpu1 - gen_cpu0) / window, 1),
            "tick": at_gen["gen_tick"],
            "latency_tick": at_gen["gen_latency_tick"],
            "silent_legs": at_gen["silent_legs"],
            "remote_byes": at_gen["remote_byes"],
        },
        "at_server": disconnect_quality(maker.ends if maker else []),
        "hangup": hangup,
        "foreign_cpu_pct": round(100 * foreign / window, 1),
        "loadavg": os.getloadavg()[0],
        "source": source_state(),
    }


def source_state() -> str:
    """The commit under test, and whether src/ had uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=HERE
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}+dirty-src" if dirty else head


MARKDOWN_HEADER = (
    "| legs | rooms | setup | CPU µs/leg-s | CPU % core | peak RSS | tick late p50 / p99 "
    "| tick busy p99 | skipped | loss (gen / server) | underrun | jitter mean (gen) | MOS min "
    "| added latency | generator late p99 / CPU |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def markdown_row(r: dict[str, Any]) -> str:
    lat = r["latency"]
    latency = f"{lat['added_ms']} ms" if "added_ms" in lat else "n/a"
    if "added_ms" in lat and not lat["reliable"]:
        latency += f" ({lat['found']}/{lat['impulses']} found)"
    gen = r["generator"]
    return (
        f"| {r['legs']} | {r['rooms']} | {r['setup_per_s']}/s | {r['cpu_us_per_leg_s']:,.0f} "
        f"| {r['cpu_pct_of_core']} % | {r['peak_rss_mb']:.0f} MB "
        f"| {r['tick_late_p50_ms']} / {r['tick_late_p99_ms']} ms | {r['tick_busy_p99_ms']} ms "
        f"| {r['ticks_skipped']:.0f} | {r['loss_pct']} / {r['at_server']['loss_pct']:.2f} % "
        f"| {r['underrun_pct']} % | {r['jitter_ms_mean']} ms | {r['mos_min']} | {latency} "
        f"| {gen['tick']['late_p99_ms']} ms / {gen['cpu_pct']} % |"
    )


async def probe() -> int:
    server = Instance("rooms-probe", 26000, cpu=None)
    try:
        return rooms_status(server)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, nargs="+", default=[50])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--no-rooms", action="store_true", help="the server only answers")
    parser.add_argument("--audio", choices=["tone", "noise", "silence"], default="tone")
    parser.add_argument("--latency-rooms", type=int, default=4)
    parser.add_argument("--max-outstanding", type=int, default=32, help="INVITEs in flight")
    parser.add_argument(
        "--cps", type=float, default=0, help="pace INVITEs (0: as fast as answered)"
    )
    parser.add_argument("--workers", type=int, default=8, help="concurrent REST calls")
    parser.add_argument("--markdown", action="store_true", help="also print a table row per point")
    parser.add_argument("--quiet-below", type=float, default=30, help="%% of a core used elsewhere")
    parser.add_argument("--max-wait", type=float, default=1200, help="s to wait for quiet")
    parser.add_argument(
        "--max-foreign",
        type=float,
        default=40,
        help="repeat a point when other processes used more than this %% of a core meanwhile",
    )
    parser.add_argument("--attempts", type=int, default=3, help="at most this many tries a point")
    parser.add_argument("--probe", action="store_true", help="only check whether rooms work")
    parser.add_argument("--record", action="store_true", help="record every room's mix")
    parser.add_argument(
        "--room-rate", type=int, choices=[8000, 16000, 48000], help="rooms' sample_rate"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="leave every process to the scheduler (no taskset)"
    )
    args = parser.parse_args()
    if args.no_pin:
        global SERVER_CPU, GENERATOR_CPU
        SERVER_CPU = GENERATOR_CPU = None
    if args.probe:
        print(json.dumps({"post_rooms_status": asyncio.run(probe())}))
        return
    # The orchestrator stays off the server's core.
    if GENERATOR_CPU is not None and hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {GENERATOR_CPU})
    baseline = None
    if not args.no_rooms:
        baseline = asyncio.run(loopback_baseline(args.latency_rooms, 10))
        print(json.dumps({"loopback_baseline_ms": baseline}), flush=True)
    rows = []
    for legs in args.legs:
        for attempt in range(1, args.attempts + 1):
            busy = wait_for_quiet(args.quiet_below, args.max_wait)
            result = asyncio.run(run_point(legs, args, baseline))
            result["foreign_cpu_pct_before"] = round(busy, 1)
            result["attempt"] = attempt
            if result["foreign_cpu_pct"] <= args.max_foreign:
                break
            print(
                f"# {legs} legs: {result['foreign_cpu_pct']}% of a core used by other "
                "processes during the window",
                file=sys.stderr,
            )
        print(json.dumps(result), flush=True)
        rows.append(markdown_row(result))
    if args.markdown:
        print(MARKDOWN_HEADER)
        print("\n".join(rows))


if __name__ == "__main__":
    main()
