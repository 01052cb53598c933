"""The ServerProcess helper, proven against a stand-in server (tests/interop/fakes)."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.server import ServerFactory

FAKE = [sys.executable, str(Path(__file__).parent / "fakes" / "fake_server.py")]


@pytest.fixture
def fake_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path, command=FAKE)
    yield factory
    factory.close()


def test_start_api_and_clean_stop(fake_factory: ServerFactory) -> None:
    server = fake_factory()
    assert server.api("GET", "/legs").json() == []
    assert server.api("GET", "/v1/legs").status_code == 200
    leg = server.wait_for_leg_state("abc", "connected", timeout=5)
    assert leg is not None and leg["id"] == "abc"
    env = leg["env"]
    assert env["HTTP_ADDR"] == f"127.0.0.1:{server.http_port}"
    assert env["SIP_BIND_IP"] == "127.0.0.1"
    assert int(env["SIP_PORT"]) == server.sip_port
    assert int(env["RTP_PORT_MAX"]) - int(env["RTP_PORT_MIN"]) == 199
    assert env["LOG_LEVEL"] == "debug"
    assert Path(env["RECORDING_DIR"]).is_dir()
    assert server.sip_uri("bob") == f"sip:bob@127.0.0.1:{server.sip_port}"
    assert server.wait_for_leg_state("gone", "hung_up", timeout=1) is None
    assert server.stop() == 0
    assert "clean exit" in server.log_text()


def test_instances_get_distinct_ports_and_windows(fake_factory: ServerFactory) -> None:
    servers = [fake_factory(start=False) for _ in range(3)]
    assert len({s.http_port for s in servers}) == 3
    assert len({s.sip_port for s in servers}) == 3
    windows = sorted((s.rtp_window.low, s.rtp_window.high) for s in servers)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(windows))


def test_env_overrides(fake_factory: ServerFactory) -> None:
    server = fake_factory(WEBHOOK_URL="http://127.0.0.1:1/hook", INSTANCE_ID="custom")
    leg = server.wait_for_leg_state("x", "connected", timeout=5)
    assert leg is not None
    assert leg["env"]["WEBHOOK_URL"] == "http://127.0.0.1:1/hook"
    assert server.instance_id == "custom"


def test_a_server_that_dies_at_start_fails_with_its_log(fake_factory: ServerFactory) -> None:
    with pytest.raises(pytest.fail.Exception) as info:
        fake_factory(FAKE_MODE="crash")
    assert "exited with code 3" in str(info.value)
    assert "simulated start-up failure" in str(info.value)


def test_a_server_that_ignores_sigterm_is_killed(fake_factory: ServerFactory) -> None:
    server = fake_factory(FAKE_MODE="hang")
    started = time.monotonic()
    assert server.stop(timeout=1) == -9
    assert time.monotonic() - started < 5


def test_wait_for_leg_state_times_out_with_the_last_state(fake_factory: ServerFactory) -> None:
    server = fake_factory()
    with pytest.raises(pytest.fail.Exception, match="last seen"):
        server.wait_for_leg_state("abc", "held", timeout=0.3)
