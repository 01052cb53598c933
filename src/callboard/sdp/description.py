"""SDP (RFC 8866) as plain data: parse what peers send, serialise what we send.

The parser is deliberately forgiving about the things real peers get wrong (LF-only line
endings, trailing blanks, missing ``s=``/``t=``, line types it has never heard of) and strict
about the things that leave no usable description (no ``v=``/``o=``/``m=``, numbers that are
not numbers, ports out of range, text that is not UTF-8, bodies far larger than any real
offer). Anything it cannot make sense of raises :class:`SdpError` and nothing else, because
the SIP layer turns that into a 400/488 rather than a crash.

Lines we do not interpret are kept verbatim in ``other_lines`` so that a description survives
``parse`` -> ``to_bytes`` with nothing lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Real offers are a few hundred bytes to a few KiB (WebRTC with many candidates ~10 KiB);
# anything beyond this is an attack or a bug, and parsing it would only cost us CPU.
MAX_SDP_BYTES = 64 * 1024

# Session ids are "numeric strings" (RFC 8866 §5.2); peers use up to 20 digits (64 bits).
# The cap keeps int() away from Python's huge-number limits on hostile input.
_MAX_NUMBER_DIGITS = 40

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_DIGITS = re.compile(r"[0-9]+")
_PORT = re.compile(r"([0-9]{1,5})(?:/([0-9]{1,5}))?")

# Where lines we keep verbatim go back on output (RFC 8866 §5 fixes the order): these ones
# belong right after s=; everything else we do not model goes after t= (session) or after
# b= (media), e.g. r=, z=, k= and unknown types.
_SESSION_EARLY_TYPES = frozenset("iuep")
_MEDIA_EARLY_TYPES = frozenset("i")


class SdpError(ValueError):
    """The text is not a session description we can work with."""


Attribute = tuple[str, str | None]


@dataclass
class Origin:
    """The ``o=`` line: who made this description and which revision it is."""

    username: str
    session_id: int
    session_version: int
    nettype: str
    addrtype: str
    address: str

    def to_line(self) -> str:
        return (
            f"o={self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


class _Attributes:
    """Look-ups shared by session and media level; attribute names compare case-insensitively
    because a few peers capitalise them and nothing is gained by refusing."""

    attributes: list[Attribute]

    def attribute(self, name: str) -> str | None:
        """Value of the first ``a=name:value``; ``None`` if absent or a flag (see has_attribute)."""
        wanted = name.lower()
        for key, value in self.attributes:
            if key.lower() == wanted:
                return value
        return None

    def attribute_values(self, name: str) -> list[str]:
        """Values of every ``a=name...`` line in order; a flag attribute gives ``""``."""
        wanted = name.lower()
        return [value or "" for key, value in self.attributes if key.lower() == wanted]

    def has_attribute(self, name: str) -> bool:
        wanted = name.lower()
        return any(key.lower() == wanted for key, _ in self.attributes)


@dataclass
class MediaDescription(_Attributes):
    """One ``m=`` section."""

    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None  # address of a media-level c= (may carry "/ttl")
    attributes: list[Attribute] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)  # "AS:64", as written after b=
    port_count: int | None = None  # the "/2" of "m=audio 49170/2 ..."
    other_lines: list[str] = field(default_factory=list)  # full lines, e.g. "i=voice"
    connection_addrtype: str | None = None  # "IP4"/"IP6"; None = infer from the address

    def lines(self) -> list[str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        out = [" ".join([f"m={self.media}", port, self.proto, *self.formats])]
        out += [line for line in self.other_lines if line[:1] in _MEDIA_EARLY_TYPES]
        if self.connection is not None:
            out.append(_connection_line(self.connection, self.connection_addrtype))
        out += [f"b={bandwidth}" for bandwidth in self.bandwidths]
        out += [line for line in self.other_lines if line[:1] not in _MEDIA_EARLY_TYPES]
        out += [_attribute_line(attribute) for attribute in self.attributes]
        return out


@dataclass
class SessionDescription(_Attributes):
    """A whole SDP body: session-level lines plus the ``m=`` sections in order."""

    origin: Origin
    session_name: str = "-"
    connection: str | None = None  # address of the session-level c=
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    bandwidths: list[str] = field(default_factory=list)
    timing: str = "0 0"
    other_lines: list[str] = field(default_factory=list)
    connection_addrtype: str | None = None

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        return _Parser(_decode(text)).parse()

    def lines(self) -> list[str]:
        # "s= " rather than "s=": RFC 8866 wants a non-empty name, a space is its own advice.
        out = ["v=0", self.origin.to_line(), f"s={self.session_name or ' '}"]
        out += [line for line in self.other_lines if line[:1] in _SESSION_EARLY_TYPES]
        if self.connection is not None:
            out.append(_connection_line(self.connection, self.connection_addrtype))
        out += [f"b={bandwidth}" for bandwidth in self.bandwidths]
        out.append(f"t={self.timing}")
        out += [line for line in self.other_lines if line[:1] not in _SESSION_EARLY_TYPES]
        out += [_attribute_line(attribute) for attribute in self.attributes]
        for media in self.media:
            out += media.lines()
        return out

    def to_bytes(self) -> bytes:
        lines = self.lines()
        for line in lines:
            # A CR/LF inside a value would smuggle extra lines (or SIP headers) onto the wire.
            if "\r" in line or "\n" in line:
                raise SdpError(f"line break inside an SDP value: {line[:40]!r}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _connection_line(address: str, addrtype: str | None) -> str:
    if addrtype is None:
        addrtype = "IP6" if ":" in address else "IP4"
    return f"c=IN {addrtype} {address}"


def _attribute_line(attribute: Attribute) -> str:
    name, value = attribute
    return f"a={name}" if value is None else f"a={name}:{value}"


def _decode(text: str | bytes) -> str:
    if isinstance(text, str):
        try:
            raw = text.encode("utf-8")  # lone surrogates could never go back on the wire
        except UnicodeEncodeError as exc:
            raise SdpError("SDP is not valid Unicode text") from exc
    else:
        raw = bytes(text)
    if len(raw) > MAX_SDP_BYTES:
        raise SdpError(f"SDP of {len(raw)} bytes exceeds {MAX_SDP_BYTES}")
    if isinstance(text, str):
        return text
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc


def _number(token: str, what: str) -> int:
    if not _DIGITS.fullmatch(token) or len(token) > _MAX_NUMBER_DIGITS:
        raise SdpError(f"bad {what}: {token[:40]!r}")
    return int(token)


def _parse_origin(value: str) -> Origin:
    fields = value.split()
    if len(fields) != 6:
        raise SdpError(f"o= needs 6 fields, got {len(fields)}")
    username, session_id, version, nettype, addrtype, address = fields
    return Origin(
        username=username,
        session_id=_number(session_id, "o= session id"),
        session_version=_number(version, "o= session version"),
        nettype=nettype,
        addrtype=addrtype,
        address=address,
    )


def _parse_connection(value: str) -> tuple[str, str]:
    """``c=IN IP4 192.0.2.1`` -> (address, addrtype)."""
    fields = value.split()
    if len(fields) != 3 or fields[0] != "IN":
        raise SdpError(f"bad c= line: {value[:60]!r}")
    return fields[2], fields[1]


def _parse_media(value: str) -> MediaDescription:
    fields = value.split()
    if len(fields) < 3:
        raise SdpError(f"m= needs media, port and proto: {value[:60]!r}")
    media, port_text, proto, *formats = fields
    match = _PORT.fullmatch(port_text)
    if match is None:
        raise SdpError(f"bad m= port: {port_text[:20]!r}")
    port = int(match.group(1))
    count = None if match.group(2) is None else int(match.group(2))
    if port > 65535 or count == 0:
        raise SdpError(f"m= port out of range: {port_text!r}")
    # Formats stay strings: they are payload type numbers only for RTP profiles.
    return MediaDescription(media=media, port=port, proto=proto, formats=formats, port_count=count)


def _parse_attribute(value: str) -> Attribute:
    name, colon, rest = value.partition(":")
    return (name, rest if colon else None)


def _early_first(lines: list[str], early: frozenset[str]) -> list[str]:
    # Serialisation regroups kept lines by RFC position; doing the same here means
    # parse(to_bytes(d)) == d holds for every parsed d.
    return [line for line in lines if line[:1] in early] + [
        line for line in lines if line[:1] not in early
    ]


class _Parser:
    def __init__(self, text: str) -> None:
        # A UTF-8 byte order mark is noise some Windows softphones prepend.
        raw_lines = _LINE_BREAK.split(text.removeprefix("\ufeff"))
        self.lines = [line for line in (raw.strip(" \t") for raw in raw_lines) if line]

    def parse(self) -> SessionDescription:
        if not self.lines or not self.lines[0].startswith("v="):
            raise SdpError("SDP must start with v=")
        if self.lines[0] != "v=0":
            raise SdpError(f"unsupported SDP version: {self.lines[0][:20]!r}")
        origin: Origin | None = None
        session_name: str | None = None
        timing: str | None = None
        session = SessionDescription(origin=Origin("-", 0, 0, "IN", "IP4", "0.0.0.0"))
        current: MediaDescription | None = None

        for line in self.lines[1:]:
            kind, value = self._split(line)
            if kind == "m":
                current = _parse_media(value)
                session.media.append(current)
            elif current is not None:
                self._media_line(current, kind, value, line)
            elif kind == "v":
                raise SdpError("second v= line (two descriptions in one body?)")
            elif kind == "o":
                if origin is not None:
                    raise SdpError("duplicate o= line")
                origin = _parse_origin(value)
            elif kind == "s":
                if session_name is not None:
                    raise SdpError("duplicate s= line")
                session_name = value
            elif kind == "c" and session.connection is None:
                session.connection, session.connection_addrtype = _parse_connection(value)
            elif kind == "b":
                session.bandwidths.append(value)
            elif kind == "t" and timing is None:
                timing = value
            elif kind == "a":
                session.attributes.append(_parse_attribute(value))
            else:
                session.other_lines.append(line)

        if origin is None:
            raise SdpError("SDP has no o= line")
        if not session.media:
            raise SdpError("SDP has no m= line")
        session.origin = origin
        session.session_name = "-" if session_name is None else session_name
        session.timing = "0 0" if timing is None else timing
        session.other_lines = _early_first(session.other_lines, _SESSION_EARLY_TYPES)
        for media in session.media:
            media.other_lines = _early_first(media.other_lines, _MEDIA_EARLY_TYPES)
        return session

    @staticmethod
    def _split(line: str) -> tuple[str, str]:
        if len(line) < 2 or line[1] != "=" or not line[0].isascii() or not line[0].isalpha():
            raise SdpError(f"not an SDP line: {line[:40]!r}")
        return line[0], line[2:]

    @staticmethod
    def _media_line(media: MediaDescription, kind: str, value: str, line: str) -> None:
        if kind in "vos":
            raise SdpError(f"{kind}= line inside a media section")
        if kind == "c" and media.connection is None:
            media.connection, media.connection_addrtype = _parse_connection(value)
        elif kind == "b":
            media.bandwidths.append(value)
        elif kind == "a":
            media.attributes.append(_parse_attribute(value))
        else:
            media.other_lines.append(line)
