"""README.md's five-minute walk-through, run as a user would run it.

The commands come from the section's ``sh`` blocks, so an edit that breaks the README breaks
this test. The two ``./scripts/serve`` lines and the WebSocket watcher are long-running: they
run in the background (each in its own process group, killed at the end); every other line
runs in order in one ``bash`` with ``set -euo pipefail``, from the project root. The README's
own ports are used (8080/8081 HTTP, 5060/5070 SIP): a busy one fails the test with a message.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.helpers.peers import PortKind, port_is_free, require_binary

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## Five-minute walk-through"
# Generous: the first ./scripts/serve after a pyproject.toml change reinstalls the package.
START_TIMEOUT = 120.0
SCRIPT_TIMEOUT = 60.0  # the walk-through itself sleeps about 5 s
EVENT_TIMEOUT = 10.0
# Settings a developer may have exported that the README's user does not have.
FOREIGN_ENV = (
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "SIP_BIND_IP",
    "SIP_LISTEN_IP",
    "S3_BUCKET",
    "ICE_SERVERS",
    "INSTANCE_ID",
    "VENV_DIR",
)

# `peer`: it needs an outside program (curl) and, like the SIPp/baresip tests, can be left out
# with -m "not peer"; under CI=true a missing curl fails instead of skipping.
pytestmark = [pytest.mark.peer, pytest.mark.timeout(2 * START_TIMEOUT + SCRIPT_TIMEOUT + 60)]


# -- the README --------------------------------------------------------------------------


@dataclass
class Server:
    command: str
    http_port: int
    sip_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass
class Walkthrough:
    servers: list[Server]
    watcher: str
    script: str  # every other line, in order


def _server(command: str) -> Server:
    """The ports a serve line asks for, from its leading VAR=value assignments."""
    env: dict[str, str] = {}
    for word in shlex.split(command):
        name, sep, value = word.partition("=")
        if not sep or not name.isidentifier():
            break
        env[name] = value
    http_addr = env.get("HTTP_ADDR", ":8080")
    return Server(command, int(http_addr.rsplit(":", 1)[1]), int(env.get("SIP_PORT", "5060")))


def read_walkthrough() -> Walkthrough:
    text = README.read_text()
    start = text.find(SECTION)
    assert start >= 0, f"README.md has no section starting with {SECTION!r}"
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else len(text)]
    blocks = re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)
    servers: list[Server] = []
    watchers: list[str] = []
    script: list[str] = []
    for line in "".join(blocks).splitlines():
        if "./scripts/serve" in line:
            servers.append(_server(line))
        elif re.search(r"-m websockets\b", line):
            watchers.append(line)
        else:
            script.append(line)
    assert len(servers) == 2, f"expected two ./scripts/serve lines in the walk-through: {servers}"
    assert len(watchers) == 1, f"expected one `-m websockets` watcher line: {watchers}"
    return Walkthrough(servers, watchers[0], "\n".join(script) + "\n")


# -- background processes ----------------------------------------------------------------


_TERMINAL_ESCAPES = re.compile(r"\x1b(\[[0-9;]*[A-Za-z]|[78])")


class Background:
    """A long-running README command in its own process group, its output in a log file."""

    def __init__(self, command: str, log_path: Path, env: dict[str, str]) -> None:
        self.command = command
        self.log_path = log_path
        self._log: IO[bytes] | None = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            # Kept open: the websockets client exits at the end of its input, as on ^D.
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        text = _TERMINAL_ESCAPES.sub("", self.output())  # the watcher's cursor movements
        shown = "\n".join(text.splitlines()[-lines:])
        return f"--- {self.command}\n{shown}"

    def check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            pytest.fail(
                f"{what}: exited with code {self.proc.returncode}\n{self.tail()}", pytrace=False
            )

    def stop(self) -> None:
        """SIGTERM the group (the servers shut down cleanly), SIGKILL what is left."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait)
        # Anything the command left behind in its group goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def background(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str, str], Background]]:
    """``background(name, command)`` starts a command; all are stopped at the end."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    started: list[Background] = []

    def start(name: str, command: str) -> Background:
        process = Background(command, tmp_path / f"{name}.log", env)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        process.stop()
    if getattr(getattr(request.node, "rep_call", None), "failed", False):
        for process in started:
            print(f"\n{process.tail(120)}")


def wait_healthy(server: Server, process: Background) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        process.check_alive(server.command)
        try:
            response = httpx.get(f"{server.url}/v1/health", timeout=1.0)
            if response.status_code == 200 and response.json().get("status") == "ok":
                return
            last = f"{response.status_code}: {response.text[:200]}"
        except (httpx.HTTPError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.1)
    pytest.fail(
        f"GET {server.url}/v1/health not ok after {START_TIMEOUT:g}s ({last})\n{process.tail()}",
        pytrace=False,
    )


def watcher_messages(watcher: Background) -> list[dict[str, Any]]:
    """What the websockets client printed: ``< {...}`` lines (among terminal escapes)."""
    return [json.loads(m) for m in re.findall(r"< (\{.*\})$", watcher.output(), flags=re.M)]


def watch_until(
    watcher: Background, done: Callable[[list[dict[str, Any]]], bool], timeout: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        messages = watcher_messages(watcher)
        if done(messages) or time.monotonic() > deadline:
            return messages
        time.sleep(0.1)


def json_values(text: str) -> list[Any]:
    """Each curl prints one JSON value, without a newline: split them again."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    rest = text.strip()
    while rest:
        try:
            value, end = decoder.raw_decode(rest)
        except ValueError:
            pytest.fail(f"not JSON: {rest[:300]!r}\nwhole output:\n{text}", pytrace=False)
        values.append(value)
        rest = rest[end:].lstrip()
    return values


