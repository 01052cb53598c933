"""Structured header values: name-addr (From/To/Contact/Route...) and Via."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from callboard.sip.errors import SipParseError
from callboard.sip.grammar import (
    format_params,
    parse_params,
    quote,
    read_quoted,
    split_host_port,
    split_outside_quotes,
)
from callboard.sip.uri import SipUri

# sent-protocol of a Via: "SIP / 2.0 / UDP" with optional whitespace around the slashes.
_VIA_PROTOCOL_RE = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9.!%*_+`'~-]+)\s+", re.IGNORECASE)
_DEFAULT_VIA_PORTS = {"TLS": 5061, "WSS": 443, "WS": 80}


@dataclass
class NameAddr:
    uri: SipUri
    display_name: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise SipParseError("empty address")
        display_name: str | None = None
        if text.startswith('"'):
            display_name, end = read_quoted(text)
            rest = text[end:].lstrip()
            if not rest.startswith("<"):
                raise SipParseError(f"quoted display name without <uri>: {text!r}")
            lt = len(text) - len(rest)
        else:
            lt = text.find("<")
            if lt > 0:
                display_name = " ".join(text[:lt].split()) or None
        if lt < 0:
            # addr-spec form: every ;param after the URI is a header parameter (RFC 3261 20.10)
            uri_text, *segments = split_outside_quotes(text, ";")
            return cls(SipUri.parse(uri_text.strip()), None, parse_params(segments))
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError(f"missing '>' in {text!r}")
        uri = SipUri.parse(text[lt + 1 : gt])
        first, *segments = split_outside_quotes(text[gt + 1 :], ";")
        if first.strip():
            raise SipParseError(f"junk after '>' in {text!r}")
        return cls(uri, display_name, parse_params(segments))

    def __str__(self) -> str:
        prefix = f"{quote(self.display_name)} " if self.display_name is not None else ""
        return f"{prefix}<{self.uri}>{format_params(self.params)}"

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    def copy(self) -> NameAddr:
        return NameAddr(self.uri.copy(), self.display_name, dict(self.params))


def parse_name_addr_list(value: str) -> list[NameAddr]:
    return [NameAddr.parse(part) for part in split_outside_quotes(value, ",") if part.strip()]


@dataclass
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        first, *segments = split_outside_quotes(text.strip(), ";")
        match = _VIA_PROTOCOL_RE.match(first)
        if match is None:
            raise SipParseError(f"invalid Via: {text!r}")
        # COLON in sent-by may be surrounded by whitespace (RFC 3261 25.1 SWS)
        sent_by = ":".join(part.strip() for part in first[match.end() :].split(":"))
        if not sent_by:
            raise SipParseError(f"Via without sent-by: {text!r}")
        host, port = split_host_port(sent_by)
        return cls(match.group(1).upper(), host, port, parse_params(segments))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        """Host (without IPv6 brackets) and port, defaulted per transport."""
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return host, self.port if self.port is not None else _DEFAULT_VIA_PORTS.get(
            self.transport, 5060
        )

    def copy(self) -> Via:
        return Via(self.transport, self.host, self.port, dict(self.params))


def parse_via_list(value: str) -> list[Via]:
    return [Via.parse(part) for part in split_outside_quotes(value, ",") if part.strip()]
