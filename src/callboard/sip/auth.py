"""Digest access authentication for SIP clients (RFC 2617, RFC 7616 SHA-256, RFC 3261 22).

The client side: answer a 401/407 challenge with Authorization / Proxy-Authorization. The
server side (challenging inbound INVITEs) is `digest_server.py`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from callboard.sip.errors import SipParseError
from callboard.sip.grammar import quote, split_outside_quotes, unquote

_ALGORITHMS: dict[str, str] = {
    "MD5": "MD5",
    "MD5-SESS": "MD5-sess",
    "SHA-256": "SHA-256",
    "SHA-256-SESS": "SHA-256-sess",
}
# Higher is preferred when a server offers several challenges (RFC 7616 3.7).
_STRENGTH = {"MD5": 0, "MD5-sess": 0, "SHA-256": 1, "SHA-256-sess": 1}


@dataclass
class DigestChallenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, header_value: str) -> DigestChallenge:
        params = digest_params(header_value)
        realm = params.get("realm")
        nonce = params.get("nonce")
        if realm is None or not nonce:
            raise SipParseError("Digest challenge without realm or nonce")
        algorithm = _ALGORITHMS.get(params.get("algorithm", "MD5").upper())
        if algorithm is None:
            raise SipParseError(f"unsupported digest algorithm: {params['algorithm'][:20]!r}")
        qop = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
        stale = params.get("stale", "").lower() == "true"
        return cls(realm, nonce, algorithm, qop, params.get("opaque"), stale)


def digest_params(header_value: str) -> dict[str, str]:
    """The parameters of a `Digest ...` challenge or credentials, names lower-cased."""
    scheme, _, rest = header_value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise SipParseError(f"not Digest: {scheme[:20]!r}")
    params: dict[str, str] = {}
    for part in split_outside_quotes(rest, ","):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        if not eq:
            raise SipParseError(f"malformed digest parameter: {part.strip()[:40]!r}")
        params[name.strip().lower()] = unquote(value.strip())
    return params


def hasher(algorithm: str) -> Callable[[str | bytes], str]:
    name = "sha256" if algorithm.startswith("SHA-256") else "md5"

    def digest(data: str | bytes) -> str:
        return hashlib.new(name, data.encode() if isinstance(data, str) else data).hexdigest()

    return digest


def choose_qop(offered: list[str]) -> str | None:
    if "auth" in offered:
        return "auth"
    if "auth-int" in offered:
        return "auth-int"
    return None


def build_authorization(
    challenge: DigestChallenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nc: int = 1,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`."""
    h = hasher(challenge.algorithm)
    qop = choose_qop(challenge.qop)
    session = challenge.algorithm.endswith("-sess")
    if (qop is not None or session) and cnonce is None:
        cnonce = secrets.token_hex(8)
    ha1 = h(f"{username}:{challenge.realm}:{password}")
    if session:
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    a2 = f"{method}:{uri}:{h(body)}" if qop == "auth-int" else f"{method}:{uri}"
    ha2 = h(a2)
    nc_text = f"{nc:08x}"
    if qop is None:
        response = h(f"{ha1}:{challenge.nonce}:{ha2}")  # RFC 2069 compatibility
    else:
        response = h(f"{ha1}:{challenge.nonce}:{nc_text}:{cnonce}:{qop}:{ha2}")
    parts = [
        f"username={quote(username)}",
        f"realm={quote(challenge.realm)}",
        f"nonce={quote(challenge.nonce)}",
        f"uri={quote(uri)}",
        f"response={quote(response)}",
        f"algorithm={challenge.algorithm}",
    ]
    if cnonce is not None:
        parts.append(f"cnonce={quote(cnonce)}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)


def pick_challenge(values: list[str]) -> DigestChallenge:
    """The strongest supported Digest challenge among several header values."""
    best: DigestChallenge | None = None
    for value in values:
        try:
            challenge = DigestChallenge.parse(value)
        except SipParseError:
            continue  # another scheme or algorithm we cannot answer; try the next one
        if best is None or _STRENGTH[challenge.algorithm] > _STRENGTH[best.algorithm]:
            best = challenge
    if best is None:
        raise SipParseError("no usable Digest challenge")
    return best
