"""Micro-benchmark of the per-leg media path: codec + resampling per 20 ms frame, the
batched resampling of many legs (ResamplerBank), and the RtpSession receive/send path per
packet (at the codec's rate: resampling happens in the engine's lanes).

    python bench/media_micro.py [--frames N] [--rows 400]

Prints microseconds (median of several runs) per frame or packet, one line each, and an
estimate of the session's CPU per leg-second (50 frames each way).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

import numpy as np

from callboard.media.codecs import SUPPORTED_CODECS, create_codec
from callboard.media.frames import FRAME_SAMPLES, SAMPLE_RATE
from callboard.media.resample import Resampler, ResamplerBank
from callboard.rtp.packet import build_rtp
from callboard.rtp.ports import PortAllocator
from callboard.rtp.session import RtpSession

RUNS = 5
PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8, "G722": 9, "opus": 111}


def speech_like(rate: int, frames: int) -> np.ndarray:
    """Two tones plus noise, so codecs do not see trivially compressible input."""
    rng = np.random.default_rng(0)
    t = np.arange(rate // 50 * frames) / rate
    x = 6000 * np.sin(2 * np.pi * 230 * t) + 3000 * np.sin(2 * np.pi * 1730 * t)
    return np.clip(x + rng.normal(0, 800, len(t)), -32768, 32767).astype(np.int16)


def per_call_us(fn: Callable[[int], object], count: int) -> float:
    """Median over RUNS of the mean time of `count` calls fn(0..count-1), in us."""
    results = []
    for _ in range(RUNS):
        start = time.perf_counter()
        for i in range(count):
            fn(i)
        results.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(results)


def bench_codec(name: str, frames: int) -> tuple[float, float]:
    """(decode + resample to 16 kHz, resample from 16 kHz + encode) in us per frame."""
    encoder, decoder = create_codec(name), create_codec(name)
    n = encoder.sample_rate // 50
    pcm16 = speech_like(SAMPLE_RATE, frames)
    frames16 = [pcm16[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(frames)]
    down = Resampler(SAMPLE_RATE, encoder.sample_rate)
    up = Resampler(decoder.sample_rate, SAMPLE_RATE)
    native = speech_like(encoder.sample_rate, frames)
    payloads = [encoder.encode(native[i * n : (i + 1) * n]) for i in range(frames)]
    encoder = create_codec(name)
    encode_us = per_call_us(lambda i: encoder.encode(down.process(frames16[i])), frames)
    decode_us = per_call_us(lambda i: up.process(decoder.decode(payloads[i])), frames)
    return decode_us, encode_us


async def bench_session(
    codec: str, frames: int, forward: bool = False
) -> tuple[float, float, float]:
    """(datagram callback, read_frame, write) in us. With `forward`, the write is what the
    engine does for a leg that hears one other leg on its codec: that leg's packet sent on
    (RtpSession.forward) instead of a frame encoded."""
    ports = PortAllocator(45000, 45999)
    rx = RtpSession(bind_ip="127.0.0.1", ports=ports)
    tx_peer = RtpSession(bind_ip="127.0.0.1", ports=ports)
    await rx.open()
    peer_port = await tx_peer.open()
    pt = PAYLOAD_TYPES[codec]
    rx.configure(
        remote=("127.0.0.1", peer_port),
        remote_rtcp=None,
        codec=codec,
        payload_type=pt,
        dtmf_payload_type=101,
    )
    encoder = create_codec(codec)
    n = encoder.sample_rate // 50
    native = speech_like(encoder.sample_rate, frames)
    payloads = [encoder.encode(native[i * n : (i + 1) * n]) for i in range(frames)]
    addr = ("127.0.0.1", peer_port)
    step = encoder.timestamp_step()
    pcm = native[:n]
    on_rtp = rx._on_rtp  # the datagram callback, driven directly to time it alone
    receive, read, write = [], [], []
    seq = 0
    for _ in range(RUNS):
        packets = [
            build_rtp(pt, (seq + i) & 0xFFFF, (seq + i) * step, 0x1234, payloads[i], False)
            for i in range(frames)
        ]
        seq += frames
        t_receive = t_read = t_write = 0.0
        for i in range(frames):
            t0 = time.perf_counter()
            on_rtp(packets[i], addr)
            t1 = time.perf_counter()
            frame = rx.read_frame()
            t2 = time.perf_counter()
            if forward:
                payload = rx.last_payload
                assert payload is not None
                rx.forward(payload)
            else:
                rx.write_frame(pcm)
            t3 = time.perf_counter()
            t_receive += t1 - t0
            t_read += t2 - t1
            t_write += t3 - t2
            assert frame is not None
        receive.append(t_receive / frames * 1e6)
        read.append(t_read / frames * 1e6)
        write.append(t_write / frames * 1e6)
    rx.close()
    tx_peer.close()
    return statistics.median(receive), statistics.median(read), statistics.median(write)


def bench_bank(in_rate: int, out_rate: int, rows: int, frames: int) -> tuple[float, float]:
    """(ResamplerBank, Resampler) in us per stream per 20 ms frame, `rows` streams."""
    bank = ResamplerBank(in_rate, out_rate)
    bank.resize(rows)
    signal = speech_like(in_rate, rows)
    bank.inputs()[...] = signal.reshape(rows, -1)
    banked = per_call_us(lambda i: bank.run(), frames) / rows
    single = Resampler(in_rate, out_rate)
    frame = signal[: in_rate // 50]
    return banked, per_call_us(lambda i: single.process(frame), frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--rows", type=int, default=400, help="streams in a ResamplerBank")
    args = parser.parse_args()
    print(f"== resampling, per stream per 20 ms frame ({args.rows} streams) ==")
    for in_rate, out_rate in ((8000, 16000), (16000, 8000), (48000, 16000), (16000, 48000)):
        banked, single = bench_bank(in_rate, out_rate, args.rows, args.frames // 5)
        print(
            f"{in_rate:5d} -> {out_rate:5d}  ResamplerBank {banked:5.2f} us   "
            f"Resampler {single:5.2f} us"
        )
    print("== codec + resampler, per 20 ms frame ==")
    for name in SUPPORTED_CODECS:
        decode_us, encode_us = bench_codec(name, args.frames)
        print(
            f"{name:5s} decode+resample {decode_us:7.1f} us/frame   "
            f"resample+encode {encode_us:7.1f} us/frame"
        )
    print("== RtpSession, per packet / frame ==")
    runs = [(codec, False) for codec in SUPPORTED_CODECS] + [("G722", True), ("opus", True)]
    for codec, forward in runs:
        receive, read, write = asyncio.run(bench_session(codec, args.frames, forward))
        leg_second = 50 * (receive + read + write)
        label = f"{codec}, forwarded" if forward else codec
        what = "forward" if forward else "write_frame"
        print(
            f"{label:15s} datagram callback {receive:5.1f} us   read_frame {read:6.1f} us   "
            f"{what} (incl. sendto) {write:6.1f} us   => {leg_second:6.0f} us per leg-second"
        )


if __name__ == "__main__":
    main()
