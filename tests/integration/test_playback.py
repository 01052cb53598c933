"""Playback heard at the far end: files from a local HTTP server and telephone tones, played
to a SIP leg and into rooms, checked as audio (correlation, frequency, level, timing).

Two instances: A plays to its leg of a call A -> B. B's end of the call sits in a room with a
listening WebSocket participant (the "ear"), which hears exactly what arrived over RTP.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import soxr

from tests.helpers.audio import (
    active_spans,
    band_energy_db,
    dominant_frequency,
    level_dbfs,
    tone,
    xcorr_lag,
)
from tests.helpers.audio_files import mp3_bytes, wav_bytes
from tests.helpers.http_files import FileServer, Served
from tests.helpers.room_ear import RATE, RoomEar
from tests.helpers.server import ServerProcess
from tests.helpers.tone_analysis import on_off_runs as runs_of
from tests.helpers.tone_analysis import spectral_peaks
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect, module_fixtures

TONE_DBFS = -13.0  # the generator's level per frequency component


def speech_like(seconds: float, rate: int, seed: int = 7) -> np.ndarray:
    """Noise in the telephone band (300-3000 Hz) with a 4 Hz syllable-like envelope."""
    n = int(seconds * rate)
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(0, 1, n))
    freqs = np.fft.rfftfreq(n, 1 / rate)
    spectrum[(freqs < 300) | (freqs > 3000)] = 0
    x = np.fft.irfft(spectrum, n)
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 4 * np.arange(n) / rate)
    result: np.ndarray = x / np.sqrt(np.mean(x * x)) * 10 ** (-16 / 20) / np.sqrt(2)
    return result


SPEECH = speech_like(3.0, 8000)


hooks, servers = module_fixtures("playback")


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server = FileServer()
    wav = "audio/wav"
    server.add("/speech-8k.wav", Served(wav_bytes(SPEECH, 8000, bits=16), content_type=wav))
    chord = tone(1000, 4000, rate=44100, dbfs=-20, dtype="float")
    stereo = np.stack([chord, chord], axis=1)
    server.add("/tone-44k-stereo.wav", Served(wav_bytes(stereo, 44100, bits=16)))
    mp3 = mp3_bytes(tone(600, 1500, rate=44100, dbfs=-10, dtype="float"), 44100)
    server.add("/tone.mp3", Served(mp3, content_type="audio/mpeg"))
    server.add("/short.wav", Served(wav_bytes(tone(800, 400, rate=8000, dbfs=-10), 8000)))
    # 20 s at 16 kHz (640 kB) sent at twice real time: 10 s to arrive in full.
    long = wav_bytes(tone(1200, 20_000, rate=16000, dbfs=-10), 16000)
    server.add("/slow-long.wav", Served(long, chunk=6400, interval=0.1))
    server.add("/gone.wav", Served(b"<html>gone</html>", status=404, content_type="text/html"))
    page = b"<!doctype html><html><body>" + b"<p>not audio at all</p>" * 200 + b"</body></html>"
    server.add("/page.wav", Served(page, content_type="text/html"))
    yield server
    server.close()


@dataclass
class Call:
    a: ServerProcess
    b: ServerProcess
    a_leg: str
    ear: RoomEar


@pytest.fixture(scope="module")
def call(servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver) -> Iterator[Call]:
    """A calls B; B's leg is in room "ear" with a listening WebSocket participant."""
    a, b = servers
    a_leg, b_leg = connect(a, b, hooks)
    added = b.api("POST", "/rooms/ear/legs", {"leg_id": b_leg})
    assert added.status_code == 200, added.text
    ear = RoomEar(b, "ear")
    yield Call(a, b, a_leg, ear)
    ear.close()
    a.api("DELETE", f"/legs/{a_leg}")


@pytest.fixture(autouse=True)
def no_crash(servers: tuple[ServerProcess, ServerProcess]) -> Iterator[None]:
    yield
    for server in servers:
        assert server.running(), server.log_tail()
        assert "Traceback" not in server.log_text(), server.log_tail()


