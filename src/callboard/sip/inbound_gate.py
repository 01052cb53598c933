"""What an inbound SIP request must pass before it reaches the transaction layer (which would
answer an INVITE 100 Trying at once): the source allow-list (`SIP_ALLOWED_IPS`, refused 403 or,
with `SIP_SILENT_DROP`, not answered at all), and for a new INVITE a per-source rate limit and
the server's capacity (503 with Retry-After) and digest authentication (`SIP_INBOUND_USERS`).

Sans-IO: `screen()` returns None to let the request in, or the refusal, which the transport
sends statelessly (a scanner's flood leaves no transaction behind). Requests inside one of our
dialogs pass the allow-list: a peer we called may be outside it and still hang up.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from callboard.netaddr import IpNetwork, in_any, parse_ip
from callboard.sip.digest_server import DigestVerifier
from callboard.sip.message import SipRequest

log = logging.getLogger(__name__)

MAX_TRACKED_SOURCES = 65536  # rate-limit buckets kept; the least recently seen go first


@dataclass(frozen=True)
class GateRefusal:
    status: int  # 0: drop silently
    headers: tuple[tuple[str, str], ...] = ()
    reason: str = ""  # for the log and the counters


DROP = GateRefusal(0, reason="not allowed (dropped)")


class TokenBuckets:
    """A token bucket per source address: `rate` a second, up to `burst` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, source: str, now: float) -> bool:
        tokens, last = self._buckets.pop(source, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > MAX_TRACKED_SOURCES:
            self._buckets.popitem(last=False)
        return allowed


class InboundGate:
    def __init__(
        self,
        *,
        allowed: Iterable[IpNetwork] = (),
        silent_drop: bool = False,
        users: Mapping[str, str] | None = None,
        realm: str = "callboard",
        invite_rate: float = 0.0,
        invite_burst: int = 1,
        in_dialog: Callable[[str, str], bool] = lambda call_id, tag: False,
        at_capacity: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._allowed = list(allowed)
        self.silent_drop = silent_drop
        self._digest = DigestVerifier(users, realm) if users else None
        self._buckets = TokenBuckets(invite_rate, invite_burst) if invite_rate > 0 else None
        self.in_dialog = in_dialog  # (call_id, our tag) names one of our calls
        self.at_capacity = at_capacity  # why no new call can be taken now, or None

    def _allowed_source(self, host: str) -> bool:
        if not self._allowed:
            return True
        address = parse_ip(host)
        return address is not None and in_any(address, self._allowed)

    def screen(self, request: SipRequest, source: str, now: float) -> GateRefusal | None:
        tag = request.to_addr.tag
        if not self._allowed_source(source) and not (tag and self.in_dialog(request.call_id, tag)):
            if request.method == "ACK" or self.silent_drop:
                return DROP
            return GateRefusal(403, reason="source not allowed")
        if request.method != "INVITE" or tag:
            return None  # re-INVITEs belong to calls already let in
        if self._buckets is not None and not self._buckets.take(source, now):
            retry = max(1, round(1 / self._buckets.rate))
            return GateRefusal(503, (("Retry-After", str(retry)),), "INVITE rate limit")
        busy = self.at_capacity()
        if busy is not None:
            return GateRefusal(503, (("Retry-After", "5"),), busy)
        if self._digest is not None:
            outcome = self._digest.verify(request, now)
            if outcome.refused:
                return GateRefusal(403, reason="bad credentials")
            if not outcome.accepted:
                headers = tuple(("WWW-Authenticate", value) for value in outcome.challenge)
                return GateRefusal(401, headers, "authentication required")
        return None
