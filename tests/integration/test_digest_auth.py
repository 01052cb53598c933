"""Digest authentication against a stand-in UAS that checks the answer with hashlib itself.

SIPp's verifyauth knows only MD5 (tests/interop covers that); this stand-in challenges with
401 or 407 and SHA-256 or MD5, recomputes the RFC 7616 response independently of our
callboard.sip.auth, and answers 486 when it is right and 403 when it is wrong, so the leg's
disconnect reason tells what the challenger decided.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from typing import Any

import pytest

from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver

REALM = "callboard.test"
NONCE = "5b2e9f0c7d1a4e33"


def _digest(algorithm: str, text: str) -> str:
    name = "sha256" if algorithm.upper().startswith("SHA-256") else "md5"
    return hashlib.new(name, text.encode()).hexdigest()


class ChallengingUas:
    def __init__(self, status: int, algorithm: str, username: str, password: str) -> None:
        self.status = status
        self.algorithm = algorithm
        self.username = username
        self.password = password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.verdicts: list[bool] = []
        self.authorizations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _run(self) -> None:
        answered: dict[str, int] = {}
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            text = data.decode()
            if not text.startswith("INVITE "):
                continue  # ACKs
            cseq = _header(text, "CSeq")
            if cseq in answered:  # a retransmission: answer the same again
                self._reply(text, answered[cseq], addr)
                continue
            auth_name = "Authorization" if self.status == 401 else "Proxy-Authorization"
            credentials = _header(text, auth_name)
            if credentials is None:
                status = self.status
            else:
                self.authorizations.append(credentials)
                ok = self._verify(text, credentials)
                self.verdicts.append(ok)
                status = 486 if ok else 403
            answered[cseq] = status
            self._reply(text, status, addr)

    def _verify(self, request: str, credentials: str) -> bool:
        pairs = re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]+))', credentials)
        params = {key: quoted or bare for key, quoted, bare in pairs}
        uri = request.split(" ", 2)[1]
        ha1 = _digest(self.algorithm, f"{self.username}:{REALM}:{self.password}")
        ha2 = _digest(self.algorithm, f"INVITE:{uri}")
        expected = _digest(
            self.algorithm,
            f"{ha1}:{NONCE}:{params.get('nc')}:{params.get('cnonce')}:auth:{ha2}",
        )
        return (
            params.get("username") == self.username
            and params.get("realm") == REALM
            and params.get("uri") == uri
            and params.get("qop") == "auth"
            and params.get("response") == expected
        )

    def _reply(self, request: str, status: int, addr: Any) -> None:
        reasons = {
            401: "Unauthorized",
            407: "Proxy Authentication Required",
            486: "Busy Here",
            403: "Forbidden",
        }
        lines = [f"SIP/2.0 {status} {reasons[status]}"]
        for name in ("Via", "From", "Call-ID", "CSeq"):
            lines += [f"{name}: {v}" for v in _headers(request, name)]
        lines.append(f"To: {_header(request, 'To')};tag=stand-in")
        if status in (401, 407):
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            lines.append(
                f'{header}: Digest realm="{REALM}", nonce="{NONCE}", qop="auth", '
                f"algorithm={self.algorithm}"
            )
        lines.append("Content-Length: 0")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), addr)


def _headers(message: str, name: str) -> list[str]:
    head = message.split("\r\n\r\n", 1)[0]
    prefix = name.lower() + ":"
    return [
        line.split(":", 1)[1].strip()
        for line in head.split("\r\n")[1:]
        if line.lower().startswith(prefix)
    ]


def _header(message: str, name: str) -> str | None:
    found = _headers(message, name)
    return found[0] if found else None


@pytest.mark.parametrize(
    ("status", "algorithm"), [(401, "SHA-256"), (407, "SHA-256"), (401, "MD5"), (407, "MD5")]
)
def test_digest_challenge_is_answered(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver, status: int, algorithm: str
) -> None:
    uas = ChallengingUas(status, algorithm, "alice", "s3cret")
    try:
        body = {
            "type": "sip",
            "uri": f"sip:bob@127.0.0.1:{uas.port}",
            "auth": {"username": "alice", "password": "s3cret"},
        }
        leg = hooked_server.api("POST", "/legs", body).json()
        end = webhook_receiver.wait_for("leg.disconnected", leg_id=leg["id"])
        assert uas.verdicts == [True], uas.authorizations
        assert end["cdr"]["reason"] == "busy"
        assert f"algorithm={algorithm}" in uas.authorizations[0].replace('"', "")
    finally:
        uas.close()


def test_wrong_password_ends_forbidden(
    hooked_server: ServerProcess, webhook_receiver: WebhookReceiver
) -> None:
    uas = ChallengingUas(401, "SHA-256", "alice", "s3cret")
    try:
        body = {
            "type": "sip",
            "uri": f"sip:bob@127.0.0.1:{uas.port}",
            "auth": {"username": "alice", "password": "nope"},
        }
        leg = hooked_server.api("POST", "/legs", body).json()
        end = webhook_receiver.wait_for("leg.disconnected", leg_id=leg["id"])
        assert uas.verdicts == [False]
        assert end["cdr"]["reason"] == "forbidden"
    finally:
        uas.close()
