"""Small lexical helpers shared by the SIP parsers (RFC 3261 section 25).

Everything here is a single linear pass: no regex that can backtrack on hostile input.
"""

from __future__ import annotations

import re

from callboard.sip.errors import SipParseError

_TOKEN_RE = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")
# Hostname or IPv4 address; IPv6 references are checked separately.
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_IPV6_REFERENCE_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


def is_host(text: str) -> bool:
    return (
        _HOSTNAME_RE.fullmatch(text) is not None or _IPV6_REFERENCE_RE.fullmatch(text) is not None
    )


def split_host_port(text: str) -> tuple[str, int | None]:
    """Split "host[:port]" (IPv6 in brackets); the host is validated, brackets kept."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference: {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"junk after IPv6 reference: {text!r}")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = text.partition(":")
        port_text = port_text_raw if colon else None
    if not is_host(host):
        raise SipParseError(f"invalid host: {host!r}")
    if port_text is None:
        return host, None
    return host, parse_port(port_text)


def parse_port(text: str) -> int:
    if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
        raise SipParseError(f"invalid port: {text!r}")
    port = int(text)
    if not 1 <= port <= 65535:
        raise SipParseError(f"port out of range: {port}")
    return port


def split_outside_quotes(text: str, separator: str) -> list[str]:
    """Split on `separator` where it is not inside a quoted string or <...>."""
    if '"' not in text and "<" not in text:
        return text.split(separator)
    parts: list[str] = []
    start = 0
    in_quotes = False
    in_angle = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quotes:
            if ch == "\\":
                i += 1  # the escaped character cannot end the string
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif in_angle:
            if ch == ">":
                in_angle = False
        elif ch == "<":
            in_angle = True
        elif ch == separator:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_quotes:
        raise SipParseError(f"unterminated quoted string: {text!r}")
    if in_angle:
        raise SipParseError(f"unterminated <: {text!r}")
    parts.append(text[start:])
    return parts


def parse_params(segments: list[str]) -> dict[str, str | None]:
    """Parse `;name=value` segments (already split); names lowercased, values as written."""
    params: dict[str, str | None] = {}
    for segment in segments:
        name, eq, value = segment.partition("=")
        name = name.strip().lower()
        if not is_token(name):
            raise SipParseError(f"invalid parameter: {segment.strip()!r}")
        params[name] = value.strip() if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(
        f";{name}" if value is None else f";{name}={value}" for name, value in params.items()
    )


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_quoted(text: str, start: int = 0) -> tuple[str, int]:
    """Read the quoted string beginning at text[start] == '"'; return (unescaped, index after)."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError(f"unterminated quoted string: {text!r}")


def unquote(text: str) -> str:
    """Strip the quotes of a quoted-string value; unquoted text is returned unchanged."""
    if text.startswith('"'):
        value, end = read_quoted(text)
        if end != len(text):
            raise SipParseError(f"junk after quoted string: {text!r}")
        return value
    return text
