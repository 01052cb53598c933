"""Payload format tables and rtpmap reading."""

from __future__ import annotations

import pytest

from callboard.sdp.codecs import (
    RtpMap,
    fmtp_of,
    free_dynamic_payload_type,
    parse_rtpmap,
    payload_map,
    payload_types,
    resolve_codecs,
)
from callboard.sdp.description import MediaDescription


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0 PCMU/8000", (0, RtpMap("PCMU", 8000, 1))),
        ("96 opus/48000/2", (96, RtpMap("opus", 48000, 2))),
        ("101 telephone-event/8000", (101, RtpMap("telephone-event", 8000, 1))),
        (" 9  G722/8000 ", (9, RtpMap("G722", 8000, 1))),
        ("96 opus", None),
        ("96 opus/fast", None),
        ("x opus/48000", None),
        ("96 /8000", None),
        ("96 a/8000/2/1", None),
        ("1234 PCMU/8000", None),
        ("96 PCMU/\u00b2", None),
        ("", None),
    ],
)
def test_parse_rtpmap(value: str, expected: tuple[int, RtpMap] | None) -> None:
    assert parse_rtpmap(value) == expected


def test_rtpmap_value_omits_single_channel() -> None:
    assert RtpMap("PCMU", 8000).to_value(0) == "0 PCMU/8000"
    assert RtpMap("opus", 48000, 2).to_value(111) == "111 opus/48000/2"


def test_payload_map_static_dynamic_and_junk() -> None:
    media = MediaDescription(
        "audio",
        4000,
        "RTP/AVP",
        ["96", "0", "18", "9", "97", "200", "x", "0", "8"],
        attributes=[
            ("rtpmap", "96 OPUS/48000/2"),
            ("rtpmap", "96 PCMU/8000"),  # a second map for 96 is ignored
            ("rtpmap", "8 PCMU/8000"),  # an explicit map beats the static table
            ("rtpmap", "55 G729/8000"),  # not in the format list
        ],
    )
    assert payload_types(media) == [96, 0, 18, 9, 97, 8]
    assert payload_map(media) == {
        96: RtpMap("OPUS", 48000, 2),
        0: RtpMap("PCMU", 8000),
        18: RtpMap("G729", 8000),
        9: RtpMap("G722", 8000),  # G.722's RTP clock is 8000 (RFC 3551)
        8: RtpMap("PCMU", 8000),
    }  # 97 has no rtpmap and is dynamic: unknown


def test_fmtp_of() -> None:
    media = MediaDescription(
        "audio",
        1,
        "RTP/AVP",
        ["96", "101"],
        attributes=[("fmtp", "96 useinbandfec=1"), ("fmtp", "101 ")],
    )
    assert fmtp_of(media, 96) == "useinbandfec=1"
    assert fmtp_of(media, 101) is None
    assert fmtp_of(media, 9) is None


def test_resolve_codecs() -> None:
    specs = resolve_codecs(["pcma", "opus", "telephone-event", "PCMA", "G722"])
    assert [spec.name for spec in specs] == ["PCMA", "opus", "G722"]


@pytest.mark.parametrize("names", [[], ["telephone-event"], ["G729"], ["PCMU", "speex"], "PCMU"])
def test_resolve_codecs_rejects(names: list[str]) -> None:
    with pytest.raises(ValueError):
        resolve_codecs(names)


def test_free_dynamic_payload_type() -> None:
    assert free_dynamic_payload_type({0, 111}, 101) == 101
    assert free_dynamic_payload_type({101}, 101) == 96
    assert free_dynamic_payload_type({101, 96, 97}, 101) == 98
    with pytest.raises(ValueError):
        free_dynamic_payload_type(set(range(96, 128)), 101)