def play(server: ServerProcess, path: str, **body: Any) -> str:
    response = server.api("POST", path, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "playing"
    assert answer["playback_id"].startswith("pb-")
    return str(answer["playback_id"])


def stop(server: ServerProcess, path: str) -> None:
    response = server.api("DELETE", path)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "stopped"


def patch_volume(server: ServerProcess, path: str, volume: int) -> None:
    response = server.api("PATCH", path, {"volume": volume})
    assert response.status_code == 200, response.text


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def between(x: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return x[int(start_s * RATE) : int(end_s * RATE)]


def chunk_correlations(
    source: np.ndarray, heard: np.ndarray, lag: int, chunk_s: float = 0.5, search_s: float = 0.06
) -> list[float]:
    """Normalised correlation of each voiced chunk of `source` with `heard`, each chunk at
    its best alignment within `search_s` of `lag`."""
    chunk, search = int(chunk_s * RATE), int(search_s * RATE)
    floor = 0.05 * np.sqrt(np.mean(source.astype(np.float64) ** 2))
    out = []
    for start in range(0, len(source) - chunk + 1, chunk):
        piece = source[start : start + chunk].astype(np.float64)
        if np.sqrt(np.mean(piece**2)) < floor:  # a pause: nothing to compare
            continue
        lo = max(0, start + lag - search)
        window = heard[lo : start + lag + chunk + search].astype(np.float64)
        offset, _ = xcorr_lag(piece, window)
        aligned = window[max(0, offset) : max(0, offset) + chunk]
        if len(aligned) < chunk:
            out.append(0.0)
            continue
        out.append(float(piece @ aligned / (np.linalg.norm(piece) * np.linalg.norm(aligned))))
    return [round(c, 3) for c in out]


def single_span(x: np.ndarray, threshold: float = -40.0) -> tuple[float, float]:
    spans = active_spans(x, RATE, threshold_dbfs=threshold)
    assert len(spans) == 1, f"expected one stretch of sound, got {spans}"
    return spans[0]


# -- files to a leg ------------------------------------------------------------------------


def test_wav_8k_is_heard_as_sent(call: Call, files: FileServer, hooks: WebhookReceiver) -> None:
    since = hooks.mark()
    t0 = time.monotonic()
    url = files.base + "/speech-8k.wav"
    pb = play(call.a, f"/legs/{call.a_leg}/play", url=url, mime_type="audio/wav")
    started = hooks.wait_for("playback.started", since=since, playback_id=pb)
    assert started["leg_id"] == call.a_leg and started["instance_id"] == call.a.instance_id
    finished = hooks.wait_for("playback.finished", timeout=8, since=since, playback_id=pb)
    assert finished["leg_id"] == call.a_leg
    heard = call.ear.listen(4.0, start=t0)
    source = soxr.resample(SPEECH, 8000, RATE)
    lag, _ = xcorr_lag(source, heard)
    assert 0 < lag < 0.5 * RATE
    # Chunk by chunk, each at its own best alignment: the receiving jitter buffer may give
    # latency back by cutting one 20 ms frame (in a pause), which shifts what follows.
    corrs = chunk_correlations(source, heard, lag)
    assert len(corrs) >= 4
    good = sum(c > 0.9 for c in corrs)
    assert good >= len(corrs) - 1, f"the far end heard something else (correlations {corrs})"
    start, end = single_span(heard)
    assert end - start == pytest.approx(3.0, abs=0.1)
    # The events bracket the audio: finished comes once the 3 s have been played.
    elapsed = finished.request.monotonic - started.request.monotonic
    assert elapsed == pytest.approx(3.0, abs=0.3)


def test_mp3_is_heard_at_its_frequency_level_and_length(call: Call, files: FileServer) -> None:
    t0 = time.monotonic()
    play(call.a, f"/legs/{call.a_leg}/play", url=files.base + "/tone.mp3", mime_type="audio/mpeg")
    heard = call.ear.listen(2.5, start=t0)
    start, end = single_span(heard)
    assert end - start == pytest.approx(1.5, abs=0.1)
    body = between(heard, start + 0.1, end - 0.1)
    assert dominant_frequency(body, RATE) == pytest.approx(600, abs=2)
    assert level_dbfs(body) == pytest.approx(-10, abs=1.0)


def test_volume_steps_live_patch_and_stop(
    call: Call, files: FileServer, hooks: WebhookReceiver
) -> None:
    """44.1 kHz stereo WAV at -20 dBFS: started at +4, patched to 0 and -4, then stopped."""
    since = hooks.mark()
    path = f"/legs/{call.a_leg}/play"
    t0 = time.monotonic()
    pb = play(
        call.a, path, url=files.base + "/tone-44k-stereo.wav", mime_type="audio/wav", volume=4
    )
    hooks.wait_for("playback.started", since=since, playback_id=pb)
    marks = []
    for volume in (0, -4):
        sleep_until(t0 + 0.9 * (len(marks) + 1))
        marks.append(time.monotonic())
        patch_volume(call.a, f"{path}/{pb}", volume)
    sleep_until(t0 + 2.7)
    t_stop = time.monotonic()
    stop(call.a, f"{path}/{pb}")
    hooks.wait_for("playback.finished", since=since, playback_id=pb)
    heard = call.ear.listen(3.5, start=t0)

    def level(start: float) -> float:
        piece = call.ear.heard(start + 0.3, start + 0.8)
        assert dominant_frequency(piece, RATE) == pytest.approx(1000, abs=2)
        return level_dbfs(piece)

    at_plus4, at_0, at_minus4 = level(t0), level(marks[0]), level(marks[1])
    assert at_0 == pytest.approx(-20, abs=1.0)
    assert at_plus4 - at_0 == pytest.approx(12, abs=1.0)
    assert at_0 - at_minus4 == pytest.approx(12, abs=1.0)
    # Silence from shortly after the DELETE, though the file had 1.3 s left.
    after = call.ear.heard(t_stop + 0.3, t_stop + 0.8)
    assert level_dbfs(after) < -60
    assert len(heard) > 0
    assert hooks.events("playback.error", since=since) == []


def test_repeat_count_is_honoured(call: Call, files: FileServer, hooks: WebhookReceiver) -> None:
    since = hooks.mark()
    t0 = time.monotonic()
    url = files.base + "/short.wav"
    pb = play(call.a, f"/legs/{call.a_leg}/play", url=url, mime_type="audio/wav", repeat=3)
    heard = call.ear.listen(2.5, start=t0)
    start, end = single_span(heard)  # three rounds back to back, then nothing
    assert end - start == pytest.approx(1.2, abs=0.06)
    assert dominant_frequency(between(heard, start, end), RATE) == pytest.approx(800, abs=2)
    assert len(hooks.events("playback.finished", since=since, playback_id=pb)) == 1
    assert files.hits["/short.wav"] == 1  # repeats came from memory


def test_playback_starts_before_a_slow_download_completes(
    call: Call, files: FileServer, hooks: WebhookReceiver
) -> None:
    since = hooks.mark()
    t0 = time.monotonic()
    url = files.base + "/slow-long.wav"
    pb = play(call.a, f"/legs/{call.a_leg}/play", url=url, mime_type="audio/wav")
    started = hooks.wait_for("playback.started", since=since, playback_id=pb)
    heard = call.ear.listen(3.0, start=t0)
    assert "/slow-long.wav" not in files.completed, "the download finished before the check"
    assert started.request.monotonic - t0 < 2.5
    loud = between(heard, 2.0, 3.0)
    assert dominant_frequency(loud, RATE) == pytest.approx(1200, abs=2)
    assert level_dbfs(loud) == pytest.approx(-10, abs=1.0)
    stop(call.a, f"/legs/{call.a_leg}/play/{pb}")
    hooks.wait_for("playback.finished", since=since, playback_id=pb)


@pytest.mark.parametrize(
    ("path", "expected"), [("/gone.wav", "HTTP 404"), ("/page.wav", "not an audio file")]
)
def test_bad_urls_end_in_playback_error(
    call: Call, files: FileServer, hooks: WebhookReceiver, path: str, expected: str
) -> None:
    since = hooks.mark()
    pb = play(call.a, f"/legs/{call.a_leg}/play", url=files.base + path, mime_type="audio/wav")
    error = hooks.wait_for("playback.error", since=since, playback_id=pb)
    assert expected in error["error"], error
    assert error["leg_id"] == call.a_leg
    time.sleep(0.3)
    assert [e.type for e in hooks.events(since=since, playback_id=pb)] == ["playback.error"]
    # Gone: nothing left to stop.
    assert call.a.api("DELETE", f"/legs/{call.a_leg}/play/{pb}").status_code == 404


def test_request_errors(call: Call, files: FileServer) -> None:
    url = files.base + "/short.wav"
    leg_play = f"/legs/{call.a_leg}/play"
    for body in (
        {"url": url},  # no mime_type
        {"url": url, "mime_type": ""},
        {"url": "ftp://127.0.0.1/a.wav", "mime_type": "audio/wav"},
        {"url": "not a url", "mime_type": "audio/wav"},
        {"url": url, "mime_type": "audio/wav", "volume": 9},
        {"url": url, "mime_type": "audio/wav", "repeat": -2},
        {"url": url, "mime_type": "audio/wav", "tone": "busy"},
        {"tone": "zz_busy"},
    ):
        for path in (leg_play, "/rooms/ear/play"):
            response = (
                call.a.api("POST", path, body)
                if path == leg_play
                else call.b.api("POST", path, body)
            )
            assert response.status_code == 400, (path, body, response.text)
            assert response.json()["error"]
    assert call.a.api("POST", "/rooms/nowhere/play", {"tone": "busy"}).status_code == 404
    assert call.b.api("PATCH", "/rooms/ear/play/pb-x", {"volume": 1}).status_code == 404
    assert call.b.api("DELETE", "/rooms/ear/play/pb-x").status_code == 404
    assert call.b.api("DELETE", "/rooms/ear/play").status_code == 404  # nothing playing
    assert call.b.api("DELETE", "/rooms/nowhere/play").status_code == 404


# -- rooms ----------------------------------------------------------------------------------


def test_room_playback_is_heard_by_every_participant(
    call: Call, files: FileServer, hooks: WebhookReceiver
) -> None:
    """Room on A with A's SIP leg and a WebSocket member: both hear the room's playbacks."""
    a, room = call.a, "pb-room"
    assert a.api("POST", "/rooms", {"id": room}).status_code == 201
    assert a.api("POST", f"/rooms/{room}/legs", {"leg_id": call.a_leg}).status_code == 200
    member = RoomEar(a, room)
    try:
        since = hooks.mark()
        t0 = time.monotonic()
        mp3 = play(a, f"/rooms/{room}/play", url=files.base + "/tone.mp3", mime_type="audio/mpeg")
        started = hooks.wait_for("playback.started", since=since, playback_id=mp3)
        assert started["room_id"] == room and "leg_id" not in started
        done = hooks.wait_for("playback.finished", since=since, playback_id=mp3, timeout=5)
        assert done["room_id"] == room
        for ear in (member, call.ear):  # the member on A, and B's end of A's leg
            heard = ear.listen(2.5, start=t0)
            start, end = single_span(heard)
            assert end - start == pytest.approx(1.5, abs=0.1)
            body = between(heard, start + 0.1, end - 0.1)
            assert dominant_frequency(body, RATE) == pytest.approx(600, abs=2)
            assert level_dbfs(body) == pytest.approx(-10, abs=1.0)

        # A room tone, with a live volume change, then DELETE of all room playbacks.
        t1 = time.monotonic()
        busy = play(a, f"/rooms/{room}/play", tone="fr_dial")
        second = play(a, f"/rooms/{room}/play", tone="de_dial", volume=-8)
        time.sleep(0.8)
        t_patch = time.monotonic()
        patch_volume(a, f"/rooms/{room}/play/{busy}", -8)
        time.sleep(0.8)
        stop(a, f"/rooms/{room}/play")
        for pb in (busy, second):
            hooks.wait_for("playback.finished", since=since, playback_id=pb, room_id=room)
        for ear in (member, call.ear):
            before = ear.heard(t1 + 0.3, t_patch)
            after = ear.heard(t_patch + 0.3, t_patch + 0.8)
            # fr_dial (440 Hz) dropped 24 dB; de_dial (425 Hz, at -8 all along) did not.
            drop = band_energy_db(before, RATE, 440, 8) - band_energy_db(after, RATE, 440, 8)
            assert drop == pytest.approx(24, abs=1.5)
            steady = band_energy_db(before, RATE, 425, 8) - band_energy_db(after, RATE, 425, 8)
            assert steady == pytest.approx(0, abs=1.0)
            assert band_energy_db(before, RATE, 425, 8) == pytest.approx(TONE_DBFS - 24, abs=1.5)

        # Deleting the room ends its playbacks (after A's leg has been taken out of it).
        forever = play(
            a,
            f"/rooms/{room}/play",
            url=files.base + "/short.wav",
            mime_type="audio/wav",
            repeat=-1,
        )
        hooks.wait_for("playback.started", since=since, playback_id=forever)
        assert a.api("DELETE", f"/rooms/{room}/legs/{call.a_leg}").status_code == 200
        assert a.api("DELETE", f"/rooms/{room}").status_code == 200
        ended = hooks.wait_for("playback.finished", since=since, playback_id=forever)
        deleted = hooks.wait_for("room.deleted", since=since, room_id=room)
        assert ended.request.index < deleted.request.index
    finally:
        member.close()
        a.api("DELETE", f"/rooms/{room}/legs/{call.a_leg}")
        a.api("DELETE", f"/rooms/{room}")
    assert call.a.get_leg(call.a_leg)["state"] == "connected"  # type: ignore[index]


def test_hangup_ends_the_legs_playbacks(
    servers: tuple[ServerProcess, ServerProcess], files: FileServer, hooks: WebhookReceiver
) -> None:
    a, b = servers
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("carol")})
    assert response.status_code == 201, response.text
    a_leg = response.json()["id"]
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
    url = files.base + "/short.wav"
    looping = play(a, f"/legs/{a_leg}/play", url=url, mime_type="audio/wav", repeat=-1)
    slow = play(a, f"/legs/{a_leg}/play", url=files.base + "/slow-long.wav", mime_type="audio/wav")
    hooks.wait_for("playback.started", since=since, playback_id=looping)
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
    for pb in (looping, slow):
        assert hooks.wait_for("playback.finished", since=since, playback_id=pb)["leg_id"] == a_leg


