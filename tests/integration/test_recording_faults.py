"""Recordings when things break: the server killed with SIGKILL mid-recording leaves a WAV
that reads to within a second of the kill (the header is rewritten every second), and a full
disk (here the file size limit, which fails writes the same way) ends the recording at once
with an error in recording.finished while the call goes on."""

from __future__ import annotations

import resource
import time

from tests.helpers.audio import read_wav
from tests.helpers.server import ServerFactory
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect, disconnected


def test_a_wav_survives_sigkill_to_within_a_second(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    a_leg, _ = connect(a, b, hooks)
    assert a.api("POST", f"/legs/{a_leg}/record", json={}).status_code in (200, 201, 202)
    started = hooks.wait_for("recording.started", leg_id=a_leg)
    began = started.request.monotonic
    time.sleep(3.4)
    killed = time.monotonic()
    a.kill()
    rate, samples = read_wav(started["file"])
    seconds = len(samples) / rate
    recorded_for = killed - began
    assert recorded_for - 1.3 <= seconds <= recorded_for + 0.2, (seconds, recorded_for)


def test_a_full_disk_ends_the_recording_with_an_error_and_the_call_goes_on(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url, LOG_LEVEL="warning")
    b = server_factory(WEBHOOK_URL=hooks.url)
    a_leg, b_leg = connect(a, b, hooks)
    assert a.proc is not None
    limit = 96 * 1024  # about three seconds of a leg recording
    resource.prlimit(a.proc.pid, resource.RLIMIT_FSIZE, (limit, limit))
    assert a.api("POST", f"/legs/{a_leg}/record", json={}).status_code in (200, 201, 202)
    started = hooks.wait_for("recording.started", leg_id=a_leg)
    finished = hooks.wait_for("recording.finished", leg_id=a_leg, timeout=15)
    assert "writing failed" in (finished.get("error") or ""), finished
    assert finished.request.monotonic - started.request.monotonic < 8
    rate, samples = read_wav(finished["file"])
    assert len(samples) / rate > 1.0  # what was written stays a valid WAV
    time.sleep(1.0)
    leg = a.get_leg(a_leg)
    assert leg is not None and leg["state"] == "connected"
    assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
    end = disconnected(hooks, a_leg)
    assert end["cdr"]["reason"] == "api_hangup"
    assert end["quality"]["rtp_packets_received"] > 150  # media went on after the failure
    assert disconnected(hooks, b_leg)["cdr"]["reason"] == "remote_bye"
