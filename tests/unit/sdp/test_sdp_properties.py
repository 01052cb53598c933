"""Property tests: hostile input only ever raises SdpError; what we parse we can write back."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callboard.sdp import (
    MediaDescription,
    NegotiationError,
    Origin,
    SdpError,
    SdpSession,
    SessionDescription,
)
from callboard.sdp.direction import DIRECTIONS, intersect, reciprocal

from .sdp_samples import crlf

# -- arbitrary input ---------------------------------------------------------------------


def parse_or_sdp_error(data: str | bytes) -> SessionDescription | None:
    try:
        return SessionDescription.parse(data)
    except SdpError:
        return None


@given(st.text())
@example("v=0\no=- 1 1 IN IP4 h\nm=audio 1 RTP/AVP 0")
@example("v=0\no=- \u0663 1 IN IP4 h\nm=audio 1 RTP/AVP 0")  # Arabic-Indic digit
def test_arbitrary_text_raises_only_sdp_error(text: str) -> None:
    parse_or_sdp_error(text)


@given(st.binary())
@example(b"v=0\no=- 1 1 IN IP4 h\nm=audio 1 RTP/AVP 0\n\xc3")
def test_arbitrary_bytes_raise_only_sdp_error(data: bytes) -> None:
    parse_or_sdp_error(data)


# Lines that look like SDP, so the fuzzing reaches past "must start with v=".
_TOKENS = st.sampled_from(
    [
        "IN", "IP4", "IP6", "0", "8", "9", "18", "96", "101", "110", "127", "128", "65536",
        "RTP/AVP", "RTP/AVPF", "RTP/SAVP", "audio", "video", "192.0.2.1", "0.0.0.0", "::",
        "2001:db8::1", "-", "1", "x", "",
        "rtpmap:0", "rtpmap:96", "rtpmap:101", "fmtp:96", "rtcp:5001", "ptime:20", "ptime:x",
        "opus/48000/2", "opus/48000", "PCMU/8000", "G722/8000", "telephone-event/8000",
        "telephone-event/48000", "sendonly", "recvonly", "inactive", "sendrecv", "rtcp-mux",
    ]
)  # fmt: skip
_VALUES = st.lists(st.one_of(_TOKENS, st.text(max_size=4)), max_size=6).map(" ".join)
_LINE = st.one_of(
    st.tuples(st.sampled_from("vosctabmikzrey"), _VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.tuples(_TOKENS, _VALUES).map(lambda kv: f"a={kv[0]} {kv[1]}"),
    st.tuples(st.sampled_from(["audio", "video"]), st.integers(0, 70000), _TOKENS, _VALUES).map(
        lambda m: f"m={m[0]} {m[1]} {m[2]} {m[3]}"
    ),
    st.text(max_size=10),
)
_HEADS = st.sampled_from(
    ["v=0\no=- 1 1 IN IP4 192.0.2.1\n", "v=0\no=- 1 1 IN IP4 0.0.0.0\nc=IN IP4 192.0.2.1\n", ""]
)
SDP_LIKE = st.tuples(
    _HEADS, st.lists(_LINE, max_size=25), st.sampled_from(["\n", "\r\n", "\r"])
).map(lambda parts: parts[0] + parts[2].join(parts[1]))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(SDP_LIKE)
def test_sdp_like_text_parses_or_raises_sdp_error_and_round_trips(text: str) -> None:
    parsed = parse_or_sdp_error(text)
    if parsed is None:
        return
    wire = parsed.to_bytes()
    assert SessionDescription.parse(wire) == parsed
    assert SessionDescription.parse(wire).to_bytes() == wire


# Offers that are valid SDP but odd in every way negotiation cares about.
_ENCODINGS = st.sampled_from(
    ["PCMU/8000", "pcma/8000", "G722/8000", "G722/16000", "opus/48000/2", "opus/48000",
     "telephone-event/8000", "telephone-event/48000", "G729/8000", "x/", "opus/48000/2/9"]
)  # fmt: skip
_PT = st.one_of(st.sampled_from([0, 8, 9, 18, 96, 101, 110, 111]), st.integers(0, 130))
_MEDIA_ATTRIBUTE = st.one_of(
    st.tuples(_PT, _ENCODINGS).map(lambda a: f"a=rtpmap:{a[0]} {a[1]}"),
    _PT.map(lambda pt: f"a=fmtp:{pt} 0-16"),
    st.sampled_from(
        ["a=sendonly", "a=recvonly", "a=inactive", "a=sendrecv", "a=rtcp-mux", "a=rtcp:9",
         "a=rtcp:x", "a=rtcp:5001 IN IP6 ::1", "a=rtcp:", "a=ptime:20", "a=ptime:", "a=ptime:7.5",
         "c=IN IP4 0.0.0.0", "c=IN IP6 2001:db8::2", "c=IN IP4 198.51.100.9/127", "b=AS:64"]
    ),
)  # fmt: skip
_MEDIA_SECTION = st.tuples(
    st.sampled_from(["audio", "audio", "video", "image"]),
    st.sampled_from([4000, 4000, 4000, 0, 65534, 65535]),
    st.sampled_from(["RTP/AVP"] * 3 + ["RTP/AVPF", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udptl"]),
    st.lists(st.one_of(_PT.map(str), st.just("t38")), max_size=6),
    st.lists(_MEDIA_ATTRIBUTE, max_size=8),
).map(lambda m: "\n".join([f"m={m[0]} {m[1]} {m[2]} {' '.join(m[3])}".rstrip(), *m[4]]))
# A section that is usually negotiable, so the answer path is exercised as much as refusal.
_LIKELY_AUDIO = st.tuples(
    st.lists(st.tuples(_PT, _ENCODINGS), min_size=1, max_size=5, unique_by=lambda e: e[0]),
    st.lists(_MEDIA_ATTRIBUTE, max_size=4),
).map(
    lambda a: "\n".join(
        [
            "m=audio 4000 RTP/AVP " + " ".join(str(pt) for pt, _ in a[0]),
            *(f"a=rtpmap:{pt} {encoding}" for pt, encoding in a[0]),
            *a[1],
        ]
    )
)
OFFER_LIKE = st.tuples(
    st.sampled_from(["c=IN IP4 192.0.2.1\n", "c=IN IP4 192.0.2.1\n", "c=IN IP4 0.0.0.0\n", ""]),
    st.sampled_from(["", "a=sendonly\n", "a=inactive\n", "a=ptime:30\n"]),
    st.lists(_MEDIA_SECTION, max_size=3),
    _LIKELY_AUDIO,
    st.integers(0, 3),
).map(
    lambda p: (
        f"v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\n{p[0]}t=0 0\n{p[1]}"
        + "\n".join([*p[2][: p[4]], p[3], *p[2][p[4] :]])
    )
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(OFFER_LIKE)
def test_offer_like_text_round_trips(text: str) -> None:
    parsed = SessionDescription.parse(text)
    assert SessionDescription.parse(parsed.to_bytes()) == parsed


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(OFFER_LIKE, SDP_LIKE),
    st.permutations(["PCMU", "PCMA", "G722", "opus"]),
    st.sampled_from(DIRECTIONS),
)
def test_any_offer_gets_an_answer_or_a_clean_error(
    text: str, codecs: list[str], direction: str
) -> None:
    sdp = SdpSession(local_ip="192.0.2.10", local_port=40000, codecs=codecs)
    try:
        negotiated = sdp.receive_offer(text)
    except (SdpError, NegotiationError):
        return
    offer = SessionDescription.parse(text)
    answer = SessionDescription.parse(sdp.create_answer(direction=direction))
    assert len(answer.media) == len(offer.media)
    [chosen] = [index for index, m in enumerate(answer.media) if m.port != 0]
    assert offer.media[chosen].proto in ("RTP/AVP", "RTP/AVPF")
    assert answer.media[chosen].formats[0] == str(negotiated.codec.payload_type)
    assert answer.media[chosen].formats[1:] in ([], [str(negotiated.dtmf_payload_type)])
    assert 1 <= negotiated.remote_port <= 65535
    assert sdp.negotiated is not None
    assert sdp.negotiated.local_direction == intersect(direction, negotiated.local_direction)


# -- structured descriptions round-trip exactly --------------------------------------------

_TOKEN = st.text(
    st.characters(exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=8
)
_FREE = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=12).map(
    lambda s: s.strip(" \t")
)
_ATTRIBUTE = st.tuples(_TOKEN.filter(lambda name: ":" not in name), st.none() | _FREE)


def _other_lines(early: str, late: str) -> st.SearchStrategy[list[str]]:
    line = st.tuples(st.sampled_from(early), _FREE).map("=".join)
    rest = st.tuples(st.sampled_from(late), _FREE).map("=".join)
    return st.tuples(st.lists(line, max_size=2), st.lists(rest, max_size=3)).map(
        lambda parts: parts[0] + parts[1]
    )


@st.composite
def _connection(draw: st.DrawFn) -> tuple[str | None, str | None]:
    if draw(st.booleans()):
        return None, None
    return draw(_TOKEN), draw(_TOKEN)


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    address, addrtype = draw(_connection())
    return MediaDescription(
        media=draw(_TOKEN),
        port=draw(st.integers(0, 65535)),
        proto=draw(_TOKEN),
        formats=draw(st.lists(_TOKEN, max_size=5)),
        connection=address,
        connection_addrtype=addrtype,
        attributes=draw(st.lists(_ATTRIBUTE, max_size=5)),
        bandwidths=draw(st.lists(_FREE, max_size=2)),
        port_count=draw(st.none() | st.integers(1, 99999)),
        other_lines=draw(_other_lines("i", "kyxzrtuepKZ")),
    )


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    address, addrtype = draw(_connection())
    origin = Origin(
        draw(_TOKEN),
        draw(st.integers(0, 10**40 - 1)),
        draw(st.integers(0, 10**40 - 1)),
        draw(_TOKEN),
        draw(_TOKEN),
        draw(_TOKEN),
    )
    return SessionDescription(
        origin=origin,
        session_name=draw(_FREE),
        connection=address,
        connection_addrtype=addrtype,
        attributes=draw(st.lists(_ATTRIBUTE, max_size=5)),
        media=draw(st.lists(media_descriptions(), min_size=1, max_size=3)),
        bandwidths=draw(st.lists(_FREE, max_size=2)),
        timing=draw(_FREE),
        other_lines=draw(_other_lines("iuep", "rzkyQ")),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(session_descriptions())
def test_structured_round_trip(description: SessionDescription) -> None:
    assert SessionDescription.parse(description.to_bytes()) == description


# -- negotiation against a simple model ----------------------------------------------------

_POOL = [
    ("PCMU", 8000, 1),
    ("pcma", 8000, 1),
    ("G722", 8000, 1),
    ("opus", 48000, 2),
    ("opus", 48000, 1),
    ("G729", 8000, 1),
    ("speex", 16000, 1),
    ("telephone-event", 8000, 1),
    ("telephone-event", 48000, 1),
]


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(96, 127), st.sampled_from(_POOL)),
        min_size=1,
        max_size=6,
        unique_by=lambda entry: entry[0],
    ),
    st.lists(
        st.sampled_from(["PCMU", "PCMA", "G722", "opus"]), min_size=1, max_size=4, unique=True
    ),
)
def test_choice_matches_model(
    entries: list[tuple[int, tuple[str, int, int]]], codecs: list[str]
) -> None:
    def rtpmap(pt: int, name: str, rate: int, channels: int) -> str:
        return f"a=rtpmap:{pt} {name}/{rate}" + (f"/{channels}" if channels != 1 else "")

    body = "\n".join(
        [
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP " + " ".join(str(pt) for pt, _ in entries),
            *(rtpmap(pt, *entry) for pt, entry in entries),
            "",
        ]
    )
    wanted = {"PCMU": ("pcmu", 8000, 1), "PCMA": ("pcma", 8000, 1), "G722": ("g722", 8000, 1)}
    wanted["opus"] = ("opus", 48000, 2)

    def first(spec: tuple[str, int, int]) -> int | None:
        return next(
            (pt for pt, (n, r, c) in entries if (n.lower(), r, c) == spec),
            None,
        )

    model = next(((name, pt) for name in codecs if (pt := first(wanted[name])) is not None), None)
    sdp = SdpSession(local_ip="192.0.2.10", local_port=40000, codecs=codecs)
    if model is None:
        with pytest.raises(NegotiationError):
            sdp.receive_offer(crlf(body))
        return
    negotiated = sdp.receive_offer(crlf(body))
    assert (negotiated.codec.name, negotiated.codec.payload_type) == model
    rate = 48000 if model[0] == "opus" else 8000
    dtmf = first(("telephone-event", rate, 1))
    if dtmf is None and rate == 48000:
        dtmf = first(("telephone-event", 8000, 1))
    assert negotiated.dtmf_payload_type == dtmf


# -- direction algebra -------------------------------------------------------------------


@given(st.sampled_from(DIRECTIONS), st.sampled_from(DIRECTIONS))
def test_direction_algebra(first: str, second: str) -> None:
    assert reciprocal(reciprocal(first)) == first
    assert intersect(first, second) == intersect(second, first)
    assert intersect(first, first) == first
    assert intersect(first, "sendrecv") == first
    assert intersect(first, "inactive") == "inactive"
    assert reciprocal(intersect(first, second)) == intersect(reciprocal(first), reciprocal(second))
