"""Dialog state and in-dialog request construction (RFC 3261 section 12)."""

from __future__ import annotations

from collections.abc import Iterable

from callboard.sip.errors import SipParseError
from callboard.sip.header_map import Headers
from callboard.sip.headers import NameAddr, Via
from callboard.sip.message import SipMessage, SipRequest, SipResponse
from callboard.sip.uri import SipUri

# Requests that do not take a new local CSeq number (RFC 3261 12.2.1.1, 9.1).
_NO_NEW_CSEQ = frozenset({"ACK", "CANCEL"})


class Dialog:
    """Malformed Contact or Record-Route values raise SipParseError from the constructors and
    `update_remote_target`; a missing Contact falls back to the peer's address-of-record."""

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        remote_target: SipUri,
        route_set: list[NameAddr],
        local_cseq: int,
        remote_cseq: int | None,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_uri = local_uri
        self.remote_uri = remote_uri
        self.local_uri.tag = local_tag or None
        self.remote_uri.tag = remote_tag or None
        self.remote_target = remote_target
        self.route_set = route_set
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq

    @classmethod
    def from_uac_response(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a 2xx or 101-199 with a To tag creates for the UAC (RFC 3261 12.1.2)."""
        local = request.from_addr
        remote = response.to_addr
        contacts = response.contacts()
        return cls(
            call_id=request.call_id,
            local_tag=local.tag or "",
            remote_tag=remote.tag or "",
            local_uri=local,
            remote_uri=remote,
            remote_target=contacts[0].uri if contacts else request.uri.copy(),
            route_set=list(reversed(response.record_routes())),
            local_cseq=request.cseq[0],
            remote_cseq=None,
        )

    @classmethod
    def from_uas_request(cls, request: SipRequest, local_tag: str) -> Dialog:
        """The dialog the UAS creates when it answers `request` (RFC 3261 12.1.1)."""
        remote = request.from_addr
        contacts = request.contacts()
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote.tag or "",
            local_uri=request.to_addr,
            remote_uri=remote,
            remote_target=contacts[0].uri if contacts else remote.uri.copy(),
            route_set=request.record_routes(),
            local_cseq=0,  # empty until we send our first request; it then becomes 1
            remote_cseq=request.cseq[0],
        )

    def create_request(
        self,
        method: str,
        *,
        via: Via,
        contact: NameAddr | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> SipRequest:
        if method not in _NO_NEW_CSEQ:
            self.local_cseq += 1
        return self._build(method, self.local_cseq, via, contact, body, content_type, extra_headers)

    def create_ack(
        self,
        invite_cseq: int,
        *,
        via: Via,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipRequest:
        """The ACK for a 2xx to the INVITE with CSeq `invite_cseq` (RFC 3261 13.2.2.4)."""
        return self._build("ACK", invite_cseq, via, None, body, content_type, ())

    def _build(
        self,
        method: str,
        cseq: int,
        via: Via,
        contact: NameAddr | None,
        body: bytes,
        content_type: str | None,
        extra_headers: Iterable[tuple[str, str]],
    ) -> SipRequest:
        request_uri, routes = self._request_target()
        headers = Headers()
        headers.add("Via", str(via))
        headers.add("Max-Forwards", "70")
        for route in routes:
            headers.add("Route", str(route))
        headers.add("From", str(self.local_uri))
        headers.add("To", str(self.remote_uri))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{cseq} {method}")
        if contact is not None:
            headers.add("Contact", str(contact))
        if content_type is not None:
            headers.add("Content-Type", content_type)
        for name, value in extra_headers:
            headers.add(name, value)
        return SipRequest(method, request_uri, headers, body)

    def _request_target(self) -> tuple[SipUri, list[NameAddr]]:
        """Request-URI and Route values per RFC 3261 12.2.1.1."""
        if not self.route_set:
            return self.remote_target.copy(), []
        first = self.route_set[0]
        if "lr" in first.uri.params:
            return self.remote_target.copy(), [route.copy() for route in self.route_set]
        # A strict router expects itself in the Request-URI and the target as the last Route.
        request_uri = first.uri.copy()
        request_uri.headers = {}
        request_uri.params.pop("method", None)
        routes = [route.copy() for route in self.route_set[1:]]
        routes.append(NameAddr(self.remote_target.copy()))
        return request_uri, routes

    def next_hop(self) -> tuple[str, int, str]:
        """Where in-dialog requests go: the first Route if any, else the remote target."""
        uri = self.route_set[0].uri if self.route_set else self.remote_target
        host, port = uri.host_port()
        return host, port, uri.transport

    def check_remote_cseq(self, request: SipRequest) -> bool:
        """False for an out-of-order request (the caller answers 500, RFC 3261 12.2.2)."""
        if request.method in _NO_NEW_CSEQ:
            return True
        seq = request.cseq[0]
        if self.remote_cseq is not None and seq < self.remote_cseq:
            return False
        self.remote_cseq = seq
        return True

    def update_remote_target(self, message: SipMessage) -> None:
        contacts = message.contacts()
        if contacts:
            self.remote_target = contacts[0].uri

    def matches(self, message: SipMessage) -> bool:
        """Whether `message` belongs to this dialog: a request from the peer, or a response
        to one of our requests."""
        try:
            if message.call_id != self.call_id:
                return False
            from_tag = message.from_addr.tag or ""
            to_tag = message.to_addr.tag or ""
        except SipParseError:
            return False
        if isinstance(message, SipRequest):
            return from_tag == self.remote_tag and to_tag == self.local_tag
        return from_tag == self.local_tag and to_tag == self.remote_tag

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} local={self.local_tag} remote={self.remote_tag}>"
