"""Graceful shutdown (SIGTERM) with live calls, recordings in progress and webhooks still
queued behind a slow receiver: every leg ends with api_hangup (the far ends get a BYE), every
recording is finalised and announced, the queued webhooks are delivered, and the process
exits well within 10 s. bench/shutdown.py runs the same with 100 calls and 20 recordings."""

from __future__ import annotations

import time

from tests.helpers.audio import read_wav
from tests.helpers.server import ServerFactory
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect

CALLS = 8
RECORDINGS = 3


def test_sigterm_hangs_up_finalises_recordings_and_flushes_webhooks(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    pairs = [connect(b, a, hooks) for _ in range(CALLS)]
    a_legs = [a_leg for _, a_leg in pairs]
    for leg in a_legs[:RECORDINGS]:
        assert a.api("POST", f"/legs/{leg}/record", json={}).status_code in (200, 201, 202)
    for leg in a_legs[:RECORDINGS]:
        hooks.wait_for("recording.started", leg_id=leg)
    time.sleep(1.0)
    hooks.set_delay(0.05)  # a slow receiver: A's final events queue up
    started = time.monotonic()
    assert a.stop(timeout=15) == 0
    took = time.monotonic() - started
    assert took < 10.0, f"exit took {took:.1f} s"
    for leg in a_legs:
        end = hooks.wait_for("leg.disconnected", leg_id=leg, timeout=5)
        assert end["cdr"]["reason"] == "api_hangup"
    for b_leg, _ in pairs:
        assert hooks.wait_for("leg.disconnected", leg_id=b_leg)["cdr"]["reason"] == "remote_bye"
    for leg in a_legs[:RECORDINGS]:
        finished = hooks.wait_for("recording.finished", leg_id=leg, timeout=5)
        rate, samples = read_wav(finished["file"])
        assert rate > 0 and len(samples) / rate >= 0.8  # a whole, readable WAV
    log = a.log_path.read_text(errors="replace")
    assert "undelivered" not in log  # every queued webhook went out
