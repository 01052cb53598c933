"""`Headers`: the ordered, case-insensitive multi-map of a SIP message's header fields."""

from __future__ import annotations

from collections.abc import Iterator

_CANONICAL_NAMES = (
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "SIP-ETag",
    "SIP-If-Match",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
)

# RFC 3261 7.3.3 and later extensions.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

# lower-case spelling (long or compact) -> (lookup key, canonical spelling)
_BY_LOWER: dict[str, tuple[str, str]] = {
    name.lower(): (name.lower(), name) for name in _CANONICAL_NAMES
} | {short: (long.lower(), long) for short, long in COMPACT_FORMS.items()}


def canonical_name(name: str) -> tuple[str, str]:
    """Return (lookup key, spelling to emit); unknown names keep their spelling."""
    lower = name.lower()
    known = _BY_LOWER.get(lower)
    return known if known is not None else (lower, name)


def _key(name: str) -> str:
    lower = name.lower()
    known = _BY_LOWER.get(lower)
    return known[0] if known is not None else lower


class Headers:
    """Header fields in wire order; lookups ignore case and accept compact forms."""

    __slots__ = ("_fields",)

    def __init__(self, fields: list[tuple[str, str]] | None = None) -> None:
        self._fields: list[tuple[str, str, str]] = []  # (key, name, value)
        for name, value in fields or ():
            self.add(name, value)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = _key(name)
        for field_key, _, value in self._fields:
            if field_key == key:
                return value
        return default

    def get_all(self, name: str) -> list[str]:
        key = _key(name)
        return [value for field_key, _, value in self._fields if field_key == key]

    def add(self, name: str, value: str) -> None:
        key, spelling = canonical_name(name)
        self._fields.append((key, spelling, value))

    def insert(self, name: str, value: str) -> None:
        key, spelling = canonical_name(name)
        index = next((i for i, f in enumerate(self._fields) if f[0] == key), 0)
        self._fields.insert(index, (key, spelling, value))

    def set(self, name: str, value: str) -> None:
        """Replace every field of that name with one, kept where the first one was."""
        key, spelling = canonical_name(name)
        new_fields: list[tuple[str, str, str]] = []
        placed = False
        for field in self._fields:
            if field[0] != key:
                new_fields.append(field)
            elif not placed:
                new_fields.append((key, spelling, value))
                placed = True
        if not placed:
            new_fields.append((key, spelling, value))
        self._fields = new_fields

    def replace_first(self, name: str, value: str) -> None:
        """Replace only the first field of that name (e.g. the top Via line)."""
        key, spelling = canonical_name(name)
        for i, field in enumerate(self._fields):
            if field[0] == key:
                self._fields[i] = (key, spelling, value)
                return
        raise KeyError(name)

    def remove(self, name: str) -> None:
        key = _key(name)
        self._fields = [f for f in self._fields if f[0] != key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(f[0] == key for f in self._fields)

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _, name, value in self._fields]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._fields)

    def copy(self) -> Headers:
        clone = Headers()
        clone._fields = list(self._fields)
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._fields] == [(k, v) for k, _, v in other._fields]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
