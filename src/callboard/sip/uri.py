"""SIP and SIPS URIs (RFC 3261 section 19.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from callboard.sip.errors import SipParseError
from callboard.sip.grammar import format_params, is_token, split_host_port

# URIs never contain whitespace or control characters; escapes must be used instead.
_FORBIDDEN_RE = re.compile(r"[\x00-\x20\x7f<>\"]")

DEFAULT_PORTS = {"sip": 5060, "sips": 5061}


@dataclass
class SipUri:
    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> SipUri:
        if _FORBIDDEN_RE.search(text):
            raise SipParseError(f"invalid character in URI: {text!r}")
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in DEFAULT_PORTS:
            raise SipParseError(f"not a SIP URI: {text!r}")
        user: str | None = None
        password: str | None = None
        # '@' is never legal unescaped after the userinfo, while the user part may contain
        # ';' and '?', so the first '@' is the only reliable delimiter.
        at = rest.find("@")
        if at >= 0:
            user_text, colon, password_text = rest[:at].partition(":")
            if not user_text:
                raise SipParseError(f"empty user in URI: {text!r}")
            user = user_text
            password = password_text if colon else None
            rest = rest[at + 1 :]
        rest, question, header_text = rest.partition("?")
        hostport, *param_segments = rest.split(";")
        if not hostport:
            raise SipParseError(f"missing host in URI: {text!r}")
        host, port = split_host_port(hostport)
        params: dict[str, str | None] = {}
        for segment in param_segments:
            name, eq, value = segment.partition("=")
            if not is_token(name):
                raise SipParseError(f"invalid URI parameter {segment!r} in {text!r}")
            params[name.lower()] = value if eq else None
        headers: dict[str, str] = {}
        if question:
            for pair in header_text.split("&"):
                name, eq, value = pair.partition("=")
                if not name or not eq:
                    raise SipParseError(f"invalid URI header {pair!r} in {text!r}")
                headers[name] = value
        return cls(scheme, user, password, host, port, params, headers)

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += [":", self.password]
            parts.append("@")
        parts.append(self.host)
        if self.port is not None:
            parts += [":", str(self.port)]
        if self.params:
            parts.append(format_params(self.params))
        if self.headers:
            parts += ["?", "&".join(f"{name}={value}" for name, value in self.headers.items())]
        return "".join(parts)

    @property
    def transport(self) -> str:
        value = self.params.get("transport")
        return value.lower() if value else "udp"

    def host_port(self) -> tuple[str, int]:
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else DEFAULT_PORTS[self.scheme]

    def copy(self) -> SipUri:
        return SipUri(
            self.scheme,
            self.user,
            self.password,
            self.host,
            self.port,
            dict(self.params),
            dict(self.headers),
        )
