"""REFER (RFC 3515, RFC 3891), sans-IO: what an incoming REFER asks for (its Refer-To target
and, for an attended transfer, the dialog its Replaces names); the Refer-To we send; and the
status line of the message/sipfrag NOTIFYs that report a transfer's progress."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from callboard.sip.errors import SipParseError
from callboard.sip.headers import NameAddr
from callboard.sip.message import SipRequest


@dataclass(frozen=True)
class Replaces:
    call_id: str
    to_tag: str
    from_tag: str


@dataclass(frozen=True)
class ReferTarget:
    target_uri: str  # the target without its URI headers
    replaces: Replaces | None

    @property
    def kind(self) -> str:
        return "attended" if self.replaces is not None else "blind"


def read_refer(request: SipRequest) -> ReferTarget:
    """The REFER's one Refer-To, read; SipParseError for none, several or a bad one."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        raise SipParseError(f"a REFER needs exactly one Refer-To, not {len(values)}")
    address = NameAddr.parse(values[0])
    uri = address.uri.copy()
    headers = {name.lower(): value for name, value in uri.headers.items()}
    uri.headers = {}
    replaces = headers.get("replaces")
    return ReferTarget(str(uri), parse_replaces(unquote(replaces)) if replaces else None)


def parse_replaces(value: str) -> Replaces:
    """`call-id;to-tag=x;from-tag=y` (RFC 3891 section 6.1)."""
    call_id, *params = (part.strip() for part in value.split(";"))
    tags = {}
    for param in params:
        name, _, tag = param.partition("=")
        tags[name.strip().lower()] = tag.strip()
    if not call_id or not tags.get("to-tag") or not tags.get("from-tag"):
        raise SipParseError(f"invalid Replaces: {value!r}")
    return Replaces(call_id, tags["to-tag"], tags["from-tag"])


def refer_to(target_uri: str, replaces: Replaces | None = None) -> str:
    """The Refer-To value for `target_uri`; attended: with the dialog to replace as its
    Replaces URI header, escaped (RFC 3891 section 6.1: tags from the target's side)."""
    if replaces is None:
        return f"<{target_uri}>"
    value = f"{replaces.call_id};to-tag={replaces.to_tag};from-tag={replaces.from_tag}"
    return f"<{target_uri}?Replaces={quote(value, safe='')}>"


_STATUS_LINE = re.compile(r"^SIP/2\.0\s+(\d{3})(?:\s+(.*))?$")


def read_sipfrag(body: bytes) -> tuple[int, str]:
    """(status code, reason) of a NOTIFY's message/sipfrag body ("SIP/2.0 180 Ringing");
    SipParseError when the first line is no status line."""
    first = body.decode("utf-8", "replace").lstrip().split("\n", 1)[0].strip()
    match = _STATUS_LINE.match(first)
    if match is None:
        raise SipParseError(f"not a sipfrag status line: {first[:60]!r}")
    return int(match.group(1)), (match.group(2) or "").strip()
