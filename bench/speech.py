"""Speech benchmark: how soon TTS is heard, how soon STT answers, and what concurrent local
TTS/STT jobs cost the media clock.

Two servers started as users start them (bench/harness.py), A calling B over PCMU. B's leg sits
in a room with a listening WebSocket participant, so "first audio" is the first non-silent
frame that arrived there over RTP. Events come from each server's VSI stream.

    python bench/speech.py --runs 5                 # TTS latency (local) and STT delay
    python bench/speech.py --runs 5 --tts elevenlabs-standin   # TTS latency from a stand-in
    python bench/speech.py --concurrency 1 2 4 8    # N local STT streams + N TTS jobs at once
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Instance, watch_vsi

SENTENCE = "The quick brown fox jumps over the lazy dog near the river."  # 12 words
TEN_WORDS = "Please hold the line while I connect you to an agent."  # 11 words
HARVARD = (
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It's easy to tell the depth of a well. These days a chicken leg is a rare dish."
)
LATE = 'callboard_media_tick_lateness_seconds{{quantile="{}"}}'


class Events:
    """Every event of an instance, stamped with the local monotonic time it arrived."""

    def __init__(self) -> None:
        self.items: list[tuple[float, dict[str, Any]]] = []

    def add(self, event: dict[str, Any]) -> None:
        self.items.append((time.monotonic(), event))

    async def wait(self, kind: str, since: float, timeout: float = 30, **match: Any) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, e in self.items:
                if (
                    t >= since
                    and e.get("type") == kind
                    and all(e.get(k) == v for k, v in match.items())
                ):
                    return t
            await asyncio.sleep(0.005)
        raise TimeoutError(f"no {kind} {match}")


class Ear:
    """A room WebSocket participant that notes when it first hears sound after a moment."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, float]] = []  # (arrival, rms)

    async def run(self, port: int, room: str, stop: asyncio.Event) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/rooms/{room}/ws") as ws:
            while not stop.is_set():
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if message.get("type") == "ping":
                    await ws.send(json.dumps({"type": "pong", "event_id": message["event_id"]}))
                elif "audio" in message:
                    pcm = np.frombuffer(base64.b64decode(message["audio"]), "<i2")
                    self.frames.append(
                        (time.monotonic(), float(np.sqrt(np.mean(pcm.astype(float) ** 2))))
                    )

    async def first_sound(self, since: float, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, rms in self.frames:
                if t >= since and rms > 300:
                    return t
            await asyncio.sleep(0.005)
        raise TimeoutError("nothing heard")


async def connect(a: Instance, b: Instance, ev_b: Events, ev_a: Events) -> tuple[str, str]:
    since = time.monotonic()
    uri = f"sip:bob@127.0.0.1:{b.sip_port}"
    a_leg = a.http.post("/v1/legs", json={"type": "sip", "uri": uri, "codecs": ["PCMU"]}).json()[
        "id"
    ]
    await ev_b.wait("leg.ringing", since)
    b_leg = next(
        e["leg_id"] for t, e in ev_b.items if t >= since and e.get("type") == "leg.ringing"
    )
    b.http.post(f"/v1/legs/{b_leg}/answer")
    await ev_a.wait("leg.connected", since, leg_id=a_leg)
    return a_leg, b_leg


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def standin_env(name: str) -> tuple[dict[str, str], dict[str, Any], Any]:
    """A provider stand-in from tests/helpers (started here), the server environment that
    points the production client at it, and the request fields; plus its stop function."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.helpers.standins import start_standin
    from tests.helpers.standins.deepgram import DEFAULT_KEY as DG_KEY
    from tests.helpers.standins.deepgram import DeepgramStandin
    from tests.helpers.standins.elevenlabs import DEFAULT_KEY as EL_KEY
    from tests.helpers.standins.elevenlabs import ElevenLabsStandin

    if name == "elevenlabs-standin":
        base, stop = start_standin(ElevenLabsStandin())
        env = {"ELEVENLABS_BASE_URL": base, "ELEVENLABS_API_KEY": EL_KEY}
        return env, {"provider": "elevenlabs", "voice": "21m00Tcm4TlvDq8ikWAM"}, stop
    base, stop = start_standin(DeepgramStandin())
    env = {"DEEPGRAM_BASE_URL": base, "DEEPGRAM_API_KEY": DG_KEY}
    return env, {"provider": "deepgram", "voice": "aura-asteria-en"}, stop


async def latency(runs: int, tts: str) -> dict[str, Any]:
    env: dict[str, str] = {}
    fields: dict[str, Any] = {"provider": "local"}
    stop_standin = None
    if tts != "local":
        env, fields, stop_standin = standin_env(tts)
    a, b = Instance("speech-a", 30000, None, env), Instance("speech-b", 34000, None)
    ev_a, ev_b, ear, stop = Events(), Events(), Ear(), asyncio.Event()
    tasks = [
        asyncio.create_task(watch_vsi(a.http_port, ev_a.add, stop)),
        asyncio.create_task(watch_vsi(b.http_port, ev_b.add, stop)),
    ]
    try:
        await asyncio.sleep(0.5)
        a_leg, b_leg = await connect(a, b, ev_b, ev_a)
        b.http.post("/v1/rooms/ear/legs", json={"leg_id": b_leg})
        tasks.append(asyncio.create_task(ear.run(b.http_port, "ear", stop)))
        await asyncio.sleep(0.5)
        started, heard = [], []
        for i in range(runs + 1):  # the first run also loads the voice: reported apart
            t0 = time.monotonic()
            body = {"text": TEN_WORDS, **fields}
            tts_id = a.http.post(f"/v1/legs/{a_leg}/tts", json=body).json()["tts_id"]
            t_started = await ev_a.wait("tts.started", t0, tts_id=tts_id)
            t_heard = await ear.first_sound(t0)
            await ev_a.wait("tts.finished", t0, tts_id=tts_id)
            if i == 0:
                first = (t_started - t0, t_heard - t0)
            else:
                started.append(t_started - t0)
                heard.append(t_heard - t0)
            await asyncio.sleep(0.5)
        # STT: A transcribes; B speaks; delay from the end of B's speech to A's final text.
        a.http.post(f"/v1/legs/{a_leg}/stt", json={"language": "en", "provider": "local"})
        delays = []
        for _ in range(runs):
            t0 = time.monotonic()
            tts_id = b.http.post(f"/v1/legs/{b_leg}/tts", json={"text": SENTENCE}).json()["tts_id"]
            t_end = await ev_b.wait("tts.finished", t0, tts_id=tts_id)
            t_text = await ev_a.wait("stt.text", t_end - 0.2, leg_id=a_leg, is_final=True)
            delays.append(t_text - t_end)
            await asyncio.sleep(1.0)
        return {
            "tts": tts,
            "tts_first_request_s": [round(x, 3) for x in first],
            "tts_started_ms_p50": round(pct(started, 50) * 1e3),
            "tts_started_ms_max": round(max(started) * 1e3),
            "tts_heard_ms_p50": round(pct(heard, 50) * 1e3),
            "tts_heard_ms_max": round(max(heard) * 1e3),
            "stt_final_after_speech_ms_p50": round(pct(delays, 50) * 1e3),
            "stt_final_after_speech_ms_max": round(max(delays) * 1e3),
            "runs": runs,
        }
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        a.stop()
        b.stop()
        if stop_standin is not None:
            stop_standin()


async def concurrency(n: int, seconds: float, workers: int = 1) -> dict[str, Any]:
    """n calls A -> B: on each, B speaks Harvard sentences one after another with a pause
    between them (local TTS), and A transcribes them (local STT)."""
    a = Instance("conc-a", 30000, None, {"STT_LOCAL_WORKERS": str(workers)})
    b = Instance("conc-b", 34000, None)
    ev_a, ev_b, stop = Events(), Events(), asyncio.Event()
    tasks = [
        asyncio.create_task(watch_vsi(a.http_port, ev_a.add, stop)),
        asyncio.create_task(watch_vsi(b.http_port, ev_b.add, stop)),
    ]
    sentences = [s.strip() + "." for s in HARVARD.split(".") if s.strip()]

    async def talk(b_leg: str, offset: int) -> None:
        i = offset
        while not stop.is_set():
            t0 = time.monotonic()
            body = {"text": sentences[i % len(sentences)], "provider": "local"}
            tts_id = b.http.post(f"/v1/legs/{b_leg}/tts", json=body).json()["tts_id"]
            await ev_b.wait("tts.finished", t0, timeout=30, tts_id=tts_id)
            await asyncio.sleep(0.8)
            i += 1

    try:
        await asyncio.sleep(0.5)
        legs = [await connect(a, b, ev_b, ev_a) for _ in range(n)]
        for a_leg, _ in legs:
            a.http.post(f"/v1/legs/{a_leg}/stt", json={"language": "en", "provider": "local"})
        talkers = [asyncio.create_task(talk(b_leg, i)) for i, (_, b_leg) in enumerate(legs)]
        await asyncio.sleep(4)  # past the model loads and the first sentences
        cpu_a0, cpu_b0, t0 = a.cpu_seconds(), b.cpu_seconds(), time.monotonic()
        await asyncio.sleep(seconds)
        window = time.monotonic() - t0
        metrics_a, metrics_b = a.metrics(), b.metrics()
        cpu_a, cpu_b = a.cpu_seconds() - cpu_a0, b.cpu_seconds() - cpu_b0
        finals = sum(1 for t, e in ev_a.items if t >= t0 and e.get("type") == "stt.text")
        spoken = sum(1 for t, e in ev_b.items if t >= t0 and e.get("type") == "tts.finished")
        stop.set()
        await asyncio.gather(*talkers, return_exceptions=True)
        return {
            "streams": n,
            "stt_workers": workers,
            "stt_server_cpu_pct": round(100 * cpu_a / window, 1),
            "tts_server_cpu_pct": round(100 * cpu_b / window, 1),
            "stt_tick_late_p99_ms": round(metrics_a.get(LATE.format("0.99"), 0) * 1e3, 2),
            "tts_tick_late_p99_ms": round(metrics_b.get(LATE.format("0.99"), 0) * 1e3, 2),
            "sentences_spoken": spoken,
            "stt_texts": finals,
        }
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        a.stop()
        b.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", type=int, nargs="*")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stt-workers", type=int, default=1)
    parser.add_argument(
        "--tts", default="local", choices=["local", "elevenlabs-standin", "deepgram-standin"]
    )
    args = parser.parse_args()
    if args.concurrency:
        for n in args.concurrency:
            result = asyncio.run(concurrency(n, args.seconds, args.stt_workers))
            print(json.dumps(result), flush=True)
    else:
        print(json.dumps(asyncio.run(latency(args.runs, args.tts))), flush=True)


if __name__ == "__main__":
    main()
