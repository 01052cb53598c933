"""Property tests for the message parser and the stream framer."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callboard.sip.errors import SipParseError
from callboard.sip.header_map import Headers
from callboard.sip.message import (
    SipMessage,
    SipRequest,
    SipResponse,
    StreamFramer,
    parse_message,
)
from tests.unit.sip.sip_samples import BARESIP_INVITE, RINGING_RESPONSE, SIPP_INVITE

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=12)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9]{0,6}){0,2}", fullmatch=True)
# printable header text without leading/trailing blanks (they are not significant on the wire)
header_values = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40
).map(str.strip)
extension_names = st.from_regex(r"X-[A-Za-z0-9-]{1,10}", fullmatch=True)


@st.composite
def messages(draw: st.DrawFn) -> SipRequest | SipResponse:
    method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS", "REGISTER"]) | tokens)
    host = draw(hosts)
    headers = Headers()
    for _ in range(draw(st.integers(1, 3))):
        port = draw(st.none() | st.integers(1, 65535))
        sent_by = f"{host}:{port}" if port else host
        transport = draw(st.sampled_from(["UDP", "TCP"]))
        headers.add("Via", f"SIP/2.0/{transport} {sent_by};branch=z9hG4bK{draw(tokens)}")
    headers.add("From", f"<sip:{draw(tokens)}@{host}>;tag={draw(tokens)}")
    headers.add("To", f"<sip:{draw(tokens)}@{draw(hosts)}>")
    headers.add("Call-ID", f"{draw(tokens)}@{host}")
    headers.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    for name, value in draw(st.lists(st.tuples(extension_names, header_values), max_size=5)):
        headers.add(name, value)
    body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        return SipRequest(method, f"sip:{draw(tokens)}@{draw(hosts)}", headers, body)
    reason = draw(header_values)
    return SipResponse(draw(st.integers(100, 699)), reason, headers, body)


def same(a: SipMessage, b: SipMessage) -> bool:
    return a.start_line() == b.start_line() and a.headers == b.headers and a.body == b.body


@given(messages())
def test_round_trip(msg: SipRequest | SipResponse) -> None:
    data = msg.to_bytes()
    parsed = parse_message(data)
    assert same(parsed, msg)
    assert parsed.to_bytes() == data


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_parse_errors(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


SEEDS = [SIPP_INVITE, BARESIP_INVITE, RINGING_RESPONSE]


def exercise(msg: SipMessage) -> None:
    """Touch every structured accessor; each may only fail with SipParseError."""
    for accessor in (
        lambda: msg.vias,
        lambda: msg.top_via,
        lambda: msg.from_addr,
        lambda: msg.to_addr,
        lambda: msg.cseq,
        lambda: msg.call_id,
        msg.contacts,
        msg.record_routes,
        msg.routes,
        lambda: msg.content_type,
        msg.to_bytes,
    ):
        with contextlib.suppress(SipParseError):
            accessor()


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.integers(0, 2000), st.binary(min_size=0, max_size=4)), min_size=1, max_size=6
    ),
)
def test_mutated_messages_raise_only_parse_errors(
    seed: bytes, edits: list[tuple[int, bytes]]
) -> None:
    data = bytearray(seed)
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + len(replacement) or at + 1] = replacement
    try:
        msg = parse_message(bytes(data))
    except SipParseError:
        return
    exercise(msg)


@pytest.mark.parametrize("seed", SEEDS, ids=["sipp", "baresip", "ringing"])
def test_every_truncation_is_rejected(seed: bytes) -> None:
    for cut in range(len(seed)):
        with pytest.raises(SipParseError):
            parse_message(seed[:cut])


@given(messages())
def test_truncated_generated_messages_are_rejected(msg: SipRequest | SipResponse) -> None:
    data = msg.to_bytes()
    for cut in range(0, len(data), 7):
        with pytest.raises(SipParseError):
            parse_message(data[:cut])


@settings(max_examples=60)
@given(
    st.lists(messages(), min_size=1, max_size=4),
    st.lists(st.integers(1, 400), max_size=30),
    st.lists(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]), min_size=4, max_size=4),
)
def test_framer_chunking_does_not_matter(
    msgs: list[SipRequest | SipResponse], cuts: list[int], keepalives: list[bytes]
) -> None:
    stream = b"".join(keepalives[i % 4] + m.to_bytes() for i, m in enumerate(msgs))
    framer = StreamFramer()
    out: list[SipRequest | SipResponse] = []
    pos = 0
    for size in cuts:
        out += framer.feed(stream[pos : pos + size])
        pos += size
    out += framer.feed(stream[pos:])
    assert len(out) == len(msgs)
    assert all(same(a, b) for a, b in zip(out, msgs, strict=True))
    assert framer.buffered == 0


def test_framer_one_byte_at_a_time_is_linear() -> None:
    big = SIPP_INVITE.replace(b"Subject:", b"X-Pad: " + b"p" * 50000 + b"\r\nSubject:")
    framer = StreamFramer()
    got: list[SipRequest | SipResponse] = []
    for i in range(len(big)):
        got += framer.feed(big[i : i + 1])
    assert len(got) == 1 and got[0].to_bytes() == parse_message(big).to_bytes()


def test_framer_missing_content_length_means_empty_body() -> None:
    raw = SIPP_INVITE.split(b"\r\n\r\n")[0]
    raw = b"\r\n".join(
        line for line in raw.split(b"\r\n") if not line.startswith(b"Content-Length")
    )
    framer = StreamFramer()
    (msg,) = framer.feed(raw + b"\r\n\r\n")
    assert msg.body == b""


def test_framer_rejects_junk_early() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError):
        framer.feed(b"GET / HTTP/1.1\r\nHost: x\r\n")


def test_framer_rejects_junk_without_newlines_at_the_size_limit() -> None:
    framer = StreamFramer(max_message_size=4096)
    framer.feed(b"x" * 4000)
    with pytest.raises(SipParseError) as info:
        framer.feed(b"x" * 200)
    assert info.value.status == 513


def test_framer_rejects_oversize_declared_body() -> None:
    framer = StreamFramer(max_message_size=2000)
    head = re.sub(
        rb"Content-Length: \d+", b"Content-Length: 5000", SIPP_INVITE.split(b"\r\n\r\n")[0]
    )
    with pytest.raises(SipParseError):
        framer.feed(head + b"\r\n\r\n")
