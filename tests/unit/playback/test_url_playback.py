"""URL playback as the media clock sees it: frames, repeats, volume, stop, errors, events.

A local HTTP server serves the files; a stand-in clock pulls frames the way the engine does
(same `_sum_sources`), only faster than real time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from callboard.core import url_playback
from callboard.core.errors import BadRequest, Conflict, NotFound
from callboard.core.playback import MAX_PLAYBACKS, Playback, Playbacks
from callboard.core.playback_requests import PlaybackSpec, new_playback
from callboard.events.base import LegOrRoomEvent
from callboard.events.bus import EventBus
from callboard.media.engine import FrameSource, _sum_sources
from tests.helpers.audio import dominant_frequency, level_dbfs, tone
from tests.helpers.audio_files import wav_bytes
from tests.helpers.http_files import FileServer, Served

RATE = 16000


class Host:
    """A leg's or room's source list, as LegMedia/RoomMedia hold it."""

    def __init__(self) -> None:
        self.sources: list[FrameSource] = []
        self.on_finished: Callable[[FrameSource], None] | None = None


class Events:
    """The playbacks' events as a sink of a real bus sees them (for a leg L)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self._bus = EventBus("test")
        self._bus.add_sink(self.seen.append)

    def publish(self, event: LegOrRoomEvent) -> None:
        self._bus.publish(event, leg_id="L")

    def types(self) -> list[str]:
        return [e["type"] for e in self.seen]


@pytest.fixture
def files() -> Iterator[FileServer]:
    server = FileServer()
    yield server
    server.close()


def decoder_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("decode pb-")]


async def run_clock(host: Host, ticks: int, until_idle: bool = True) -> list[np.ndarray]:
    """Up to `ticks` ticks (stopping once no source is left); the mixed frame of each."""
    out: list[np.ndarray] = []
    for _ in range(ticks):
        if until_idle and not host.sources:
            break
        total = _sum_sources(host.sources, host.on_finished)
        out.append(np.zeros(320, np.int16) if total is None else total.astype(np.int16))
        await asyncio.sleep(0.001)
    return out


def audible(frames: list[np.ndarray]) -> np.ndarray:
    """The frames from the first non-silent one on, as one signal."""
    first = next((i for i, f in enumerate(frames) if f.any()), len(frames))
    return np.concatenate(frames[first:]) if frames[first:] else np.zeros(0, np.int16)


def start(url: str, events: Events, host: Host, playbacks: Playbacks, **spec: Any) -> Playback:
    playback = new_playback(PlaybackSpec(url=url, mime_type="audio/wav", **spec), events.publish)
    return playbacks.start(host, playback)


async def test_repeats_play_from_memory(files: FileServer) -> None:
    url = files.add("/half.wav", Served(wav_bytes(tone(700, 500, rate=8000, dbfs=-6), 8000)))
    events, host, playbacks = Events(), Host(), Playbacks()
    playback = start(url, events, host, playbacks, repeat=3)
    frames = await run_clock(host, 2000)
    # Three rounds of 0.5 s, nothing more. (This clock outruns the decoder, so the first
    # round may have gaps; the rounds from memory have none.)
    out = np.concatenate([f for f in frames if f.any()])
    assert len(out) == 3 * RATE // 2
    assert all(f.any() for f in frames[-50:-1])
    assert dominant_frequency(out, RATE) == pytest.approx(700, abs=2)
    assert files.hits["/half.wav"] == 1  # rounds 2 and 3 came from memory
    assert events.types() == ["playback.started", "playback.finished"]
    assert {e["playback_id"] for e in events.seen} == {playback.id}
    assert not playbacks.active and not host.sources


