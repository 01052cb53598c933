"""Speech quality through a room, measured with PESQ (ITU-T P.862, narrowband).

A baresip phone speaks real speech (espeak-ng) into a two-party PCMU room; a second phone
records what it hears. The reference is exactly what the first phone fed its encoder (its
sndfile "-enc" recording). Along this path the speech crosses G.711 twice (the phone's encoder
and ours), so the codec's own cost is the same speech through two G.711 round trips; the
server may cost at most 0.1 PESQ beyond that (decode, 8->16 kHz, mix, 16->8 kHz, jitter buffer).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pesq import pesq

from tests.helpers.audio import (
    active_spans,
    g711_decode,
    g711_encode,
    read_wav_mono,
    write_wav,
    xcorr_lag,
)
from tests.helpers.baresip import BaresipFactory
from tests.helpers.peers import require_binary
from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
)

pytestmark = pytest.mark.media_timing


def _speech(tmp_path: Path) -> Path:
    espeak = require_binary("espeak-ng")
    pieces = []
    rate = 0
    for i, text in enumerate(SENTENCES):
        path = tmp_path / f"s{i}.wav"
        subprocess.run([espeak, "-s", "150", "-w", str(path), text], check=True, timeout=30)
        rate, mono = read_wav_mono(path)
        pieces += [mono, np.zeros(rate // 2)]
    audio = np.concatenate([np.zeros(rate), *pieces])
    out = tmp_path / "speech.wav"
    write_wav(out, rate, audio / float(np.max(np.abs(audio))) * 0.4)
    return out


def _utterances(samples: np.ndarray, rate: int, gap_s: float = 0.25) -> list[tuple[int, int]]:
    """(start, end) sample indexes of the stretches of speech, joined across short pauses."""
    merged: list[list[float]] = []
    for start, end in active_spans(samples, rate):
        if merged and start - merged[-1][1] < gap_s:
            merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(int(a * rate), int(b * rate)) for a, b in merged if b - a > 0.3]


def _g711_round_trip(x: np.ndarray) -> np.ndarray:
    return g711_decode(g711_encode(x, "ulaw"), "ulaw").astype(np.float64) / 32768.0


def test_room_path_costs_at_most_0_1_pesq(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    tmp_path: Path,
) -> None:
    hooks = webhook_receiver
    silent = tmp_path / "silence.wav"
    write_wav(silent, 8000, np.zeros(8000))
    talker = baresip_factory("talker", source_wav=_speech(tmp_path), codecs=["PCMU"]).start()
    listener = baresip_factory("listener", source_wav=silent, codecs=["PCMU"]).start()
    legs = [
        originate(hooked_server, phone.uri, codecs=["PCMU"], room_id="quality")["id"]
        for phone in (talker, listener)
    ]
    for leg in legs:
        hooks.wait_for("leg.joined_room", leg_id=leg)
    time.sleep(12.0)
    hooked_server.api("DELETE", "/rooms/quality")
    talker.wait_closed()
    listener.wait_closed()

    rate, sent = talker.sent()
    heard_rate, heard = listener.heard()
    assert rate == heard_rate == 8000
    lag, _ = xcorr_lag(sent, heard)
    # Each sentence is heard whole and in shape. Checked sentence by sentence: the adaptive
    # jitter buffer may give latency back by cutting a quiet frame between two sentences,
    # which shifts what follows by 20 ms (PESQ aligns each utterance on its own as well).
    sentences = _utterances(sent, rate)
    assert len(sentences) == len(SENTENCES), sentences
    for start, end in sentences:
        lo, hi = start + lag - rate // 10, end + lag + rate // 10  # +-100 ms around
        _, local = xcorr_lag(sent[start:end], heard[max(lo, 0) : hi])
        assert local > 0.8, f"a sentence heard does not match what was said (peak {local:.2f})"
    # Align: heard[n] ~ sent[n - lag]; compare the overlapping stretch.
    if lag >= 0:
        ref, deg = sent, heard[lag:]
    else:
        ref, deg = sent[-lag:], heard
    n = min(len(ref), len(deg))
    ref, deg = ref[:n], deg[:n]
    assert n > 6 * rate
    through_server = pesq(rate, ref, deg, "nb")
    codec_only = pesq(rate, ref, _g711_round_trip(_g711_round_trip(ref)), "nb")
    print(f"PESQ: two G.711 round trips {codec_only:.3f}, through the room {through_server:.3f}")
    assert through_server >= codec_only - 0.1
    assert through_server == pytest.approx(through_server)  # a number, not NaN
