"""Requests the transaction layer derives from an INVITE: CANCEL (RFC 3261 9.1) and the ACK
for a non-2xx final response (17.1.1.3). Both reuse the INVITE's top Via, so the next hop
matches them to the INVITE's transaction."""

from __future__ import annotations

from callboard.sip.header_map import Headers
from callboard.sip.message import SipRequest, SipResponse


def _derived(invite: SipRequest, method: str, to_value: str) -> SipRequest:
    source = invite.headers
    headers = Headers()
    headers.add("Via", str(invite.top_via))
    for route in source.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", source.get("From") or "")
    headers.add("To", to_value)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq[0]} {method}")
    return SipRequest(method, invite.uri.copy(), headers)


def build_cancel(invite: SipRequest) -> SipRequest:
    return _derived(invite, "CANCEL", invite.headers.get("To") or "")


def build_non_2xx_ack(invite: SipRequest, response: SipResponse) -> SipRequest:
    # The To comes from the response: it carries the tag of the UAS that rejected us.
    return _derived(invite, "ACK", response.headers.get("To") or "")