async def test_a_file_over_the_cache_is_downloaded_every_round(
    files: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(url_playback, "CACHE_FRAMES", 10)
    url = files.add("/one.wav", Served(wav_bytes(tone(500, 1000, rate=16000), 16000)))
    events, host, playbacks = Events(), Host(), Playbacks()
    start(url, events, host, playbacks, repeat=2)
    frames = await run_clock(host, 3000)
    assert files.hits["/one.wav"] == 2
    assert len(audible(frames)) >= 2 * RATE  # buffering between rounds adds silence only
    assert sum(1 for f in frames if f.any()) == 100
    assert events.types() == ["playback.started", "playback.finished"]


async def test_forever_until_stopped_and_live_volume(files: FileServer) -> None:
    url = files.add("/loop.wav", Served(wav_bytes(tone(1000, 200, rate=16000, dbfs=-6), 16000)))
    events, host, playbacks = Events(), Host(), Playbacks()
    playback = start(url, events, host, playbacks, repeat=-1)
    loud = audible(await run_clock(host, 200))
    assert len(loud) > 100 * 320  # far more than the 10 frames of one round
    playbacks.get(playback.id).set_volume(-4)
    quiet = np.concatenate(await run_clock(host, 50))
    assert level_dbfs(loud[-RATE // 2 :]) - level_dbfs(quiet) == pytest.approx(12, abs=0.2)
    playbacks.stop(playback.id)
    assert await run_clock(host, 5) == []  # gone from the sources at once
    assert events.types() == ["playback.started", "playback.finished"]
    with pytest.raises(NotFound):
        playbacks.stop(playback.id)


async def test_stop_mid_download_ends_the_decoder_thread(files: FileServer) -> None:
    body = wav_bytes(tone(300, 30_000, rate=16000), 16000)  # 960 kB, trickled over 10 s
    url = files.add("/slow.wav", Served(body, chunk=9600, interval=0.1))
    events, host, playbacks = Events(), Host(), Playbacks()
    playback = start(url, events, host, playbacks)
    frames = await run_clock(host, 1500)
    assert sum(1 for f in frames if f.any()) > 20, "nothing played while downloading"
    assert "/slow.wav" not in files.completed
    assert decoder_threads()
    playbacks.stop(playback.id)
    for _ in range(50):
        if not decoder_threads():
            break
        await asyncio.sleep(0.05)
    assert not decoder_threads()
    assert events.types() == ["playback.started", "playback.finished"]


@pytest.mark.parametrize(
    ("served", "message"),
    [
        (Served(b"<html>gone</html>", status=404, content_type="text/html"), "HTTP 404"),
        (Served(b"<html>hello</html>" * 50, content_type="text/html"), "not an audio file"),
    ],
)
async def test_errors_end_the_playback_with_playback_error(
    files: FileServer, served: Served, message: str
) -> None:
    url = files.add("/bad", served)
    events, host, playbacks = Events(), Host(), Playbacks()
    playback = start(url, events, host, playbacks)
    await run_clock(host, 500)
    assert events.types() == ["playback.error"]
    assert message in events.seen[0]["error"]
    assert events.seen[0]["playback_id"] == playback.id
    assert not host.sources and not playbacks.active
    await asyncio.sleep(0.2)
    assert not decoder_threads()


async def test_unreachable_host_is_an_error(files: FileServer) -> None:
    events, host, playbacks = Events(), Host(), Playbacks()
    start("http://127.0.0.1:9/nothing.wav", events, host, playbacks)
    await run_clock(host, 500)
    assert events.types() == ["playback.error"]
    assert "cannot connect" in events.seen[0]["error"]


async def test_several_playbacks_sum(files: FileServer) -> None:
    a = files.add("/a.wav", Served(wav_bytes(tone(400, 1000, rate=16000, dbfs=-12), 16000)))
    b = files.add("/b.wav", Served(wav_bytes(tone(900, 1000, rate=16000, dbfs=-12), 16000)))
    events, host, playbacks = Events(), Host(), Playbacks()
    start(a, events, host, playbacks)
    start(b, events, host, playbacks)
    out = np.concatenate(await run_clock(host, 1000))
    spectrum = np.abs(np.fft.rfft(out[-RATE // 2 :] if out.size else out))
    peaks = sorted(np.argsort(spectrum)[-2:] * RATE / (RATE // 2))
    assert peaks == pytest.approx([400, 900], abs=4)


def test_request_rules() -> None:
    publish = Events().publish
    for spec in (
        PlaybackSpec(),
        PlaybackSpec(url="http://x/a.wav", tone="busy", mime_type="audio/wav"),
        PlaybackSpec(url="http://x/a.wav"),
        PlaybackSpec(url="http://x/a.wav", mime_type=" "),
        PlaybackSpec(url="file:///etc/passwd", mime_type="audio/wav"),
        PlaybackSpec(url="http://x/a.wav", mime_type="audio/wav", repeat=-2),
        PlaybackSpec(tone="busy", volume=9),
        PlaybackSpec(tone="xx_busy"),
    ):
        with pytest.raises(BadRequest):
            new_playback(spec, publish)
    playbacks, host = Playbacks(), Host()
    for _ in range(MAX_PLAYBACKS):
        playbacks.start(host, new_playback(PlaybackSpec(tone="gb_busy"), publish))
    with pytest.raises(Conflict):
        playbacks.start(host, new_playback(PlaybackSpec(tone="gb_busy"), publish))
    assert playbacks.stop_all() == MAX_PLAYBACKS
    assert not host.sources
