"""Opus encoder settings for voice: encode cost per 20 ms frame against wideband PESQ.

Six Harvard sentences spoken by the offline Piper voice (the one local TTS uses), at 16 kHz,
go through a libopus encoder and decoder (media/opus.py) for each setting; PESQ (P.862.2,
wideband) compares the decoded speech with the original, aligned by cross-correlation.
Encode time is CPU time per frame. The row marked * is what OpusCodec sends.

    python bench/opus_settings.py
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import soxr
from pesq import pesq

from callboard.media.codecs import OPUS_BITRATE, OPUS_COMPLEXITY
from callboard.media.opus import OpusCoder

RATE = 16000
SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
)
# (coder rate, CELT only, complexity, bit rate)
SETTINGS = (
    (48000, False, 5, 32000),  # before issue 12: VoIP (SILK/hybrid) at 48 kHz
    (48000, False, 0, 32000),
    (16000, False, 5, 32000),
    (16000, False, 0, 32000),
    (16000, True, 0, 32000),
    (16000, True, 1, 32000),
    (16000, True, 0, 40000),
    (16000, True, 1, 40000),
    (16000, True, 3, 40000),
    (16000, True, 0, 48000),
    (16000, True, 1, 48000),
    (16000, True, 3, 48000),
    (48000, True, 1, 48000),
)


def speech() -> np.ndarray:
    """The sentences with half a second of silence around each, at 16 kHz, peak 0.4."""
    import onnxruntime
    from piper import PiperConfig, PiperVoice

    from callboard.speech.tts.local import default_voice_path

    path = default_voice_path()
    config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text()))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    voice = PiperVoice(session=session, config=config)
    pause = np.zeros(config.sample_rate // 2)
    pieces = [pause]
    for text in SENTENCES:
        audio = np.concatenate([chunk.audio_int16_array for chunk in voice.synthesize(text)])
        pieces += [audio.astype(np.float64), pause]
    audio = soxr.resample(np.concatenate(pieces), config.sample_rate, RATE)
    return audio / np.max(np.abs(audio)) * 0.4


def through(
    x: np.ndarray, rate: int, celt_only: bool, complexity: int, bitrate: int
) -> tuple[np.ndarray, float]:
    """(the speech decoded, at 16 kHz; encode CPU us per frame, the best of three passes)."""
    signal = soxr.resample(x, RATE, rate) if rate != RATE else x
    pcm = np.clip(signal * 32768, -32768, 32767).astype(np.int16)
    n = rate // 50
    frames = [np.ascontiguousarray(pcm[i * n : (i + 1) * n]) for i in range(len(pcm) // n)]
    passes = []
    for _ in range(3):
        coder = OpusCoder(rate, bitrate=bitrate, complexity=complexity, celt_only=celt_only)
        start = time.process_time()
        packets = [coder.encode(frame) for frame in frames]
        passes.append((time.process_time() - start) / len(frames) * 1e6)
    decoded = np.concatenate([coder.decode(packet) for packet in packets])
    out = decoded.astype(np.float64) / 32768
    if rate != RATE:
        out = soxr.resample(out, rate, RATE)
    return out, min(passes)


def aligned_pesq(reference: np.ndarray, degraded: np.ndarray) -> float:
    window = RATE * 3
    scores = np.correlate(degraded[:window], reference[:window], "full")
    lag = max(0, int(np.argmax(scores)) - (window - 1))
    degraded = degraded[lag:]
    size = min(len(reference), len(degraded))
    return float(pesq(RATE, reference[:size], degraded[:size], "wb"))


def main() -> None:
    x = speech()
    print("rate   mode  complexity  kbit/s   encode us/frame   WB-PESQ")
    for rate, celt_only, complexity, bitrate in SETTINGS:
        decoded, encode_us = through(x, rate, celt_only, complexity, bitrate)
        ours = celt_only and complexity == OPUS_COMPLEXITY and bitrate == OPUS_BITRATE
        mode = "CELT" if celt_only else "VoIP"
        print(
            f"{rate:5d}  {mode}  {complexity:10d}  {bitrate // 1000:6d}   {encode_us:15.0f}"
            f"   {aligned_pesq(x, decoded):7.3f}{' *' if ours and rate == RATE else ''}"
        )


if __name__ == "__main__":
    main()
