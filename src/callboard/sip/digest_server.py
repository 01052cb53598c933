"""Digest authentication of inbound INVITEs (RFC 3261 22.4, RFC 7616), sans-IO and stateless:
a nonce is its issue time signed with a per-process secret, so a flood of unauthenticated
INVITEs costs no memory. MD5 and SHA-256 challenges are both offered; qop=auth or none.

A nonce is good for NONCE_LIFETIME seconds; an older one gets a fresh challenge marked stale.
Credentials that let an INVITE in are remembered for that long, so that a captured INVITE
sent again (a new branch, the same nonce, count and client nonce) is challenged instead of
placing another call; that memory holds only accepted INVITEs, so it costs an attacker
without the password nothing. The same branch again is a retransmission, which the
transaction layer absorbs: it passes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from callboard.sip.auth import digest_params, hasher
from callboard.sip.errors import SipParseError
from callboard.sip.grammar import quote
from callboard.sip.message import SipRequest

NONCE_LIFETIME = 300.0
REMEMBERED_CREDENTIALS = 100_000  # accepted INVITEs' credentials, the oldest forgotten first
# MD5 first: SIPp and many phones answer only the first challenge and know only MD5; clients
# that know SHA-256 pick it from the second (RFC 7616 3.7: the strongest they support).
_ALGORITHMS = ("MD5", "SHA-256")


@dataclass(frozen=True)
class DigestOutcome:
    user: str | None = None  # the authenticated user, when accepted
    challenge: tuple[str, ...] = ()  # WWW-Authenticate values, for a 401
    refused: bool = False  # credentials that can never be right: 403

    @property
    def accepted(self) -> bool:
        return self.user is not None


class DigestVerifier:
    def __init__(self, users: Mapping[str, str], realm: str, secret: bytes | None = None) -> None:
        self._users = dict(users)
        self.realm = realm
        self._secret = secret or secrets.token_bytes(32)
        # (nonce, nc, cnonce, response) -> (the branch it came with, when), oldest first
        self._used: OrderedDict[tuple[str, ...], tuple[str, float]] = OrderedDict()

    def _nonce(self, now: float) -> str:
        stamp = f"{int(now):x}"
        mac = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{stamp}.{mac}"

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since we issued `nonce`; None if we did not."""
        stamp, _, mac = nonce.partition(".")
        expected = hmac.new(self._secret, stamp.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        try:
            return now - int(stamp, 16)
        except ValueError:
            return None

    def challenge(self, now: float, *, stale: bool = False) -> tuple[str, ...]:
        nonce = self._nonce(now)
        extra = ", stale=true" if stale else ""
        return tuple(
            f"Digest realm={quote(self.realm)}, nonce={quote(nonce)}, algorithm={algorithm}, "
            f'qop="auth"{extra}'
            for algorithm in _ALGORITHMS
        )

    def verify(self, request: SipRequest, now: float) -> DigestOutcome:
        value = request.headers.get("Authorization")
        if not value:
            return DigestOutcome(challenge=self.challenge(now))
        try:
            params = digest_params(value)
        except SipParseError:
            return DigestOutcome(challenge=self.challenge(now))
        user = params.get("username", "")
        password = self._users.get(user)
        algorithm = params.get("algorithm", "MD5").upper()
        if password is None or algorithm not in _ALGORITHMS or params.get("realm") != self.realm:
            return DigestOutcome(refused=True)
        age = self._nonce_age(params.get("nonce", ""), now)
        if age is None or not -5 <= age <= NONCE_LIFETIME:
            return DigestOutcome(challenge=self.challenge(now, stale=age is not None))
        h = hasher(algorithm)
        ha1 = h(f"{user}:{self.realm}:{password}")
        ha2 = h(f"{request.method}:{params.get('uri', '')}")
        qop = params.get("qop", "").lower()
        nonce = params["nonce"]
        if qop == "auth":
            nc, cnonce = params.get("nc", ""), params.get("cnonce", "")
            expected = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        elif not qop:
            expected = h(f"{ha1}:{nonce}:{ha2}")
        else:
            return DigestOutcome(refused=True)  # auth-int is not offered
        response = params.get("response", "").lower()
        if not hmac.compare_digest(expected.encode(), response.encode()):
            return DigestOutcome(refused=True)
        key = (nonce, params.get("nc", ""), params.get("cnonce", ""), response)
        branch = request.top_via.branch or ""
        if self._replayed(key, branch, now):
            return DigestOutcome(challenge=self.challenge(now))
        return DigestOutcome(user=user)

    def _replayed(self, key: tuple[str, ...], branch: str, now: float) -> bool:
        used = self._used
        # Forget, oldest first, what no nonce still good could match, and past the cap.
        while used:
            _, when = next(iter(used.values()))
            if len(used) < REMEMBERED_CREDENTIALS and now - when <= NONCE_LIFETIME + 5:
                break
            used.popitem(last=False)
        first = used.get(key)
        if first is None:
            used[key] = (branch, now)
            return False
        return first[0] != branch
