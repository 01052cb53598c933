"""Sans-IO steps a transport applies to what it receives, before the transaction layer:
stamping the top Via with the source address (RFC 3261 18.2.1, RFC 3581) and reading enough
of a malformed request to answer it with an error (RFC 3261 8.2, 21.4.1)."""

from __future__ import annotations

import re

from callboard.sip.errors import SipParseError
from callboard.sip.grammar import is_token
from callboard.sip.header_map import Headers
from callboard.sip.headers import NameAddr, parse_via_list
from callboard.sip.identifiers import generate_tag
from callboard.sip.message import (
    MAX_MESSAGE_SIZE,
    SipRequest,
    SipResponse,
    find_head_end,
    make_response,
    parse_cseq,
)
from callboard.sip.uri import SipUri

_CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_WARNING_TEXT_RE = re.compile(r"[\x00-\x1f\x7f\"\\]")


def stamp_via_source(request: SipRequest, source: tuple[str, int]) -> None:
    """Add `received` (and fill a bare `rport`) to the top Via when the source differs."""
    via = request.top_via
    ip, port = source
    if "rport" in via.params and via.params["rport"] is None:
        # RFC 3581 4: with rport, received is added even when it equals sent-by.
        via.params["rport"] = str(port)
        via.params["received"] = ip
    elif via.host.strip("[]").lower() != ip.lower():
        via.params["received"] = ip
    else:
        return
    request.replace_top_via(via)


def salvage_request(data: bytes) -> SipRequest | None:
    """A request holding only the Via, From, To, Call-ID and CSeq of a malformed request, if
    its start line, Via, Call-ID and CSeq can be read and it is not an ACK; else None."""
    head = data[:MAX_MESSAGE_SIZE].lstrip(b"\r\n")
    found = find_head_end(head)
    if found is not None:
        head = head[: found[0]]
    lines = _unfold(head.decode("utf-8", "replace"))
    if not lines:
        return None
    start = lines[0].split()
    if len(start) != 3 or not is_token(start[0]) or start[0] == "ACK":
        return None
    if not start[2].upper().startswith("SIP/"):
        return None
    picked = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() in _SALVAGED and not _CONTROL_RE.search(value):
            picked.add(name.strip(), value.strip())
    try:
        if not any(parse_via_list(v) for v in picked.get_all("Via")):
            return None
        call_id = picked.get("Call-ID") or ""
        if len(call_id.split()) != 1:
            return None
        parse_cseq(picked.get("CSeq") or "")
    except SipParseError:
        return None
    for name in ("From", "To"):
        address = picked.get(name)
        if address is not None and not _parses(address):
            picked.remove(name)
    try:
        uri = SipUri.parse(start[1])
    except SipParseError:
        uri = SipUri(host="invalid")  # only used to build the error response
    return SipRequest(start[0], uri, picked)


def error_response(request: SipRequest, error: SipParseError, agent: str) -> SipResponse:
    """The stateless answer to a malformed request, the parse error in a Warning."""
    text = _WARNING_TEXT_RE.sub(" ", str(error))[:120]
    return make_response(
        request,
        error.status,
        to_tag=generate_tag(),
        extra_headers=[("Warning", f'399 {agent} "{text}"')],
    )


_SALVAGED = frozenset(
    {"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"},
)


def _parses(value: str) -> bool:
    try:
        NameAddr.parse(value)
    except SipParseError:
        return False
    return True


def _unfold(text: str) -> list[str]:
    lines: list[list[str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and lines:
            lines[-1].append(line.strip())
        else:
            lines.append([line.rstrip()])
    return [" ".join(parts) for parts in lines]
