"""Headless Chromium (Debian `chromium`) driven over the DevTools protocol: no Playwright, no
driver download. A fake microphone plays a WAV file (TEST-PEERS.md gives the flags).

    with Chromium(tmp_path, fake_audio=wav) as browser:
        browser.open("http://127.0.0.1:8080/console/")
        browser.evaluate("document.title")
        browser.screenshot(path)
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.helpers.peers import require_binary


class Chromium:
    def __init__(self, workdir: Path, *, fake_audio: Path | None = None) -> None:
        self.binary = require_binary("chromium")
        self.profile = workdir / "chromium-profile"
        self.profile.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "chromium.log"
        self.fake_audio = fake_audio
        self.proc: subprocess.Popen[bytes] | None = None
        self.page: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._exits = contextlib.ExitStack()

    def __enter__(self) -> Chromium:
        args = [
            self.binary,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            # Host candidates with real addresses, not mDNS names this container cannot resolve.
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--user-data-dir={self.profile}",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
            "about:blank",
        ]
        if self.fake_audio is not None:
            args.insert(-1, f"--use-file-for-fake-audio-capture={self.fake_audio}")
        log = self._exits.enter_context(open(self.log_path, "wb"))
        # Debian's chromium is a shell launcher that does not exec the browser: the browser
        # gets a process group of its own, and close() ends the whole group.
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"chromium did not start: {self.log_tail()}")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        self.page = self._exits.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024)
        )
        self.send("Page.enable")
        self.send("Runtime.enable")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; its result (events that arrive meanwhile are skipped)."""
        assert self.page is not None
        request_id = next(self._ids)
        self.page.send(json.dumps({"id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.page.recv(timeout=30))
            if message.get("id") == request_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def open(self, url: str, timeout: float = 15) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'", timeout)

    def evaluate(self, expression: str) -> Any:
        """A JavaScript expression's value (promises awaited); raises on a page exception."""
        result = self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 15) -> Any:
        """Poll a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {expression!r}")
            time.sleep(0.1)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._exits.close()  # the DevTools socket and the log file
        self.page = None
        if self.proc is None:
            return
        group = self.proc.pid  # its own session: the group id is the launcher's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)  # reaped, so only the browser's own processes hold the group
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _group_alive(group):
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # whatever did not leave on SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
