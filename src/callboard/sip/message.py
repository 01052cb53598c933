"""SIP messages: the model, the parser, serialisation, stream framing and response building.

RFC 3261 sections 7, 8.2.6 and 18.3. Parsing is one linear pass over the header section;
structured values (Via, From, To...) are parsed on access from the stored header text, so
editing `headers` is always reflected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from callboard.sip.errors import SipParseError
from callboard.sip.grammar import is_token, split_outside_quotes
from callboard.sip.header_map import Headers
from callboard.sip.headers import NameAddr, Via, parse_name_addr_list, parse_via_list
from callboard.sip.identifiers import generate_branch, generate_call_id, generate_tag
from callboard.sip.reason_phrases import REASON_PHRASES, default_reason
from callboard.sip.uri import SipUri

__all__ = [
    "MAX_MESSAGE_SIZE",
    "REASON_PHRASES",
    "Headers",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamFramer",
    "generate_branch",
    "generate_call_id",
    "generate_tag",
    "make_response",
    "parse_cseq",
    "parse_message",
]

MAX_MESSAGE_SIZE = 65535
MANDATORY_HEADERS = ("Via", "From", "To", "Call-ID", "CSeq")
# Record-Route is echoed in responses to these (RFC 3261 12.1.1, RFC 6665, RFC 3515).
DIALOG_CREATING_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER"})
# After CRLF normalisation only HTAB and LF are legal control characters in a header section.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_MAX_CSEQ = 2**31


class SipMessage:
    __slots__ = ("body", "headers")

    def __init__(self, headers: Headers | None = None, body: bytes = b"") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def start_line(self) -> str:
        raise NotImplementedError

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value

    @property
    def call_id(self) -> str:
        return self._required("Call-ID").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        return parse_cseq(self._required("CSeq"))

    @property
    def from_addr(self) -> NameAddr:
        """A fresh parse: edit `headers` to change the message."""
        return NameAddr.parse(self._required("From"))

    @property
    def to_addr(self) -> NameAddr:
        return NameAddr.parse(self._required("To"))

    @property
    def vias(self) -> list[Via]:
        return [via for line in self.headers.get_all("Via") for via in parse_via_list(line)]

    @property
    def top_via(self) -> Via:
        vias = parse_via_list(self._required("Via"))
        if not vias:
            raise SipParseError("empty Via header")
        return vias[0]

    def replace_top_via(self, via: Via) -> None:
        """Rewrite the first Via value, leaving others on the same line untouched."""
        first_line = self._required("Via")
        rest = split_outside_quotes(first_line, ",")[1:]
        self.headers.replace_first("Via", ", ".join([str(via), *(v.strip() for v in rest)]))

    def contacts(self) -> list[NameAddr]:
        return self._addresses("Contact")

    def record_routes(self) -> list[NameAddr]:
        return self._addresses("Record-Route")

    def routes(self) -> list[NameAddr]:
        return self._addresses("Route")

    def _addresses(self, name: str) -> list[NameAddr]:
        return [addr for line in self.headers.get_all(name) for addr in parse_name_addr_list(line)]

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower() or None

    def to_bytes(self) -> bytes:
        self.headers.set("Content-Length", str(len(self.body)))
        lines = [self.start_line()]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines.append("\r\n")
        return "\r\n".join(lines).encode() + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class SipRequest(SipMessage):
    __slots__ = ("method", "uri")

    def __init__(
        self,
        method: str,
        uri: SipUri | str,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri if isinstance(uri, SipUri) else SipUri.parse(uri)

    def start_line(self) -> str:
        return f"{self.method} {self.uri} SIP/2.0"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


class SipResponse(SipMessage):
    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = default_reason(status) if reason is None else reason

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


def parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if len(parts) != 2:
        raise SipParseError(f"invalid CSeq: {value!r}")
    number, method = parts
    if not (number.isascii() and number.isdigit() and len(number) <= 10) or not is_token(method):
        raise SipParseError(f"invalid CSeq: {value!r}")
    seq = int(number)
    if seq >= _MAX_CSEQ:
        raise SipParseError(f"CSeq number out of range: {value!r}")
    return seq, method


# --- parsing ---------------------------------------------------------------------------------


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one complete message (a UDP datagram).

    Raises SipParseError for a bad start line or version, a malformed or non-UTF-8 header
    section, missing or invalid Via/From/To/Call-ID/CSeq, a CSeq method that differs from the
    request's, a Content-Length beyond the data, or more than MAX_MESSAGE_SIZE bytes. Bytes
    after Content-Length are discarded; without Content-Length the rest is the body.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        raise SipParseError(f"message of {len(data)} bytes is too large", status=513)
    start = len(data) - len(data.lstrip(b"\r\n"))  # RFC 3261 7.5: ignore leading CRLFs
    found = find_head_end(data, start)
    if found is None:
        raise SipParseError("no empty line after the header section")
    head_end, body_start = found
    message, content_length = parse_head(data[start:head_end])
    body = data[body_start:]
    if content_length is not None:
        if content_length > len(body):
            raise SipParseError(
                f"Content-Length {content_length} exceeds the {len(body)} body bytes received"
            )
        body = body[:content_length]  # RFC 3261 18.3: extra datagram bytes are discarded
    message.body = body
    return message


def find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int] | None:
    """Locate the empty line: (end of the header section, start of the body), or None."""
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start, crlf + 2 if crlf >= 0 else len(data))
    if lf >= 0:
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 3
    return None


def parse_head(head: bytes) -> tuple[SipRequest | SipResponse, int | None]:
    """Parse start line and header fields; return the message and its Content-Length."""
    if head.endswith(b"\r"):
        head = head[:-1]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("header section is not valid UTF-8") from exc
    text = text.replace("\r\n", "\n")
    if _CONTROL_RE.search(text):
        raise SipParseError("control character in the header section")
    lines = text.split("\n")
    message = parse_start_line(lines[0].strip())
    fields: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # folded continuation (LWS)
            if not fields:
                raise SipParseError("continuation line before the first header")
            fields[-1].append(line.strip())
        else:
            fields.append([line.rstrip()])
    headers = message.headers
    for parts in fields:
        name, colon, value = parts[0].partition(":")
        name = name.strip()
        if not colon or not is_token(name):
            raise SipParseError(f"malformed header line: {parts[0][:80]!r}")
        value = value.strip()
        if len(parts) > 1:
            value = " ".join([value, *parts[1:]]).strip()
        headers.add(name, value)
    return message, _validate(message)


def parse_start_line(line: str) -> SipRequest | SipResponse:
    if line[:4].upper() == "SIP/":
        version, _, rest = line.partition(" ")
        _check_version(version)
        code, _, reason = rest.strip().partition(" ")
        if not (len(code) == 3 and code.isascii() and code.isdigit() and "1" <= code[0] <= "6"):
            raise SipParseError(f"invalid status code in {line[:80]!r}")
        return SipResponse(int(code), reason.strip())
    parts = line.split()
    if len(parts) != 3:
        raise SipParseError(f"invalid start line: {line[:80]!r}")
    method, uri_text, version = parts
    if not is_token(method):
        raise SipParseError(f"invalid method: {method[:40]!r}")
    _check_version(version)
    scheme = uri_text.partition(":")[0].lower()
    if scheme not in ("sip", "sips"):
        raise SipParseError(f"unsupported Request-URI scheme: {scheme[:20]!r}", status=416)
    return SipRequest(method, SipUri.parse(uri_text))


def _check_version(version: str) -> None:
    if version.upper() != "SIP/2.0":
        status = 505 if version[:4].upper() == "SIP/" else 400
        raise SipParseError(f"unsupported SIP version: {version[:20]!r}", status=status)


def _validate(message: SipRequest | SipResponse) -> int | None:
    headers = message.headers
    for name in MANDATORY_HEADERS:
        if name not in headers:
            raise SipParseError(f"missing {name} header")
    call_id = message.call_id
    if not call_id or len(call_id.split()) != 1:
        raise SipParseError(f"invalid Call-ID: {call_id[:80]!r}")
    _, cseq_method = message.cseq
    if isinstance(message, SipRequest) and cseq_method != message.method:
        raise SipParseError(f"CSeq method {cseq_method} does not match {message.method}")
    if not all(parse_via_list(line) for line in headers.get_all("Via")):
        raise SipParseError("empty Via header")  # top_via reads the first line alone
    for name in ("From", "To"):
        NameAddr.parse(message._required(name))
    lengths = set(headers.get_all("Content-Length"))
    if not lengths:
        return None
    if len(lengths) > 1:
        raise SipParseError("conflicting Content-Length headers")
    value = lengths.pop()
    if not (value.isascii() and value.isdigit() and len(value) <= 10):
        raise SipParseError(f"invalid Content-Length: {value[:20]!r}")
    return int(value)


class StreamFramer:
    """Split a TCP byte stream into messages by Content-Length (RFC 3261 18.3).

    Work per feed is proportional to the new bytes: the search for the empty line resumes
    where the previous one stopped, and consumed bytes are dropped once per feed.
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self._max = max_message_size
        self._buffer = bytearray()
        self._scan_from = 0  # resume offset for the empty-line search
        self._start_line_checked = False
        self._pending: tuple[SipRequest | SipResponse, int, int] | None = None
        self.error: SipParseError | None = None  # the stream is broken; close it

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        """The messages ``data`` completes. A broken stream raises SipParseError, but messages
        completed before the break in the same data are returned first, with ``error`` set
        (and raised by the next feed): a valid request is not lost to the junk after it."""
        if self.error is not None:
            raise self.error
        messages: list[SipRequest | SipResponse] = []
        try:
            self._frame(data, messages)
        except SipParseError as exc:
            self.error = exc
            self._buffer.clear()
            if not messages:
                raise
        return messages

    def _frame(self, data: bytes, messages: list[SipRequest | SipResponse]) -> None:
        buf = self._buffer
        buf += data
        pos = 0
        while True:
            if self._pending is None:
                while pos < len(buf) and buf[pos] in b"\r\n":  # CRLF keepalives
                    pos += 1
                found = find_head_end(buf, max(pos, self._scan_from - 2))
                if found is None:
                    self._scan_from = len(buf)
                    self._check_incomplete_head(buf, pos)
                    break
                head_end, body_start = found
                if body_start - pos > self._max:
                    raise SipParseError("header section too large", status=513)
                message, length = parse_head(bytes(buf[pos:head_end]))
                # a stream message without Content-Length has no body (RFC 3261 18.3)
                end = body_start + (length or 0)
                if end - pos > self._max:
                    raise SipParseError(f"message of {end - pos} bytes is too large", status=513)
                self._pending = (message, body_start - pos, end - pos)
            message, body_offset, end_offset = self._pending
            if len(buf) < pos + end_offset:
                break
            message.body = bytes(buf[pos + body_offset : pos + end_offset])
            messages.append(message)
            pos += end_offset
            self._pending = None
            self._start_line_checked = False
            self._scan_from = pos
        del buf[:pos]
        self._scan_from = max(0, self._scan_from - pos)

    def _check_incomplete_head(self, buf: bytearray, pos: int) -> None:
        if len(buf) - pos > self._max:
            raise SipParseError("header section too large", status=513)
        if not self._start_line_checked:
            newline = buf.find(b"\n", pos)
            if newline >= 0:
                try:
                    line = buf[pos:newline].decode("utf-8").strip()
                except UnicodeDecodeError as exc:
                    raise SipParseError("start line is not valid UTF-8") from exc
                parse_start_line(line)  # fail fast on junk instead of buffering up to the limit
                self._start_line_checked = True


# --- building responses -------------------------------------------------------------------


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> SipResponse:
    """Build a response per RFC 3261 8.2.6.2 (and 12.1.1 for Record-Route)."""
    source = request.headers
    headers = Headers()
    for value in source.get_all("Via"):
        headers.add("Via", value)
    from_value = source.get("From")
    if from_value is not None:
        headers.add("From", from_value)
    to_value = source.get("To")
    if to_value is not None:
        if to_tag is not None:
            to_addr = NameAddr.parse(to_value)
            if to_addr.tag is None:
                to_addr.tag = to_tag
                to_value = str(to_addr)
        headers.add("To", to_value)
    for name in ("Call-ID", "CSeq"):
        copied = source.get(name)
        if copied is not None:
            headers.add(name, copied)
    if 101 <= status <= 299 and request.method in DIALOG_CREATING_METHODS:
        for value in source.get_all("Record-Route"):
            headers.add("Record-Route", value)
    if content_type is not None:
        headers.add("Content-Type", content_type)
    for name, value in extra_headers:
        headers.add(name, value)
    return SipResponse(status, reason, headers, body)
