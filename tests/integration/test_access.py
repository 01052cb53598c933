"""Access control on the real server: API keys for REST and WebSockets (header or `token`),
the open health probe and console, /metrics behind its switch, ALLOWED_IPS with and without
trusted proxy headers. Refusals are JSON, and the key never reaches the log."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.helpers.server import ServerFactory
from tests.helpers.vsi import VsiClient

KEY = "k-7f3a9c2e5b1d4068"


def test_api_keys_gate_rest_and_websockets(server_factory: ServerFactory) -> None:
    server = server_factory(API_KEYS=f"other-key, {KEY}")
    anonymous = httpx.Client(base_url=server.http, timeout=5)
    refused = anonymous.get("/v1/legs")
    assert refused.status_code == 401 and "API key" in refused.json()["error"]
    assert refused.headers["www-authenticate"].startswith("Bearer")
    wrong = anonymous.post("/v1/rooms", json={"id": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert anonymous.get("/v1/legs", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert anonymous.get("/v1/health").status_code == 200
    assert anonymous.get("/console/").status_code == 200
    assert anonymous.get("/metrics").status_code == 401
    assert server.api("GET", "/legs").status_code == 200  # the helper's client has the key

    ws = server.http.replace("http://", "ws://")
    with pytest.raises(InvalidStatus) as denied:
        connect(f"{ws}/v1/vsi", open_timeout=5, proxy=None)
    assert denied.value.response.status_code == 401
    with connect(f"{ws}/v1/vsi?token={KEY}", open_timeout=5, proxy=None) as vsi:
        assert '"connected"' in str(vsi.recv(timeout=5))
    header = {"Authorization": f"Bearer {KEY}"}
    with connect(f"{ws}/v1/vsi", additional_headers=header, open_timeout=5, proxy=None) as vsi:
        assert '"connected"' in str(vsi.recv(timeout=5))
    assert KEY not in server.log_path.read_text(errors="replace")


def test_metrics_can_be_public_while_the_api_needs_a_key(server_factory: ServerFactory) -> None:
    server = server_factory(API_KEYS=KEY, METRICS_PUBLIC="true")
    anonymous = httpx.Client(base_url=server.http, timeout=5)
    assert anonymous.get("/metrics").status_code == 200
    assert anonymous.get("/v1/rooms").status_code == 401


def test_allowed_ips_refuse_other_clients_and_trust_proxies_only_when_told(
    server_factory: ServerFactory,
) -> None:
    forwarded = {"X-Forwarded-For": "10.20.30.40, 127.0.0.1"}
    strict = server_factory(ALLOWED_IPS="10.0.0.0/8, 2001:db8::/32")
    client = httpx.Client(base_url=strict.http, timeout=5)
    refused = client.get("/v1/health")
    assert refused.status_code == 403 and "not allowed" in refused.json()["error"]
    assert client.get("/v1/legs", headers=forwarded).status_code == 403  # not believed

    proxied = server_factory(ALLOWED_IPS="10.0.0.0/8", TRUST_PROXY_HEADERS="true")
    client = httpx.Client(base_url=proxied.http, timeout=5)
    assert client.get("/v1/legs", headers=forwarded).status_code == 200
    assert client.get("/v1/legs").status_code == 403

    local = server_factory(ALLOWED_IPS="127.0.0.1/32,::1")
    assert httpx.get(f"{local.http}/v1/legs", timeout=5).status_code == 200


def test_fetch_deny_private_refuses_private_playback_urls(
    server_factory: ServerFactory, vsi_client_factory: Callable[..., VsiClient]
) -> None:
    server = server_factory(FETCH_DENY_PRIVATE="true")
    events = vsi_client_factory(server)
    assert events.recv() == {"type": "connected"}
    assert server.api("POST", "/rooms", json={"id": "p"}).status_code == 201
    body = {"url": f"{server.http}/v1/health", "mime_type": "audio/wav"}
    started = server.api("POST", "/rooms/p/play", json=body)
    assert started.status_code in (200, 201, 202), started.text
    error = events.wait_for("playback.error", room_id="p", timeout=10)
    assert "FETCH_DENY_PRIVATE" in error["error"], error
