"""What an outbound SIP call asks for, as the API (or a transfer we carry out) gives it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OutboundRequest:
    uri: str
    from_user: str | None = None
    privacy: str | None = None
    ring_timeout: int = 0
    max_duration: int = 0
    codecs: tuple[str, ...] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    auth_username: str | None = None
    auth_password: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = None
    room_id: str | None = None
    accept_dtmf: bool = True
    app_id: str | None = None
