"""Micro-benchmark of one media-clock tick: N G.711 legs in two-party rooms, no sockets.

Each leg is a stand-in endpoint that hands the engine one PCMU payload a tick (as an RtpSession
does when a packet arrived) and drops what it is given, so the figure is the engine's own work:
bulk G.711 decode, resampling to the rooms' rate and back, speaking levels, mixing, encode.

    python bench/engine_tick.py [--legs 400] [--ticks 2000] [--room-rate 16000]

Prints the median microseconds per tick and per leg-second over several runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from callboard.media.engine import MediaEngine
from callboard.media.g711 import ULAW
from callboard.media.speaking import SpeakingAnalyser

RUNS = 5


class PcmuLeg:
    """An endpoint on PCMU at 8 kHz whose frames arrive still encoded."""

    sample_rate = 8000
    law = ULAW
    forward_key = None  # decoded and mixed like a leg whose room has more than two

    def __init__(self, payloads: list[bytes]) -> None:
        self.payloads = payloads
        self.index = 0

    def read_frame(self) -> np.ndarray | None:
        return self.law.decode_rows([self.read_encoded()], 160)[0]

    def read_encoded(self) -> bytes:
        self.index = (self.index + 1) % len(self.payloads)
        return self.payloads[self.index]

    def write_frame(self, pcm: np.ndarray) -> None:
        pass

    def write_encoded(self, payload: bytes) -> None:
        pass

    def prefer_rate(self, rate: int) -> None:
        pass  # G.711 codes at 8 kHz only


def payloads(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    t = np.arange(160 * count) / 8000
    x = 6000 * np.sin(2 * np.pi * 230 * t) + rng.normal(0, 800, len(t))
    pcm = np.clip(x, -32768, 32767).astype(np.int16)
    return [ULAW.encode_rows(pcm[i * 160 : (i + 1) * 160].reshape(1, -1)) for i in range(count)]


def build(legs: int, room_rate: int) -> MediaEngine:
    engine = MediaEngine()
    frames = payloads(50)
    for i in range(legs):
        room = f"room-{i // 2}"
        if room_rate != 16000:  # (so that the default also runs on trees before room rates)
            engine.room(room, room_rate)
        media = engine.attach(f"leg-{i}", PcmuLeg(frames))
        engine.add_analyser(f"leg-{i}", SpeakingAnalyser(lambda change: None))  # as legs have
        engine.join_room(media, room)
    return engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--legs", type=int, default=400)
    parser.add_argument("--ticks", type=int, default=2000)
    parser.add_argument("--room-rate", type=int, default=16000, choices=[8000, 16000, 48000])
    args = parser.parse_args()
    engine = build(args.legs, args.room_rate)
    for _ in range(50):  # warm up: lanes bound, arrays allocated
        engine.tick()
    runs = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for _ in range(args.ticks):
            engine.tick()
        runs.append((time.perf_counter() - start) / args.ticks * 1e6)
    per_tick = statistics.median(runs)
    print(
        f"{args.legs} PCMU legs, {args.room_rate} Hz rooms: {per_tick:.0f} us per tick, "
        f"{per_tick * 50 / args.legs:.0f} us per leg-second (engine only)"
    )


if __name__ == "__main__":
    main()