# -- tones: frequencies and cadence as received -------------------------------------------


def tone_peaks(x: np.ndarray, count: int, min_gap: float = 25.0) -> list[float]:
    return spectral_peaks(x, RATE, count, min_gap)


def on_off_runs(x: np.ndarray) -> list[list]:
    """[is_on, start_s, duration_ms] runs of 5 ms blocks above/below -40 dBFS."""
    return [[r.on, r.start_s, r.duration_ms] for r in runs_of(x, RATE, threshold_dbfs=-40.0)]


@dataclass(frozen=True)
class Expected:
    """A national tone as published (ITU-T E.180 supplement), independent of the code."""

    freqs: tuple[float, ...]
    cadence_ms: tuple[int, ...]  # on, off, on, off...
    gains_db: tuple[float, ...] = ()  # per "on" step, when the level alternates


CADENCED = {
    "us_busy": Expected((480, 620), (500, 500)),
    "gb_ringback": Expected((400, 450), (400, 200, 400, 2000)),
    "de_busy": Expected((425,), (480, 480)),
    "fr_busy": Expected((440,), (500, 500)),
    "au_congestion": Expected((425,), (375, 375, 375, 375), gains_db=(0, -10)),
    "jp_busy": Expected((400,), (500, 500)),
    "it_dial": Expected((425,), (200, 200, 600, 1000)),
    "in_congestion": Expected((400,), (250, 250)),
    "br_congestion": Expected((425,), (250, 250, 750, 250)),
    "pl_busy": Expected((425,), (500, 500)),
    "ru_congestion": Expected((425,), (175, 175)),
}


