"""Run SIPp (Debian ``sip-tester``) as a real SIP peer.

Every run is non-interactive and bounded: ``-nostdin -m 1 -timeout <s> -timeout_error``, with
SIP messages, unexpected messages and the final statistics screens written to files in a
per-run directory. Exit code 0 means the one call followed the scenario to its end.

Facts worth knowing (SIPp 3.6.1):

- SIPp binds the media port ``-mp`` *and* ``-mp + 2`` (video), and a UDP control port
  (``-cp``, default 8888, so parallel runs would fight over it): we always pass a free one.
- ``play_pcap_audio`` sends with a raw socket: it needs root (CI runs as root).
  ``g711a.pcap`` is 7.05 s of PCMA in 30 ms packets (240 bytes); the ``dtmf_2833_<d>.pcap``
  files carry payload type 101, 280 ms events, each in its own SSRC.
- ``-rtp_echo`` echoes whatever reaches ``-mp`` back to where it came from.
- A scenario variable assigned but never used is a fatal error ("referenced 1 times").
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from tests.helpers.peers import free_port, free_port_range, require_binary, wait_port_bound

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "interop" / "scenarios"
PCAP_DIR = Path("/usr/share/sip-tester")
G711A_PCAP = PCAP_DIR / "g711a.pcap"

BUILTIN_SCENARIOS = frozenset(
    {
        "uac",
        "uas",
        "regexp",
        "3pcc-C-A",
        "3pcc-C-B",
        "3pcc-A",
        "3pcc-B",
        "branchc",
        "branchs",
        "uac_pcap",
    }
)

_LOG_NAMES = {"messages": "messages.log", "errors": "errors.log", "screen": "screen.log"}
_run_counter = itertools.count(1)


def dtmf_pcap(digit: str) -> Path:
    """The RFC 2833 pcap SIPp ships for a digit (0-9, *, #)."""
    name = {"*": "star", "#": "pound"}.get(digit, digit)
    return PCAP_DIR / f"dtmf_2833_{name}.pcap"


def scenario_path(name: str | os.PathLike[str]) -> Path:
    """Resolve a scenario: an existing path, or a name (with or without .xml) in scenarios/."""
    path = Path(name)
    if path.exists():
        return path
    candidate = SCENARIO_DIR / path.name
    if candidate.suffix != ".xml":
        candidate = candidate.with_name(candidate.name + ".xml")
    if not candidate.exists():
        raise FileNotFoundError(f"no SIPp scenario {name!r} (looked in {SCENARIO_DIR})")
    return candidate


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    logs: dict[str, str] = field(default_factory=dict)  # messages / errors / screen -> text
    log_dir: Path | None = None
    timed_out: bool = False  # our own wall-clock guard had to kill SIPp

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def messages(self) -> str:
        """Every SIP message SIPp sent and received (-trace_msg)."""
        return self.logs.get("messages", "")

    def describe(self, tail: int = 6000) -> str:
        guard = " (killed by the wall-clock guard)" if self.timed_out else ""
        parts = [f"sipp exit code {self.returncode}{guard}"]
        for key in ("errors", "screen", "messages"):
            text = self.logs.get(key, "")
            if text:
                parts.append(f"--- {key} (last {tail} chars) ---\n{text[-tail:]}")
        if self.stderr.strip():
            parts.append(f"--- stderr ---\n{self.stderr[-tail:]}")
        return "\n".join(parts)

    def assert_ok(self) -> SippResult:
        if not self.ok:
            pytest.fail("SIPp scenario failed: " + self.describe(), pytrace=False)
        return self


class SippProcess:
    """A SIPp run in the background (typically the callee that the server is told to dial)."""

    def __init__(
        self,
        args: list[str],
        *,
        run_dir: Path,
        local_port: int,
        media_port: int,
        transport: str,
        timeout: float,
    ) -> None:
        self.args = args
        self.run_dir = run_dir
        self.local_port = local_port
        self.media_port = media_port
        self.transport = transport
        self.timeout = timeout
        self._stdout = open(run_dir / "stdout.log", "wb")  # noqa: SIM115 - closed in wait()
        self._stderr = open(run_dir / "stderr.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            args,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
            start_new_session=True,
        )
        self.result: SippResult | None = None

    @property
    def target(self) -> str:
        """host:port to send SIP to."""
        return f"127.0.0.1:{self.local_port}"

    def uri(self, user: str = "sipp") -> str:
        """SIP URI of this peer, e.g. for the server's POST /v1/legs ``uri``."""
        suffix = ";transport=tcp" if self.transport.startswith("t") else ""
        return f"sip:{user}@127.0.0.1:{self.local_port}{suffix}"

    def wait_ready(self, timeout: float = 5.0) -> SippProcess:
        """Return once SIPp has bound its SIP port (fail if it died first)."""
        kind: Literal["udp", "tcp"] = "tcp" if self.transport.startswith("t") else "udp"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return self  # finished already (or failed): wait() tells which
            if wait_port_bound(self.local_port, kind, 0.05):
                return self
        self.stop()
        pytest.fail(f"SIPp did not bind port {self.local_port}: " + self.describe(), pytrace=False)

    def describe(self) -> str:
        return self.result.describe() if self.result is not None else " ".join(self.args)

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to finish (it stops by itself after one call or its -timeout)."""
        if self.result is not None:
            return self.result
        limit = self.timeout + 10 if timeout is None else timeout
        timed_out = False
        try:
            self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
            self.kill()
        self._stdout.close()
        self._stderr.close()
        self.result = SippResult(
            returncode=self.proc.returncode,
            stdout=_read(self.run_dir / "stdout.log"),
            stderr=_read(self.run_dir / "stderr.log"),
            logs={key: _read(self.run_dir / name) for key, name in _LOG_NAMES.items()},
            log_dir=self.run_dir,
            timed_out=timed_out,
        )
        return self.result

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self) -> SippResult:
        """End SIPp now (if still running) and collect what it logged."""
        self.kill()
        return self.wait(timeout=5)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _build(
    scenario_or_builtin: str | os.PathLike[str],
    target: str | None,
    *,
    local_port: int | None,
    media_port: int | None,
    extra_args: Sequence[str],
    timeout: float,
    service: str,
    transport: str,
    rtp_echo: bool,
    log_dir: Path | None,
) -> tuple[list[str], Path, int, int]:
    sipp = require_binary("sipp")
    if local_port is None:
        local_port = free_port("both")
    if media_port is None:
        media_port = free_port_range(4, "udp")  # SIPp binds media_port and media_port + 2
    name = str(scenario_or_builtin)
    if isinstance(scenario_or_builtin, str) and name in BUILTIN_SCENARIOS:
        scenario_args = ["-sn", name]
        label = name
    else:
        path = scenario_path(scenario_or_builtin)
        scenario_args = ["-sf", str(path)]
        label = path.stem
    base = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="sipp-"))
    run_dir = base / f"sipp-{next(_run_counter):03d}-{label}-{local_port}"
    run_dir.mkdir(parents=True, exist_ok=True)
    args = [
        sipp,
        *scenario_args,
        "-s", service,
        "-t", transport,
        "-i", "127.0.0.1",
        "-mi", "127.0.0.1",
        "-p", str(local_port),
        "-mp", str(media_port),
        "-cp", str(free_port("udp")),
        "-m", "1",
        "-nostdin",
        "-aa",
        "-timeout", f"{timeout:g}s",
        "-timeout_error",
        "-trace_err", "-error_file", str(run_dir / _LOG_NAMES["errors"]),
        "-trace_msg", "-message_file", str(run_dir / _LOG_NAMES["messages"]),
        "-trace_screen", "-screen_file", str(run_dir / _LOG_NAMES["screen"]),
    ]  # fmt: skip
    if rtp_echo:
        args.append("-rtp_echo")
    args.extend(extra_args)
    if target is not None:
        args.append(target)
    return args, run_dir, local_port, media_port


def start_sipp(
    scenario_or_builtin: str | os.PathLike[str],
    target: str | None = None,
    *,
    local_port: int | None = None,
    media_port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    service: str = "callboard",
    transport: str = "u1",
    rtp_echo: bool = False,
    log_dir: Path | None = None,
    wait_ready: bool = True,
) -> SippProcess:
    """Start SIPp in the background; returns once its SIP port is bound (``wait_ready``).

    ``target`` is ``"host:port"`` for a UAC scenario, ``None`` for a UAS. ``transport`` is
    SIPp's ``-t`` (``u1`` UDP, ``t1`` TCP). ``service`` is the user part SIPp dials (``-s``).
    """
    args, run_dir, local_port, media_port = _build(
        scenario_or_builtin,
        target,
        local_port=local_port,
        media_port=media_port,
        extra_args=extra_args,
        timeout=timeout,
        service=service,
        transport=transport,
        rtp_echo=rtp_echo,
        log_dir=log_dir,
    )
    process = SippProcess(
        args,
        run_dir=run_dir,
        local_port=local_port,
        media_port=media_port,
        transport=transport,
        timeout=timeout,
    )
    if wait_ready:
        process.wait_ready()
    return process


def run_sipp(
    scenario_or_builtin: str | os.PathLike[str],
    target: str | None = None,
    *,
    local_port: int | None = None,
    media_port: int | None = None,
    extra_args: Sequence[str] = (),
    timeout: float = 30.0,
    service: str = "callboard",
    transport: str = "u1",
    rtp_echo: bool = False,
    log_dir: Path | None = None,
) -> SippResult:
    """Run SIPp to completion (one call) and return its result; see :func:`start_sipp`."""
    process = start_sipp(
        scenario_or_builtin,
        target,
        local_port=local_port,
        media_port=media_port,
        extra_args=extra_args,
        timeout=timeout,
        service=service,
        transport=transport,
        rtp_echo=rtp_echo,
        log_dir=log_dir,
        wait_ready=False,
    )
    return process.wait()


class SippRunner:
    """Fixture object: SIPp runs whose logs land in the test's tmp dir, killed at teardown."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[SippProcess] = []

    def run(
        self, scenario_or_builtin: str | os.PathLike[str], target: str | None = None, **kw: object
    ) -> SippResult:
        kw.setdefault("log_dir", self.log_dir)
        return run_sipp(scenario_or_builtin, target, **kw)  # type: ignore[arg-type]

    def start(
        self, scenario_or_builtin: str | os.PathLike[str], target: str | None = None, **kw: object
    ) -> SippProcess:
        kw.setdefault("log_dir", self.log_dir)
        process = start_sipp(scenario_or_builtin, target, **kw)  # type: ignore[arg-type]
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            process.stop()
