"""Call set-up steps shared by the integration tests (two servers and a webhook receiver)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver


def module_pair(
    tmp_path_factory: pytest.TempPathFactory,
    hooks: WebhookReceiver,
    request: pytest.FixtureRequest,
    name: str,
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Body of a module-scoped fixture: two instances shared by a module's tests; their log
    tails are printed when a test of the module failed or an instance died."""
    factory = ServerFactory(Path(tmp_path_factory.mktemp(name)))
    failures = request.session.testsfailed
    a = factory(WEBHOOK_URL=hooks.url)
    b = factory(WEBHOOK_URL=hooks.url)
    yield a, b
    factory.close(failed=request.session.testsfailed > failures)


def module_hooks() -> Any:
    """A module-scoped `hooks` fixture: one webhook receiver for the module's tests."""

    @pytest.fixture(scope="module")
    def hooks() -> Iterator[WebhookReceiver]:
        receiver = WebhookReceiver()
        yield receiver
        receiver.close()

    return hooks


def module_fixtures(name: str) -> tuple[Any, Any]:
    """A module's `hooks` (one webhook receiver) and `servers` (two instances reporting to
    it) fixtures, both module-scoped: `hooks, servers = module_fixtures("playback")`."""
    hooks = module_hooks()

    @pytest.fixture(scope="module")
    def servers(
        tmp_path_factory: pytest.TempPathFactory,
        hooks: WebhookReceiver,
        request: pytest.FixtureRequest,
    ) -> Iterator[tuple[ServerProcess, ServerProcess]]:
        yield from module_pair(tmp_path_factory, hooks, request, name)

    return hooks, servers


def pair(
    server_factory: ServerFactory, hooks: WebhookReceiver, **env: str
) -> tuple[ServerProcess, ServerProcess]:
    """Two instances reporting to one webhook receiver; events tell them apart by instance_id."""
    a = server_factory(WEBHOOK_URL=hooks.url, **env)
    b = server_factory(WEBHOOK_URL=hooks.url, **env)
    return a, b


def dial(
    a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver, **body: Any
) -> tuple[str, str]:
    """A calls B; returns (A's outbound leg id, B's ringing inbound leg id)."""
    request = {"type": "sip", "uri": b.sip_uri("bob"), **body}
    since = hooks.mark()  # a receiver shared by a module has seen other calls ring
    response = a.api("POST", "/legs", request)
    assert response.status_code == 201, response.text
    a_leg = response.json()["id"]
    ringing = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)
    return a_leg, ringing["leg_id"]


def connect(
    a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver, **body: Any
) -> tuple[str, str]:
    """A calls B and B answers; returns both leg ids once both are connected."""
    a_leg, b_leg = dial(a, b, hooks, **body)
    response = b.api("POST", f"/legs/{b_leg}/answer")
    assert response.status_code == 200, response.text
    hooks.wait_for("leg.connected", leg_id=a_leg)
    hooks.wait_for("leg.connected", leg_id=b_leg)
    return a_leg, b_leg


def disconnected(hooks: WebhookReceiver, leg_id: str, timeout: float = 10.0) -> dict[str, Any]:
    return dict(hooks.wait_for("leg.disconnected", timeout=timeout, leg_id=leg_id))
