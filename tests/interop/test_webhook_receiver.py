"""The webhook receiver helper: exact bytes, failure injection, waiting."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping

import httpx
import pytest

from tests.helpers.webhooks import WebhookReceiver


def _post(url: str, event: Mapping[str, object], secret: str | None = None) -> httpx.Response:
    body = json.dumps(event, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Signature-256"] = f"sha256={digest}"
    return httpx.post(url, content=body, headers=headers, timeout=5)


def test_records_exact_body_and_headers(webhook_receiver: WebhookReceiver) -> None:
    event = {"type": "leg.ringing", "leg_id": "L1", "instance_id": "i"}
    assert _post(webhook_receiver.url, event, secret="s3cret").status_code == 200
    got = webhook_receiver.wait_for("leg.ringing", leg_id="L1", timeout=2)
    assert got == event and got.type == "leg.ringing"
    assert got.request.body == json.dumps(event, separators=(",", ":")).encode()
    assert got.request.headers["content-type"] == "application/json"
    assert got.request.path == "/hooks"
    assert got.request.signature_valid("s3cret")
    assert not got.request.signature_valid("other")


def test_fail_first_and_retries(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.fail_first(2, status=503)
    event = {"type": "leg.connected", "leg_id": "L2"}
    statuses = [_post(webhook_receiver.url, event).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert len(webhook_receiver.events()) == 1
    assert len(webhook_receiver.events(delivered_only=False)) == 3
    assert [r.status for r in webhook_receiver.requests] == [503, 503, 200]


def test_wait_for_predicate_nested_match_and_since(webhook_receiver: WebhookReceiver) -> None:
    _post(webhook_receiver.url, {"type": "leg.disconnected", "leg_id": "A", "cdr": {"reason": "x"}})
    mark = webhook_receiver.mark()

    def later() -> None:
        time.sleep(0.2)
        _post(
            webhook_receiver.url_for("/per-leg"),
            {"type": "leg.disconnected", "leg_id": "B", "cdr": {"reason": "busy"}},
        )

    threading.Thread(target=later).start()
    got = webhook_receiver.wait_for(
        lambda e: e.type == "leg.disconnected", cdr__reason="busy", since=mark, timeout=3
    )
    assert got["leg_id"] == "B" and got.request.path == "/per-leg"
    assert webhook_receiver.types() == ["leg.disconnected", "leg.disconnected"]
    assert webhook_receiver.wait_for_count(2, "leg.disconnected", timeout=1)


def test_wait_for_times_out_listing_what_arrived(webhook_receiver: WebhookReceiver) -> None:
    _post(webhook_receiver.url, {"type": "leg.ringing", "leg_id": "C"})
    with pytest.raises(pytest.fail.Exception, match=r"leg\.ringing"):
        webhook_receiver.wait_for("leg.connected", timeout=0.3)


def test_delay(webhook_receiver: WebhookReceiver) -> None:
    webhook_receiver.set_delay(0.3)
    started = time.monotonic()
    _post(webhook_receiver.url, {"type": "t"})
    assert time.monotonic() - started >= 0.3
