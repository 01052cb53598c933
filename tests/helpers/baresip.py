"""Run baresip (Debian ``baresip`` 1.0.0) as a real SIP phone with no sound card.

What was found to work offline on Debian bookworm (baresip 1.0.0):

- Audio in: ``audio_source ausine,<Hz>`` (a sine; needs ``ausrc_srate 48000`` and
  ``ausrc_channels 2``), or ``audio_source aufile,<file.wav>``: the WAV must be S16LE at
  exactly ``ausrc_srate``/``ausrc_channels``, and at its end aufile raises AUDIO_ERROR
  "end of file" and baresip HANGS UP. So we write the file at 48 kHz stereo and pad it with
  silence to ``pad_source_s`` (None: no padding, hang up at the end).
- Audio out: aufile has no player in 1.0.0. ``audio_player aubridge,nil`` works as a null
  player; decoding (and so recording) runs all the same.
- Recording: the ``sndfile`` audio filter with ``snd_path <dir>`` writes
  ``<dir>/dump-YYYY-MM-DD-HH-MM-SS-enc.wav`` (what baresip SENT, after resampling to the
  codec's rate/channels, before encoding) and ``...-dec.wav`` (what it HEARD, decoded, at the
  codec's rate): 16-bit PCM, 8000 Hz mono for G.711. Two calls in the same second would share
  a name, so use one baresip per call.
- SDP: without ``net_interface 127.0.0.1`` baresip advertises the eth0 address in c=;
  ``net_interface lo`` fails ("could not get IPv4 address").
- ``sip_listen 127.0.0.1:P`` binds UDP and TCP on P and TLS on P+1 (TCP).
- Codec restriction is an account parameter: ``;audio_codecs=PCMU,PCMA``; G.722 must be
  spelled ``G722/16000/1`` and Opus ``opus/48000/2`` (plain ``G722`` means G722/8000/1: not
  found, and then the restriction is silently ignored).
- Control: ``ctrl_tcp`` (``ctrl_tcp_listen 127.0.0.1:P``) takes netstring JSON commands
  ``{"command": "dial", "params": "sip:...", "token": "t1"}`` (any menu command: ``dial``,
  ``hangup``, ``accept``, ``sndcode`` (sends one DTMF digit, RFC 4733), ``hold``, ...) and
  pushes events ``{"event": true, "type": "CALL_ESTABLISHED", ...}``: CALL_INCOMING,
  CALL_RINGING, CALL_PROGRESS, CALL_ESTABLISHED, CALL_RTPESTAB, CALL_CLOSED (``param`` is the
  reason), CALL_DTMF_START/END (digits received), AUDIO_ERROR...
- ``-t <s>`` quits after s seconds, but then waits for its BYE to time out (up to 32 s) if the
  peer is gone; SIGTERM ends it at once. Without ``stdio.so`` it never reads stdin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.helpers.audio import read_wav, to_float, write_wav
from tests.helpers.peers import free_port, free_port_range, require_binary, wait_port_bound

MODULE_DIR = Path("/usr/lib/baresip/modules")
CODEC_NAMES = {
    "pcmu": "PCMU",
    "pcma": "PCMA",
    "g722": "G722/16000/1",
    "opus": "opus/48000/2",
}
SOURCE_RATE = 48000
SOURCE_CHANNELS = 2


class BaresipControl:
    """Client of the ctrl_tcp module: netstring JSON commands and events."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(0.2)
        self.events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._tokens = 0
        self._closed = False
        self._thread = threading.Thread(target=self._read, name="baresip-ctrl", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buffer = b""
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            buffer += data
            while b":" in buffer:
                length_text, rest = buffer.split(b":", 1)
                length = int(length_text)
                if len(rest) < length + 1:
                    break
                message = json.loads(rest[:length])
                buffer = rest[length + 1 :]
                with self._cond:
                    if message.get("response"):
                        self._responses[str(message.get("token"))] = message
                    elif message.get("event"):
                        message["received_at"] = time.monotonic()
                        self.events.append(message)
                    self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run a menu command; returns the response (``ok``, ``data``)."""
        with self._cond:
            self._tokens += 1
            token = f"t{self._tokens}"
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")
        deadline = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise TimeoutError(f"baresip did not answer {command!r}")
                self._cond.wait(remaining)
            return self._responses.pop(token)

    def wait_for_event(
        self, type: str, timeout: float = 10.0, *, since: int = 0, **match: Any
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self.events[since:]:
                    if event.get("type") == type and all(
                        event.get(k) == v for k, v in match.items()
                    ):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [e.get("type") for e in self.events]
                    raise TimeoutError(f"no baresip event {type} {match} in {timeout}s: {seen}")
                self._cond.wait(min(remaining, 0.2))

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.close()
        self._thread.join(timeout=2)


class Baresip:
    """One baresip user agent with its own config dir, ports and recordings."""

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "baresip",
        name: str | None = None,
        sine_hz: int = 1000,
        source_wav: Path | None = None,
        pad_source_s: float | None = 60.0,
        codecs: list[str] | None = None,
        answermode: str = "auto",
        account_params: str = "",
        extra_config: dict[str, str] | None = None,
        max_lifetime_s: int = 300,
    ) -> None:
        self.binary = require_binary("baresip")
        self.user = user
        self.name = name or user
        self.dir = Path(workdir) / self.name
        self.config_dir = self.dir / "config"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        # baresip's sndfile cuts dump paths longer than ~100 characters (its file names lose
        # their -enc/-dec suffix), and pytest's tmp paths get long under xdist: the dumps go
        # to a short directory, linked from the instance's own.
        self.snd_dir = Path(tempfile.mkdtemp(prefix="cb-bs-"))
        (self.dir / "recordings").symlink_to(self.snd_dir)
        self.log_path = self.dir / "baresip.log"
        self.sip_port = free_port_range(2, "both")  # P for UDP/TCP, P+1 for TLS
        self.rtp_low = free_port_range(20, "udp")
        self.ctrl_port = free_port("tcp")
        self.max_lifetime_s = max_lifetime_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.control: BaresipControl | None = None
        self._log_file: Any = None

        if source_wav is not None:
            self.source = f"aufile,{self._prepare_source(Path(source_wav), pad_source_s)}"
        else:
            self.source = f"ausine,{sine_hz}"
        config = {
            "poll_method": "epoll",
            "sip_listen": f"127.0.0.1:{self.sip_port}",
            "net_interface": "127.0.0.1",
            "call_local_timeout": "120",
            "call_max_calls": "4",
            "audio_player": "aubridge,nil",
            "audio_alert": "aubridge,nil",
            "audio_source": self.source,
            "ausrc_srate": str(SOURCE_RATE),
            "auplay_srate": str(SOURCE_RATE),
            "ausrc_channels": str(SOURCE_CHANNELS),
            "auplay_channels": str(SOURCE_CHANNELS),
            "audio_level": "no",
            "rtp_ports": f"{self.rtp_low}-{self.rtp_low + 19}",
            "rtcp_mux": "no",
            "jitter_buffer_delay": "5-10",
            "module_path": str(MODULE_DIR),
            "snd_path": str(self.snd_dir),
            "ctrl_tcp_listen": f"127.0.0.1:{self.ctrl_port}",
            "statmode_default": "off",
        }
        config.update(extra_config or {})
        lines = [f"{key}\t{value}" for key, value in config.items()]
        for module in ("g711", "g722", "opus", "ausine", "aufile", "aubridge", "sndfile"):
            lines.append(f"module\t{module}.so")
        lines += ["module_tmp\taccount.so", "module_app\tmenu.so", "module_app\tctrl_tcp.so"]
        (self.config_dir / "config").write_text("\n".join(lines) + "\n")

        params = f";regint=0;answermode={answermode}"
        if codecs:
            params += ";audio_codecs=" + ",".join(CODEC_NAMES.get(c.lower(), c) for c in codecs)
        (self.config_dir / "accounts").write_text(
            f"<sip:{user}@127.0.0.1>{params}{account_params}\n"
        )
        (self.config_dir / "contacts").write_text("")

    @staticmethod
    def _prepare_source(path: Path, pad_s: float | None) -> Path:
        """Rewrite a WAV as 48 kHz stereo S16LE (what aufile needs), padded with silence."""
        rate, samples = read_wav(path)
        mono = to_float(samples).mean(axis=1)
        if rate != SOURCE_RATE:
            n_out = round(mono.size * SOURCE_RATE / rate)
            mono = np.interp(np.arange(n_out) * (rate / SOURCE_RATE), np.arange(mono.size), mono)
        if pad_s is not None and mono.size < pad_s * SOURCE_RATE:
            mono = np.concatenate([mono, np.zeros(int(pad_s * SOURCE_RATE) - mono.size)])
        out = path.with_name(path.stem + ".baresip-48k-stereo.wav")
        write_wav(out, SOURCE_RATE, np.stack([mono, mono], axis=1))
        return out

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """Where to call this phone (its user at its SIP port)."""
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def start(self, dial: str | None = None, timeout: float = 10.0) -> Baresip:
        """Start baresip, connect to its control port, and optionally dial ``dial``."""
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [self.binary, "-f", str(self.config_dir), "-t", str(self.max_lifetime_s)],
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not wait_port_bound(self.ctrl_port, "tcp", 0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail("baresip did not start\n" + self.log_tail(), pytrace=False)
        self.control = BaresipControl(self.ctrl_port)
        if "ua: init failed" in self.log_text():
            self.stop()
            pytest.fail("baresip could not initialise\n" + self.log_tail(), pytrace=False)
        if dial is not None:
            self.dial(dial)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM (hangs up active calls), then SIGKILL if needed; returns the exit code."""
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode if self.proc is not None else None

    # -- control -------------------------------------------------------------------------

    def _ctrl(self) -> BaresipControl:
        if self.control is None:
            raise RuntimeError("baresip is not running")
        return self.control

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        return self._ctrl().command(command, params, timeout)

    def dial(self, uri: str) -> None:
        response = self.command("dial", uri)
        assert response.get("ok"), response

    def answer(self) -> None:
        self.command("accept")

    def hangup(self) -> None:
        self.command("hangup")

    def send_dtmf(self, digits: str, gap_s: float = 0.25) -> None:
        """Send each digit as RFC 4733 events (``sndcode``), ``gap_s`` apart."""
        for digit in digits:
            self.command("sndcode", digit)
            time.sleep(gap_s)

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self._ctrl().events)

    def wait_for_event(self, type: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """Wait for a ctrl_tcp event such as CALL_ESTABLISHED or CALL_CLOSED."""
        try:
            return self._ctrl().wait_for_event(type, timeout, **match)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{self.log_tail()}", pytrace=False)

    def wait_established(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_for_event("CALL_ESTABLISHED", timeout)

    def wait_closed(self, timeout: float = 10.0) -> dict[str, Any]:
        return self.wait_for_event("CALL_CLOSED", timeout)

    # -- recordings ----------------------------------------------------------------------

    def _latest(self, suffix: str) -> Path | None:
        files = sorted(self.snd_dir.glob(f"dump-*-{suffix}.wav"), key=lambda p: p.stat().st_mtime)
        return files[-1] if files else None

    @property
    def sent_wav(self) -> Path | None:
        """WAV of what baresip sent (sndfile ``-enc.wav``), at the codec's rate."""
        return self._latest("enc")

    @property
    def heard_wav(self) -> Path | None:
        """WAV of what baresip heard (sndfile ``-dec.wav``), decoded at the codec's rate."""
        return self._latest("dec")

    def heard(self) -> tuple[int, npt.NDArray[np.float64]]:
        """(rate, mono float samples) of what baresip heard; fails if nothing was recorded."""
        return self._mono(self.heard_wav, "heard")

    def heard_window(
        self, answered_at: float, start_at: float, seconds: float
    ) -> tuple[int, npt.NDArray[np.float64]]:
        """(rate, samples) heard from `start_at` for `seconds` (times on time.monotonic(); the
        recording starts when the call was answered, at `answered_at`)."""
        rate, heard = self.heard()
        start = int((start_at - answered_at) * rate)
        piece = heard[start : start + int(seconds * rate)]
        assert piece.size > rate, f"{self.user} heard only {heard.size / rate:.1f} s"
        return rate, piece

    def sent(self) -> tuple[int, npt.NDArray[np.float64]]:
        return self._mono(self.sent_wav, "sent")

    def _mono(self, path: Path | None, what: str) -> tuple[int, npt.NDArray[np.float64]]:
        if path is None:
            pytest.fail(f"baresip recorded nothing it {what}\n{self.log_tail()}", pytrace=False)
        rate, samples = read_wav(path)
        return rate, to_float(samples).mean(axis=1)

    # -- logs ----------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().replace("\r", "\n").splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)


class BaresipFactory:
    """Fixture object: ``baresip_factory(user="bob", ...)`` -> a configured, unstarted Baresip."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.instances: list[Baresip] = []

    def __call__(self, user: str = "baresip", **kwargs: Any) -> Baresip:
        name = kwargs.pop("name", None) or f"{user}-{len(self.instances) + 1}"
        phone = Baresip(self.workdir, user=user, name=name, **kwargs)
        self.instances.append(phone)
        return phone

    def close(self, failed: bool = False) -> None:
        for phone in self.instances:
            phone.stop()
            if failed:
                print(f"\nbaresip {phone.name}:\n{phone.log_tail()}")
            else:
                shutil.rmtree(phone.snd_dir, ignore_errors=True)
