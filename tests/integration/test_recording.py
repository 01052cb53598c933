"""Recording legs and rooms, checked as audio in the WAV files the server writes.

Two instances call each other over loopback (PCMU). Each side plays a different telephone tone
into its leg, so a recording on A's leg must hold B's tone (US busy: 480+620 Hz, cadenced) on
the left and A's own (US dial: 350+440 Hz, continuous) on the right. Room tests add a
WebSocket participant talking a 700 Hz sine. Times measured around the API calls bound where
pauses and late joins must show up in the files.
"""

from __future__ import annotations

import re
import struct
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers.audio import band_energy_db, read_wav, to_float
from tests.helpers.s3 import S3Server, s3_server  # noqa: F401 - module fixture
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import disconnected, module_fixtures, pair
from tests.integration.test_rooms_ws import WsPeer

FAR_TONE = "us_busy"  # B plays it: what A's leg receives
NEAR_TONE = "us_dial"  # A plays it: what A's leg sends
FAR_HZ, NEAR_HZ, WS_HZ = 620.0, 350.0, 700.0
TIMING_SLACK_S = 0.25  # HTTP round trips and tick granularity around the measured times


hooks, servers = module_fixtures("recording")


def crash_records(log_text: str) -> list[str]:
    """Log records above DEBUG that carry a stack trace (boto3 logs handled failures with a
    trace at DEBUG, which the test servers log)."""
    found, record = [], ""
    for line in log_text.splitlines():
        if re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line):
            record = line
        elif line.startswith("Traceback") and " DEBUG " not in record:
            found.append(record)
    return found


@pytest.fixture
def ab(servers: tuple[ServerProcess, ServerProcess]) -> Iterator[tuple[ServerProcess, ...]]:
    """The pair; after each test both are alive and logged no crash."""
    yield servers
    for server in servers:
        assert server.running(), server.log_tail()
        assert not crash_records(server.log_text()), server.log_tail()


@pytest.fixture
def peers() -> Iterator[list[WsPeer]]:
    made: list[WsPeer] = []
    yield made
    for peer in made:
        peer.close()


# -- helpers ---------------------------------------------------------------------------


def connect(
    a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver, **body: Any
) -> tuple[str, str]:
    """A calls B and B answers; the receiver is shared by the module, so only events after
    this call's INVITE count."""
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob"), **body})
    assert response.status_code == 201, response.text
    a_leg = response.json()["id"]
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", leg_id=a_leg)
    hooks.wait_for("leg.connected", leg_id=b_leg)
    return a_leg, b_leg


def toned_call(a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver) -> tuple[str, str]:
    """A calls B (PCMU); B sends FAR_TONE, A sends NEAR_TONE."""
    a_leg, b_leg = connect(a, b, hooks, codecs=["PCMU"])
    for server, leg, tone in ((b, b_leg, FAR_TONE), (a, a_leg, NEAR_TONE)):
        response = server.api("POST", f"/legs/{leg}/play", {"tone": tone})
        assert response.status_code == 200, response.text
    time.sleep(0.3)  # audio flowing both ways before anything is recorded
    return a_leg, b_leg


def start(server: ServerProcess, path: str, **body: Any) -> tuple[str, float]:
    """POST .../record; returns the announced file and the time it started."""
    response = server.api("POST", f"{path}/record", body)
    started = time.monotonic()
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "recording" and answer["instance_id"] == server.instance_id
    return str(answer["file"]), started


def stop(server: ServerProcess, path: str) -> tuple[dict[str, Any], float]:
    stopped = time.monotonic()
    response = server.api("DELETE", f"{path}/record")
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    assert answer["status"] == "stopped"
    return answer, stopped


def load(path: str | Path) -> tuple[int, np.ndarray]:
    """(rate, float samples (frames, channels)) of a finalised WAV: the header counts exactly
    the bytes on disk and the stdlib reader accepts it."""
    data = Path(path).read_bytes()
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt ", f"{path}: not a WAV"
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8, f"{path}: RIFF size stale"
    assert struct.unpack_from("<I", data, 40)[0] == len(data) - 44, f"{path}: data size stale"
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2
    rate, samples = read_wav(path)
    return rate, to_float(samples)


def band(samples: np.ndarray, rate: int, freq: float) -> float:
    return band_energy_db(samples, rate, freq, 40.0)