def is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    remaining = iter(seen)
    return all(word in remaining for word in wanted)


def check_ports_free(walk: Walkthrough) -> None:
    for server in walk.servers:
        ports: tuple[tuple[int, PortKind], ...] = (
            (server.http_port, "tcp"),
            (server.sip_port, "both"),
        )
        for port, kind in ports:
            if not port_is_free(port, kind):
                pytest.fail(
                    f"port {port} is in use: the README walk-through needs it for "
                    f"`{server.command}`; stop whatever listens there",
                    pytrace=False,
                )


def run_script(script: str) -> str:
    """Run the walk-through's short-lived commands; their standard output."""
    run = subprocess.Popen(
        ["bash", "-c", "set -euo pipefail -x\n" + script],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k not in FOREIGN_ENV},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = run.communicate(timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(run.pid, signal.SIGKILL)
        stdout, stderr = run.communicate()
        pytest.fail(
            f"walk-through still running after {SCRIPT_TIMEOUT:g}s\n{stderr}", pytrace=False
        )
    if run.returncode != 0:
        pytest.fail(f"walk-through failed ({run.returncode})\n{stdout}\n{stderr}", pytrace=False)
    return stdout


# -- the test ----------------------------------------------------------------------------


def test_readme_walkthrough(background: Callable[[str, str], Background]) -> None:
    require_binary("curl")
    walk = read_walkthrough()
    check_ports_free(walk)
    # One after the other: a first run of ./scripts/serve may set up .venv, and two installs
    # into it at once would trip over each other.
    for number, server in enumerate(walk.servers, 1):
        wait_healthy(server, background(f"server{number}", server.command))
    watcher = background("watcher", walk.watcher)
    connected = watch_until(watcher, lambda ms: bool(ms), timeout=10.0)
    watcher.check_alive("the watcher")
    assert connected[:1] == [{"type": "connected"}], watcher.tail()

    stdout = run_script(walk.script)

    # What the curls printed: statuses in order, no error, the room with both legs.
    answers = json_values(stdout)
    assert not [a for a in answers if "error" in a], stdout
    statuses = [a["status"] for a in answers if "status" in a]
    expected = ["answered", "sent", "held", "resumed", "hung_up"]
    expected += ["answered", "answered", "added", "deleted"]
    assert is_subsequence(expected, statuses), f"statuses {statuses}, expected {expected}"
    calls = [a for a in answers if a.get("type") == "sip_outbound"]
    assert calls and all(a["state"] == "ringing" for a in calls), stdout
    rooms = [a for a in answers if "participants" in a]
    assert rooms, f"no room shown\n{stdout}"
    room = rooms[-1]
    members = room["participants"]
    assert len(members) == 2, room
    assert all(m["state"] == "connected" and m["room_id"] == room["id"] for m in members), room
    assert sorted(m["muted"] for m in members) == [False, True], room

    # What the watcher saw on the first instance, up to the room's deletion.
    member_ids = {m["id"] for m in members}

    def hung_up(messages: list[dict[str, Any]]) -> set[str]:
        return {m["leg_id"] for m in messages if m.get("type") == "leg.disconnected"}

    events = watch_until(
        watcher,
        lambda ms: member_ids <= hung_up(ms) and any(m["type"] == "room.deleted" for m in ms),
        timeout=EVENT_TIMEOUT,
    )
    types = [e["type"] for e in events]

    def of(leg_id: str) -> list[dict[str, Any]]:
        return [e for e in events if e.get("leg_id") == leg_id]

    first_call = calls[0]["id"]
    first_types = [e["type"] for e in of(first_call)]
    for wanted in ("leg.ringing", "leg.connected", "leg.hold", "leg.unhold", "leg.disconnected"):
        assert wanted in first_types, f"no {wanted} for the first call: {first_types}"
    digits = re.search(r'"digits":"([^"]+)"', walk.script)
    assert digits, "the walk-through sends no DTMF"
    received = "".join(e["digit"] for e in of(first_call) if e["type"] == "dtmf.received")
    assert received == digits[1], f"dtmf.received {received!r}, sent {digits[1]!r}"
    end = next(e for e in of(first_call) if e["type"] == "leg.disconnected")
    assert end["cdr"]["reason"] == "remote_bye", end
    assert end["quality"]["rtp_packets_received"] > 0, end

    assert "room.created" in types and "room.deleted" in types, types
    joined = {e["leg_id"] for e in events if e["type"] == "leg.joined_room"}
    assert joined == member_ids, f"joined {joined}, members {member_ids}"
    left = {e["leg_id"] for e in events if e["type"] == "leg.left_room"}
    assert left == member_ids, f"left {left}, members {member_ids}"
    muted = {e["leg_id"] for e in events if e["type"] == "leg.muted"}
    assert muted == {m["id"] for m in members if m["muted"]}, types
    ends = [e for e in events if e["type"] == "leg.disconnected" and e["leg_id"] in member_ids]
    assert len(ends) == 2 and all(e["cdr"]["reason"] == "api_hangup" for e in ends), ends
    # Nothing is left behind: the second instance's legs end with the BYEs a moment later.
    with httpx.Client(timeout=5.0) as client:
        deadline = time.monotonic() + EVENT_TIMEOUT
        remaining = ["not asked yet"]
        while remaining and time.monotonic() < deadline:
            remaining = [leg for s in walk.servers for leg in client.get(f"{s.url}/v1/legs").json()]
            time.sleep(0.1)
        assert not remaining, f"legs left after the walk-through: {remaining}"