@pytest.mark.parametrize("name", CADENCED)
def test_tone_cadence_and_frequencies_as_received(
    call: Call, hooks: WebhookReceiver, name: str
) -> None:
    expected = CADENCED[name]
    cadence = expected.cadence_ms
    window = max(1.2, (sum(cadence) + cadence[0]) / 1000 + 0.5)
    t0 = time.monotonic()
    pb = play(call.a, f"/legs/{call.a_leg}/play", tone=name)
    heard = call.ear.listen(window, start=t0)
    stop(call.a, f"/legs/{call.a_leg}/play/{pb}")
    time.sleep(0.25)  # let the tail drain before the next tone

    runs = on_off_runs(heard)
    assert runs[0][0] is False, "heard sound before the tone started"
    runs = runs[1:-1]  # the latency before it, and the cut-off last run, are not cadence
    assert len(runs) >= len(cadence) + 1, runs  # a whole cycle and the start of the next
    for i, (on, start, duration) in enumerate(runs):
        step = i % len(cadence)
        assert on == (step % 2 == 0), (i, runs)
        assert duration == pytest.approx(cadence[step], abs=30), (i, runs)
        if not on:
            continue
        body = between(heard, start + 0.015, start + duration / 1000 - 0.015)
        freqs = sorted(expected.freqs)
        assert tone_peaks(body, len(freqs)) == pytest.approx(freqs, abs=3), (i, name)
        # Each component at the generator level (or the step's own, where it alternates).
        gain = expected.gains_db[(step // 2) % len(expected.gains_db)] if expected.gains_db else 0
        level = TONE_DBFS + gain + 10 * np.log10(len(freqs))
        assert level_dbfs(body) == pytest.approx(level, abs=1.5), (i, name)


@pytest.mark.parametrize("name", ["dial", "au_dial"])
def test_continuous_tones_as_received(call: Call, name: str) -> None:
    """Bare "dial" is the US dial tone (350 + 440 Hz); Australia's is 425 Hz at 25 Hz AM."""
    t0 = time.monotonic()
    pb = play(call.a, f"/legs/{call.a_leg}/play", tone=name)
    heard = call.ear.listen(1.0, start=t0)
    stop(call.a, f"/legs/{call.a_leg}/play/{pb}")
    time.sleep(0.25)
    start, end = active_spans(heard, RATE, threshold_dbfs=-40)[0]
    assert end - start > 0.8, "a continuous tone had a gap"
    body = between(heard, start + 0.05, end)
    if name == "dial":
        assert tone_peaks(body, 2) == pytest.approx([350, 440], abs=3)
    else:
        # Carrier 425 Hz with sidebands 25 Hz either side, each half the depth (-6.9 dB).
        assert tone_peaks(body, 3, min_gap=15) == pytest.approx([400, 425, 450], abs=2)
        carrier = band_energy_db(body, RATE, 425, 10)
        for side in (400, 450):
            assert band_energy_db(body, RATE, side, 10) - carrier == pytest.approx(-6.9, abs=1)


def test_a_cloud_metadata_address_is_never_fetched(call: Call, hooks: WebhookReceiver) -> None:
    since = hooks.mark()
    url = "http://169.254.169.254/latest/meta-data/iam/security-credentials/role.wav"
    pb = play(call.a, f"/legs/{call.a_leg}/play", url=url, mime_type="audio/wav")
    error = hooks.wait_for("playback.error", since=since, playback_id=pb)
    assert "link-local, metadata" in error["error"], error
