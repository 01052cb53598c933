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
    """A dialog to replace, its tags as the receiver of the INVITE sees them: the to-tag is
    the receiver's own (RFC 3891 section 3)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False  # replace only a dialog that is not confirmed yet

    def header_value(self) -> str:
        """As a Replaces header field value (RFC 3891 section 6.1)."""
        value = f"{self.call_id};to-tag={self.to_tag};from-tag={self.from_tag}"
        return value + ";early-only" if self.early_only else value


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
        raise SipParseError(f"invalid Replaces: {value[:80]!r}")
    return Replaces(call_id, tags["to-tag"], tags["from-tag"], "early-only" in tags)


def refer_to(target_uri: str, replaces: Replaces | None = None) -> str:
    """The Refer-To value for `target_uri`; attended: with the dialog to replace as its
    Replaces URI header, escaped (RFC 3891 section 6.1: tags from the target's side)."""
    if replaces is None:
        return f"<{target_uri}>"
    return f"<{target_uri}?Replaces={quote(replaces.header_value(), safe='')}>"


_STATUS_LINE = re.compile(r"^SIP/2\.0\s+(\d{3})(?:\s+(.*))?$")


def read_sipfrag(body: bytes) -> tuple[int, str]:
    """(status code, reason) of a NOTIFY's message/sipfrag body ("SIP/2.0 180 Ringing");
    SipParseError when the first line is no status line."""
    first = body.decode("utf-8", "replace").lstrip().split("\n", 1)[0].strip()
    match = _STATUS_LINE.match(first)
    if match is None:
        raise SipParseError(f"not a sipfrag status line: {first[:60]!r}")
    return int(match.group(1)), (match.group(2) or "").strip()


def sipfrag(status: int, reason: str) -> bytes:
    """The message/sipfrag body of a NOTIFY that reports our call to a REFER's target."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()


REFER_EXPIRES = 60  # seconds the implicit subscription lasts (RFC 3515 section 2.4.4)


def notify_headers(final: bool) -> list[tuple[str, str]]:
    """Event and Subscription-State of a NOTIFY in a REFER's implicit subscription; the one
    with the final status ends it."""
    state = "terminated;reason=noresource" if final else f"active;expires={REFER_EXPIRES}"
    return [("Event", "refer"), ("Subscription-State", state)]
