"""Shared fixtures: the server under test, real SIP peers, a webhook receiver, VSI clients.

Helpers live in ``tests/helpers`` (import them as ``tests.helpers.<module>``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.helpers.baresip import BaresipFactory
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.sipp import SippProcess, SippRunner
from tests.helpers.vsi import VsiClient, vsi_url
from tests.helpers.webhooks import WebhookReceiver

# Property tests check correctness, not speed: on a loaded 2-core CI machine an example may
# take longer than hypothesis' default 200 ms deadline, which would fail a correct test.
settings.register_profile("callboard", deadline=None)
settings.load_profile("callboard")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report on the item, so fixtures can tell if the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    node = request.node
    return any(
        getattr(getattr(node, f"rep_{when}", None), "failed", False) for when in ("setup", "call")
    )


# -- the server under test ---------------------------------------------------------------


@pytest.fixture
def server_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """``server_factory(**env)`` starts a server instance (distinct ports each time)."""
    factory = ServerFactory(tmp_path)
    yield factory
    factory.close(failed=_failed(request))


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    """One running server with default test settings (no webhook)."""
    return server_factory()


# -- events ------------------------------------------------------------------------------


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def vsi_client_factory() -> Iterator[Callable[..., VsiClient]]:
    """``vsi_client_factory(server, app_id=None)`` opens a sync VSI client (closed at the end)."""
    clients: list[VsiClient] = []

    def connect(
        server: ServerProcess, app_id: str | None = None, *, keep_pings: bool = False
    ) -> VsiClient:
        client = VsiClient(vsi_url(server.http, app_id), keep_pings=keep_pings)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


# -- real SIP peers ------------------------------------------------------------------------


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippRunner]:
    """``sipp.run(scenario, target, ...)`` / ``sipp.start(...)``; logs under tmp_path."""
    runner = SippRunner(tmp_path / "sipp")
    yield runner
    runner.close()


@pytest.fixture
def baresip_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BaresipFactory]:
    """``baresip_factory(user="bob", ...)`` configures a baresip (start it with ``.start()``)."""
    factory = BaresipFactory(tmp_path / "baresip")
    yield factory
    factory.close(failed=_failed(request))


# -- combinations for end-to-end tests ------------------------------------------------------

WEBHOOK_SECRET = "test-webhook-secret"


@pytest.fixture
def hooked_server(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> ServerProcess:
    """A server whose global webhook (signed with ``WEBHOOK_SECRET``) is ``webhook_receiver``."""
    return server_factory(WEBHOOK_URL=webhook_receiver.url, WEBHOOK_SECRET=WEBHOOK_SECRET)


@pytest.fixture
def originate() -> Callable[..., dict[str, Any]]:
    """``originate(server, uri, **fields)``: POST /v1/legs (type sip); asserts 201, returns the leg.

    Any CreateLegRequest field may be given (``from_`` for ``from``).
    """

    def create(server: ServerProcess, uri: str, **fields: Any) -> dict[str, Any]:
        if "from_" in fields:
            fields["from"] = fields.pop("from_")
        response = server.api("POST", "/legs", json={"type": "sip", "uri": uri, **fields})
        assert response.status_code == 201, f"{response.status_code}: {response.text}"
        leg: dict[str, Any] = response.json()
        return leg

    return create


@pytest.fixture
def sipp_callee(sipp: SippRunner) -> Callable[..., SippProcess]:
    """``sipp_callee(scenario="uas_answer", rtp_echo=True, **kw)``: a SIPp waiting for a call.

    Dial it with ``callee.uri("user")``; ``callee.wait().assert_ok()`` at the end.
    """

    def start(scenario: str = "uas_answer", **kwargs: Any) -> SippProcess:
        kwargs.setdefault("rtp_echo", True)
        kwargs.setdefault("timeout", 30)
        return sipp.start(scenario, **kwargs)

    return start
