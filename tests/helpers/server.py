"""Start the real Callboard server (``python -m callboard``) as a subprocess for a test.

Each instance gets its own HTTP port, SIP port (free for UDP and TCP), a private window of 200
RTP ports reserved across processes, its own recording dir and log file, so that several
instances (and several pytest workers) never collide.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.peers import PortWindow, free_port, reserve_port_window

READY_TIMEOUT = 15.0
RTP_WINDOW_SIZE = 200

_instance_counter = itertools.count(1)


class ServerProcess:
    """One running server. Use ``start()`` (the fixtures do) and ``stop()``/``close()``."""

    def __init__(
        self,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        number = next(_instance_counter)
        # What to run; tests of this helper substitute a stand-in server.
        self.command = list(command) if command else [sys.executable, "-m", "callboard"]
        self.name = name or f"server{number}"
        self.workdir = Path(workdir) / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "server.log"
        self.http_port = free_port("tcp")
        self.sip_port = free_port("both")
        self.rtp_window: PortWindow = reserve_port_window(RTP_WINDOW_SIZE)
        self.instance_id = f"test-{os.getpid()}-{number}"
        self.recording_dir = self.workdir / "recordings"
        self.recording_dir.mkdir(exist_ok=True)
        self.env: dict[str, str] = {
            "HTTP_ADDR": f"127.0.0.1:{self.http_port}",
            "SIP_BIND_IP": "127.0.0.1",
            "SIP_PORT": str(self.sip_port),
            "RTP_PORT_MIN": str(self.rtp_window.low),
            "RTP_PORT_MAX": str(self.rtp_window.high),
            "INSTANCE_ID": self.instance_id,
            "LOG_LEVEL": "debug",
            "RECORDING_DIR": str(self.recording_dir),
        }
        if env:
            self.env.update({k: str(v) for k, v in env.items()})
        # Ports given as overrides win, so that .sip_port etc. tell the truth.
        self.instance_id = self.env["INSTANCE_ID"]
        self.sip_port = int(self.env["SIP_PORT"])
        self.http_port = int(self.env["HTTP_ADDR"].rsplit(":", 1)[1])
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        self.stopped = False  # stop() was called
        # With API_KEYS, the helpers speak with the first key (tests of refusals use their own).
        keys = [k.strip() for k in self.env.get("API_KEYS", "").split(",") if k.strip()]
        self.api_key = keys[0] if keys else None
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.client = httpx.Client(base_url=self.http, timeout=10.0, headers=auth)
        self._log_file: Any = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, ready_timeout: float = READY_TIMEOUT) -> ServerProcess:
        environ = dict(os.environ)
        # A developer's own settings must not leak into a test server.
        for key in ("WEBHOOK_URL", "WEBHOOK_SECRET", "SIP_LISTEN_IP", "S3_BUCKET", "ICE_SERVERS"):
            environ.pop(key, None)
        environ.update(self.env)
        environ["PYTHONUNBUFFERED"] = "1"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            self.command,
            cwd=self.workdir,
            env=environ,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until GET /v1/legs answers 200; fail with the log tail if the process died."""
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                pytest.fail(
                    f"{self.name} exited with code {self.returncode} during start-up\n"
                    + self.log_tail(),
                    pytrace=False,
                )
            try:
                response = self.client.get("/v1/legs", timeout=1.0)
                if response.status_code == 200 and isinstance(response.json(), list):
                    return
                if response.status_code == 403 and "ALLOWED_IPS" in self.env:
                    return  # serving, and refusing this client as configured
                last_error = f"GET /v1/legs -> {response.status_code}: {response.text[:200]}"
            except (httpx.HTTPError, ValueError) as exc:
                last_error = repr(exc)
            time.sleep(0.05)
        self.kill()
        pytest.fail(
            f"{self.name} not ready after {timeout:g}s ({last_error})\n" + self.log_tail(),
            pytrace=False,
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait for the exit and return its code (-9 if it had to be killed)."""
        if self.proc is None:
            raise RuntimeError("server was never started")
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.returncode = self.proc.returncode
        self._kill_group()
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the server and anything it started (its own process group)."""
        if self.proc is not None and self.proc.poll() is None:
            self._kill_group()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
            self.returncode = self.proc.returncode

    def _kill_group(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def close(self) -> None:
        """Teardown: kill leftovers, release the port window, close files and the client."""
        self.kill()
        self._kill_group()
        self.client.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self.rtp_window.release()

    # -- addresses -----------------------------------------------------------------------

    @property
    def sip_target(self) -> str:
        """host:port, as SIPp wants its target."""
        return f"127.0.0.1:{self.sip_port}"

    def sip_uri(self, user: str = "callboard", transport: str | None = None) -> str:
        uri = f"sip:{user}@127.0.0.1:{self.sip_port}"
        return f"{uri};transport={transport}" if transport else uri

    @property
    def ws(self) -> str:
        """ws:// base URL of the HTTP listener."""
        return f"ws://127.0.0.1:{self.http_port}"

    # -- REST helpers ----------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        json: Any = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Call the REST API. ``path`` may omit the ``/v1`` prefix (``"/legs"``)."""
        if not (path.startswith("/v1/") or path == "/v1" or path.startswith("/metrics")):
            path = "/v1" + (path if path.startswith("/") else "/" + path)
        if json is not None:
            kwargs["json"] = json
        return self.client.request(method, path, **kwargs)

    def get_leg(self, leg_id: str) -> dict[str, Any] | None:
        """The leg as JSON, or None on 404."""
        response = self.api("GET", f"/legs/{leg_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def wait_for_leg_state(
        self, leg_id: str, state: str, timeout: float = 10.0
    ) -> dict[str, Any] | None:
        """Poll GET /v1/legs/{id} until ``state``; returns the leg.

        Waiting for ``"hung_up"`` also accepts a 404 (the leg is gone) and returns None.
        """
        deadline = time.monotonic() + timeout
        last: Any = "never fetched"
        while time.monotonic() < deadline:
            leg = self.get_leg(leg_id)
            if leg is None:
                if state == "hung_up":
                    return None
                last = "404"
            elif leg.get("state") == state:
                return leg
            else:
                last = leg
            time.sleep(0.05)
        pytest.fail(
            f"leg {leg_id} did not reach state {state!r} in {timeout:g}s; last seen: {last}",
            pytrace=False,
        )

    def wait_for_legs(
        self, count: int, timeout: float = 10.0, **match: Any
    ) -> list[dict[str, Any]]:
        """Poll GET /v1/legs until at least ``count`` legs match the field values in ``match``."""
        deadline = time.monotonic() + timeout
        legs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            legs = [
                leg
                for leg in self.api("GET", "/legs").json()
                if all(leg.get(k) == v for k, v in match.items())
            ]
            if len(legs) >= count:
                return legs
            time.sleep(0.05)
        pytest.fail(f"expected {count} legs matching {match}, have {legs}", pytrace=False)

    # -- logs ----------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    def __repr__(self) -> str:
        return f"ServerProcess({self.name}, http={self.http}, sip={self.sip_port})"


class ServerFactory:
    """Fixture object: ``factory(**env)`` starts another instance with distinct ports."""

    def __init__(self, workdir: Path, command: Sequence[str] | None = None) -> None:
        self.workdir = workdir
        self.command = command
        self.instances: list[ServerProcess] = []

    def __call__(
        self, env: Mapping[str, str] | None = None, *, start: bool = True, **env_kw: str
    ) -> ServerProcess:
        """Start (unless ``start=False``) an instance; ``env``/keywords override settings."""
        merged = {**(env or {}), **env_kw}
        server = ServerProcess(self.workdir, merged, command=self.command)
        self.instances.append(server)
        if start:
            server.start()
        return server

    def close(self, failed: bool = False) -> None:
        for server in self.instances:
            crashed = server.proc is not None and not server.stopped and not server.running()
            server.close()
            if failed or crashed:
                why = "test failed" if failed else f"exited by itself ({server.returncode})"
                print(f"\n{server!r}: {why}\n{server.log_tail(120)}")