def assert_dominant(samples: np.ndarray, rate: int, present: float, absent: float) -> None:
    """`present` is clearly there; `absent` at least 20 dB below it (the busy tone's on/off
    gating spreads a little of it over neighbouring bands)."""
    strong, weak = band(samples, rate, present), band(samples, rate, absent)
    assert strong > -40, f"{present} Hz missing ({strong:.1f} dBFS)"
    assert weak < strong - 20, f"{absent} Hz leaks in: {weak:.1f} vs {strong:.1f} dBFS"


def silent_frames(samples: np.ndarray, rate: int) -> np.ndarray:
    """Per 20 ms frame: True when every channel is digital silence."""
    size = rate // 50
    frames = samples[: len(samples) // size * size].reshape(-1, size, samples.shape[1])
    return np.asarray(~frames.any(axis=(1, 2)))


def longest_run(flags: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest run of True."""
    best, start = (0, 0), None
    for i, flag in enumerate([*flags.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            best = max(best, (i - start, start))
            start = None
    return best[1], best[0]


def first_sound_s(track: np.ndarray, rate: int) -> float:
    """Start of the first 20 ms frame louder than -40 dBFS."""
    size = rate // 50
    frames = track[: len(track) // size * size].reshape(-1, size)
    loud = np.sqrt(2 * np.mean(frames**2, axis=1)) > 10 ** (-40 / 20)
    assert loud.any(), "the track is silent"
    return float(np.argmax(loud)) * 0.02


# -- legs ------------------------------------------------------------------------------


def test_leg_recording_channels_rate_duration_and_pause(
    ab: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    a, b = ab
    a_leg, _ = toned_call(a, b, hooks)
    path = f"/legs/{a_leg}"
    file, t_start = start(a, path)
    assert Path(file).parent == a.recording_dir and file.endswith(".wav")
    second = a.api("POST", f"{path}/record", {})
    assert second.status_code == 409, second.text
    time.sleep(1.0)
    assert a.api("POST", f"{path}/record/pause").json()["status"] == "paused"
    t_pause = time.monotonic()
    assert a.api("POST", f"{path}/record/pause").json()["status"] == "already_paused"
    time.sleep(1.0)
    t_resume = time.monotonic()
    assert a.api("POST", f"{path}/record/resume").json()["status"] == "resumed"
    assert a.api("POST", f"{path}/record/resume").json()["status"] == "not_paused"
    time.sleep(1.0)
    answer, t_stop = stop(a, path)
    assert answer["file"] == file
    assert a.api("DELETE", f"{path}/record").status_code == 404
    assert a.api("POST", f"{path}/record/pause").status_code == 404

    finished = hooks.wait_for("recording.finished", leg_id=a_leg)
    assert finished["file"] == file and "error" not in finished
    for kind in ("started", "paused", "resumed"):
        events = hooks.events(f"recording.{kind}", leg_id=a_leg)
        assert len(events) == 1 and events[0]["file"] == file, (kind, events)

    rate, samples = load(file)
    assert rate == 8000 and samples.shape[1] == 2  # PCMU: the codec's rate
    duration = len(samples) / rate
    assert abs(duration - (t_stop - t_start)) < TIMING_SLACK_S, duration
    assert abs(finished["duration_ms"] / 1000 - duration) < 0.021

    # Pause: both channels digitally silent for as long as the pause, where it happened.
    begin, length = longest_run(silent_frames(samples, rate))
    assert abs(length * 0.02 - (t_resume - t_pause)) < TIMING_SLACK_S, length
    assert abs(begin * 0.02 - (t_pause - t_start)) < TIMING_SLACK_S, begin
    # Around it: left = what B says, right = what A sends.
    talk = np.concatenate((samples[: int(0.9 * rate)], samples[-int(0.9 * rate) :]))
    assert_dominant(talk[:, 0], rate, FAR_HZ, NEAR_HZ)
    assert_dominant(talk[:, 1], rate, NEAR_HZ, FAR_HZ)
    a.api("DELETE", f"/legs/{a_leg}")


def test_leg_in_room_records_participant_and_what_it_hears_at_16k(
    ab: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, peers: list[WsPeer]
) -> None:
    a, b = ab
    a_leg, _ = connect(a, b, hooks, codecs=["PCMU"])
    assert b.api("POST", f"/legs/{_}/play", {"tone": FAR_TONE}).status_code == 200
    room = "rec-leg-in-room"
    assert a.api("POST", f"/rooms/{room}/legs", {"leg_id": a_leg}).status_code == 200
    peers.append(WsPeer(a, room, tone_hz=WS_HZ))
    time.sleep(0.4)
    file, t_start = start(a, f"/legs/{a_leg}")
    time.sleep(1.5)
    _answer, t_stop = stop(a, f"/legs/{a_leg}")
    rate, samples = load(file)
    assert rate == 16000 and samples.shape[1] == 2
    assert abs(len(samples) / rate - (t_stop - t_start)) < TIMING_SLACK_S
    steady = samples[int(0.2 * rate) :]
    assert_dominant(steady[:, 0], rate, FAR_HZ, WS_HZ)  # the participant (B's tone)
    assert_dominant(steady[:, 1], rate, WS_HZ, FAR_HZ)  # what it hears: the room
    a.api("DELETE", f"/rooms/{room}")


# -- rooms -----------------------------------------------------------------------------


def test_room_mix_and_aligned_per_participant_tracks(
    ab: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, peers: list[WsPeer]
) -> None:
    a, b = ab
    a_leg, b_leg = connect(a, b, hooks, codecs=["PCMU"])
    assert b.api("POST", f"/legs/{b_leg}/play", {"tone": FAR_TONE}).status_code == 200
    room = "rec-multi"
    assert a.api("POST", f"/rooms/{room}/legs", {"leg_id": a_leg}).status_code == 200
    time.sleep(0.3)
    file, t_start = start(a, f"/rooms/{room}", multi_channel=True)
    hooks.wait_for("recording.started", room_id=room, file=file)
    time.sleep(1.0)
    peer = WsPeer(a, room, tone_hz=WS_HZ)  # joins a second late
    t_join = time.monotonic()
    peers.append(peer)
    time.sleep(1.5)
    answer, t_stop = stop(a, f"/rooms/{room}")
    assert answer["file"] == file
    channels: dict[str, str] = answer["participant_files"]
    assert list(channels) == [a_leg, peer.id], channels
    finished = hooks.wait_for("recording.finished", room_id=room)
    assert finished["participant_files"] == channels
    assert finished["multi_channel_file"] == answer["multi_channel_file"]
    # VoiceBlender's map: each participant's channel in that file and when it was present.
    spans = finished["channels"]
    assert answer["channels"] == spans and "omitted_legs" not in finished
    assert [spans[a_leg]["channel"], spans[peer.id]["channel"]] == [0, 1]
    assert spans[a_leg]["start_ms"] == 0
    assert abs(spans[peer.id]["start_ms"] / 1000 - (t_join - t_start)) < TIMING_SLACK_S
    length_ms = round((t_stop - t_start) * 1000)
    for span in spans.values():
        assert abs(span["end_ms"] - length_ms) < TIMING_SLACK_S * 1000, span

    rate, mix = load(file)
    assert rate == 16000 and mix.shape[1] == 1
    assert abs(len(mix) / rate - (t_stop - t_start)) < TIMING_SLACK_S
    tracks = {key: load(path) for key, path in channels.items()}
    assert all(r == 16000 and t.shape == mix.shape for r, t in tracks.values())
    leg_track, ws_track = tracks[a_leg][1][:, 0], tracks[peer.id][1][:, 0]
    # The late joiner's track starts with silence back to the recording's start.
    assert abs(first_sound_s(ws_track, rate) - (t_join - t_start)) < TIMING_SLACK_S
    assert first_sound_s(ws_track, rate) > 0.7
    joined = int((t_join - t_start + 0.3) * rate)
    assert_dominant(ws_track[joined:], rate, WS_HZ, FAR_HZ)
    assert_dominant(leg_track[joined:], rate, FAR_HZ, WS_HZ)
    # The mix has both once both are in, only the leg before.
    after, before = mix[joined:, 0], mix[int(0.1 * rate) : int(0.8 * rate), 0]
    assert band(after, rate, WS_HZ) > -40 and band(after, rate, FAR_HZ) > -40
    assert band(before, rate, FAR_HZ) > -40
    assert band(before, rate, WS_HZ) < band(after, rate, WS_HZ) - 30
    # One file with a channel per participant, in the order of `channels`.
    merged_rate, merged = load(answer["multi_channel_file"])
    assert merged_rate == 16000 and merged.shape == (len(mix), 2)
    np.testing.assert_array_equal(merged[:, 0], leg_track)
    np.testing.assert_array_equal(merged[:, 1], ws_track)
    a.api("DELETE", f"/rooms/{room}")


def test_recordings_finalised_on_hangup_and_room_deletion(
    ab: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    a, b = ab
    a_leg, b_leg = toned_call(a, b, hooks)
    leg_file, t_leg = start(a, f"/legs/{a_leg}")
    assert a.api("POST", "/rooms", {"id": "rec-deleted"}).status_code == 201
    room_file, t_room = start(a, "/rooms/rec-deleted")
    time.sleep(1.0)
    t_hangup = time.monotonic()
    assert b.api("DELETE", f"/legs/{b_leg}").status_code == 200  # A's leg gets a BYE
    assert disconnected(hooks, a_leg)["cdr"]["reason"] == "remote_bye"
    t_delete = time.monotonic()
    assert a.api("DELETE", "/rooms/rec-deleted").status_code == 200

    finished = hooks.wait_for("recording.finished", leg_id=a_leg)
    assert finished["file"] == leg_file
    rate, samples = load(leg_file)
    assert abs(len(samples) / rate - (t_hangup - t_leg)) < 0.4  # plus the BYE's way back
    assert_dominant(samples[: int(0.8 * rate), 0], rate, FAR_HZ, NEAR_HZ)

    assert hooks.wait_for("recording.finished", room_id="rec-deleted")["file"] == room_file
    rate, samples = load(room_file)
    assert abs(len(samples) / rate - (t_delete - t_room)) < TIMING_SLACK_S
    assert a.api("DELETE", "/rooms/rec-deleted/record").status_code == 404


def test_errors_leave_no_recording(
    ab: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    a, b = ab
    assert a.api("POST", "/legs/nope/record", {}).status_code == 404
    assert a.api("POST", "/rooms/nope/record", {}).status_code == 404
    assert a.api("DELETE", "/legs/nope/record").status_code == 404
    assert a.api("POST", "/rooms/nope/record/resume").status_code == 404
    a_leg, _ = connect(a, b, hooks, codecs=["PCMU"])
    path = f"/legs/{a_leg}/record"
    bad_bodies: list[dict[str, Any]] = [
        {"storage": "s3"},  # no S3_BUCKET on the server, none in the request
        {"storage": "s3", "s3_bucket": "bucket-x", "s3_access_key": "only-half"},
        {"storage": "s3", "s3_bucket": "bucket-x", "s3_secret_key": "only-half"},
        {"storage": "ftp"},
        {"multi_channel": "yes"},
        {"storage": "s3", "s3_bucket": "bucket-x", "s3_endpoint": "ftp://example.com"},
    ]
    for body in bad_bodies:
        response = a.api("POST", path, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"], body
    assert "S3" in a.api("POST", path, {"storage": "s3"}).json()["error"]
    assert a.api("DELETE", path).status_code == 404  # nothing was started
    assert not hooks.events("recording.started", leg_id=a_leg)
    a.api("DELETE", f"/legs/{a_leg}")


# -- S3 --------------------------------------------------------------------------------


def test_s3_upload_equals_the_local_files(
    ab: tuple[ServerProcess, ServerProcess],
    hooks: WebhookReceiver,
    s3_server: S3Server,  # noqa: F811 - the fixture
    peers: list[WsPeer],
) -> None:
    a, b = ab
    bucket = s3_server.create_bucket()
    fields = {**s3_server.request_fields(), "s3_bucket": bucket}
    a_leg, _ = toned_call(a, b, hooks)
    file, _t = start(a, f"/legs/{a_leg}", storage="s3", s3_prefix="calls/", **fields)
    assert file.startswith(f"s3://{bucket}/calls/leg-") and file.endswith(".wav"), file
    # A room with per-participant tracks: every file of it is uploaded.
    room = "rec-s3"
    assert a.api("POST", f"/rooms/{room}/legs", {"leg_id": a_leg}).status_code == 200
    peers.append(WsPeer(a, room, tone_hz=WS_HZ))
    room_file, _t = start(a, f"/rooms/{room}", storage="s3", multi_channel=True, **fields)
    time.sleep(0.8)
    assert stop(a, f"/legs/{a_leg}")[0]["file"] == file
    room_answer, _t = stop(a, f"/rooms/{room}")
    assert room_answer["file"] == room_file

    leg_done = hooks.wait_for("recording.finished", leg_id=a_leg, timeout=20)
    room_done = hooks.wait_for("recording.finished", room_id=room, timeout=20)
    assert "error" not in leg_done and "error" not in room_done, (leg_done, room_done)
    assert leg_done["file"] == file and room_done["file"] == room_file
    assert sorted(room_done["participant_files"]) == sorted([a_leg, peers[0].id])
    assert sorted(room_done["channels"]) == sorted([a_leg, peers[0].id])
    local_of = {
        file: leg_done["local_file"],
        room_file: room_done["local_file"],
        room_done["multi_channel_file"]: room_done["local_file"].replace(
            ".wav", "-multichannel.wav"
        ),
    }
    for key, url in room_done["participant_files"].items():
        local_of[url] = room_done["local_file"].replace(".wav", f"-{key}.wav")
    for url, local in local_of.items():
        assert url.startswith(f"s3://{bucket}/"), url
        load(local)  # a valid, final WAV stays on disk
        body = s3_server.get_object(url.removeprefix(f"s3://{bucket}/"), bucket=bucket)
        assert body == Path(local).read_bytes(), url
    a.api("DELETE", f"/rooms/{room}")


def test_failed_upload_keeps_the_file_and_says_why(
    ab: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver
) -> None:
    a, _b = ab
    room = "rec-s3-dead"
    assert a.api("POST", "/rooms", {"id": room}).status_code == 201
    dead = {  # nothing listens on port 9: the connection is refused
        "s3_bucket": "no-such-place",
        "s3_endpoint": "http://127.0.0.1:9",
        "s3_access_key": "key",
        "s3_secret_key": "secret",
    }
    start(a, f"/rooms/{room}", storage="s3", **dead)
    time.sleep(0.3)
    stop(a, f"/rooms/{room}")
    finished = hooks.wait_for("recording.finished", room_id=room, timeout=30)
    assert "no-such-place" in finished["error"] and "127.0.0.1:9" in finished["error"], finished
    assert finished["file"] == finished["local_file"]
    load(finished["file"])
    warnings = [line for line in a.log_text().splitlines() if " WARNING " in line]
    assert any("kept locally" in line and finished["file"] in line for line in warnings)
    a.api("DELETE", f"/rooms/{room}")


# -- process life ------------------------------------------------------------------------


def test_sigterm_finalises_recordings_and_delivers_their_events(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a, b = pair(server_factory, hooks)
    a_leg, _ = toned_call(a, b, hooks)
    leg_file, t_start = start(a, f"/legs/{a_leg}")
    assert a.api("POST", "/rooms", {"id": "kept"}).status_code == 201
    room_file, _t = start(a, "/rooms/kept")
    time.sleep(1.0)
    t_stop = time.monotonic()
    assert a.stop() == 0
    # Delivered before the process exited: nothing waits here.
    assert hooks.wait_for("recording.finished", leg_id=a_leg, timeout=0.1)["file"] == leg_file
    assert hooks.wait_for("recording.finished", room_id="kept", timeout=0.1)["file"] == room_file
    rate, samples = load(leg_file)
    assert abs(len(samples) / rate - (t_stop - t_start)) < TIMING_SLACK_S
    assert_dominant(samples[int(0.1 * rate) :, 0], rate, FAR_HZ, NEAR_HZ)
    load(room_file)


def test_unwritable_recording_dir_is_500(server_factory: ServerFactory, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    server = server_factory(RECORDING_DIR=str(blocker / "recordings"))
    assert server.api("POST", "/rooms", {"id": "r"}).status_code == 201
    response = server.api("POST", "/rooms/r/record", {})
    assert response.status_code == 500, response.text
    assert "Failed to create recording file" in response.json()["error"]
    assert server.api("DELETE", "/rooms/r/record").status_code == 404
    assert server.running() and not crash_records(server.log_text())
