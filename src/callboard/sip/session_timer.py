"""RFC 4028 session timers as plain values: who refreshes, how often, and when a session that
was not refreshed expires. The INVITE session arms and fires the timers."""

from __future__ import annotations

from dataclasses import dataclass

from callboard.sip.call_model import TimerSettings
from callboard.sip.message import SipRequest, SipResponse


def parse_session_expires(value: str | None) -> tuple[int, str | None] | None:
    """`Session-Expires: 1800;refresher=uac` -> (1800, "uac"); None if absent or bad."""
    if not value:
        return None
    head, *params = [p.strip() for p in value.split(";")]
    try:
        interval = int(head)
    except ValueError:
        return None
    refresher = None
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher":
            refresher = val.strip().lower() or None
    return interval, refresher


def option_tags(message: SipRequest | SipResponse, header: str) -> set[str]:
    tags: set[str] = set()
    for value in message.headers.get_all(header):
        tags.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tags


@dataclass
class SessionTimer:
    """The negotiated interval (None: no session timer) and whether we are the refresher."""

    settings: TimerSettings
    interval: int | None = None
    we_refresh: bool = False

    def from_uac_response(self, response: SipResponse) -> None:
        """Our INVITE's 2xx fixes the interval; with no refresher named, the UAC (we) refresh."""
        parsed = parse_session_expires(response.headers.get("Session-Expires"))
        if parsed is None:
            return
        self.interval, refresher = parsed
        self.we_refresh = refresher in (None, "uac")

    def uas_headers(self, request: SipRequest) -> list[tuple[str, str]]:
        """Negotiate from a request we answer 2xx (INVITE, re-INVITE, UPDATE); return the
        headers the 2xx carries."""
        parsed = parse_session_expires(request.headers.get("Session-Expires"))
        supports = "timer" in option_tags(request, "Supported")
        if parsed is None and not supports:
            return []
        refresher: str | None
        if parsed is None:
            interval, refresher = self.settings.session_expires, "uac"
        else:
            interval, refresher = parsed
            interval = max(interval, self.settings.min_se)
        if refresher is None:
            refresher = "uac" if supports else "uas"
        self.interval = interval
        # We are the UAS of this request: we refresh when it names the UAS.
        self.we_refresh = refresher == "uas"
        headers = [("Session-Expires", f"{interval};refresher={refresher}")]
        if supports:
            headers.append(("Require", "timer"))
        return headers

    def refresh_headers(self) -> list[tuple[str, str]]:
        """Headers of a re-INVITE we send: keep the interval and our role."""
        if self.interval is None:
            return []
        refresher = "uac" if self.we_refresh else "uas"
        return [
            ("Supported", "timer"),
            ("Session-Expires", f"{self.interval};refresher={refresher}"),
        ]

    def next_timer(self, now: float) -> tuple[str, float] | None:
        """("refresh", when) at half the interval if we refresh, else ("expire", when) a little
        before the interval ends (RFC 4028 10: minus min(32 s, a third)); None without one."""
        interval = self.interval
        if interval is None:
            return None
        if self.we_refresh:
            return "refresh", now + interval / 2
        return "expire", now + interval - min(32, interval / 3)
