"""Parsing and serialising session descriptions (RFC 8866)."""

from __future__ import annotations

import pytest

from callboard.sdp.description import (
    MAX_SDP_BYTES,
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
)

from .sdp_samples import (
    ALL_OFFERS,
    ASTERISK_OFFER,
    BARESIP_OFFER,
    CHROME_WEBRTC_OFFER,
    FREESWITCH_OFFER,
    LINPHONE_OFFER,
    SIPP_PCAP_LF,
    SIPP_UAC,
    crlf,
)


def test_sipp_offer_fields() -> None:
    sdp = SessionDescription.parse(SIPP_UAC)
    assert sdp.origin == Origin("user1", 53655765, 2353687637, "IN", "IP4", "127.0.1.1")
    assert sdp.session_name == "-"
    assert sdp.connection == "127.0.1.1"
    assert sdp.timing == "0 0"
    [audio] = sdp.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        6000,
        "RTP/AVP",
        ["0"],
    )
    assert audio.connection is None
    assert audio.attributes == [("rtpmap", "0 PCMU/8000")]


def test_lf_only_with_trailing_blanks() -> None:
    sdp = SessionDescription.parse(SIPP_PCAP_LF)
    assert sdp.origin.address == "10.0.0.5"  # not "10.0.0.5 "
    assert sdp.session_name == "-"
    assert sdp.media[0].formats == ["8", "101"]
    assert sdp.media[0].attribute_values("rtpmap") == ["8 PCMA/8000", "101 telephone-event/8000"]


def test_baresip_attributes_and_bandwidth() -> None:
    audio = SessionDescription.parse(BARESIP_OFFER).media[0]
    assert audio.bandwidths == ["AS:93"]
    assert audio.attribute("ptime") == "20"
    assert audio.attribute("ssrc") == "1289735049 cname:b5b1b3c0-5f2d-4a7e-9b4b-0a6d3c2e1f00"
    assert audio.has_attribute("rtcp-rsize")
    assert audio.attribute("rtcp-rsize") is None  # a flag has no value
    assert audio.has_attribute("sendrecv")
    assert not audio.has_attribute("sendonly")
    assert audio.attribute("sendonly") is None


def test_asterisk_attribute_with_spaces_kept_whole() -> None:
    sdp = SessionDescription.parse(ASTERISK_OFFER)
    assert sdp.session_name == "Asterisk PBX 16.28.0"
    assert sdp.media[0].attribute("silenceSupp") == "off - - - -"
    assert sdp.media[0].attribute("SILENCESUPP") == "off - - - -"  # names case-insensitive


def test_freeswitch_rtcp_attribute() -> None:
    audio = SessionDescription.parse(FREESWITCH_OFFER).media[0]
    assert audio.attribute("rtcp") == "23457 IN IP4 198.51.100.7"
    assert audio.formats == ["102", "9", "0", "8", "103", "101"]


def test_chrome_media_level_connection_and_session_attributes() -> None:
    sdp = SessionDescription.parse(CHROME_WEBRTC_OFFER)
    assert sdp.origin.session_id == 4611731400430051336
    assert sdp.connection is None
    assert [m.connection for m in sdp.media] == ["0.0.0.0", "0.0.0.0"]
    assert [m.proto for m in sdp.media] == ["UDP/TLS/RTP/SAVPF"] * 2
    assert sdp.attribute("group") == "BUNDLE 0 1"
    assert sdp.attribute("msid-semantic") == " WMS 6b3c1b8f-7e8c-4f47-9a0e-2f4d6c2b7e11"
    assert sdp.has_attribute("extmap-allow-mixed")
    assert (sdp.media[0].attribute("fingerprint") or "").startswith("sha-256 49:66:12")
    assert sdp.media[1].attribute_values("rtcp-fb") == ["96 nack pli"]


def test_linphone_ipv6_and_two_streams() -> None:
    sdp = SessionDescription.parse(LINPHONE_OFFER)
    assert sdp.origin.addrtype == "IP6"
    assert sdp.connection == "2001:db8::10"
    assert sdp.connection_addrtype == "IP6"
    assert [m.media for m in sdp.media] == ["audio", "video"]
    assert sdp.attribute("record") == "off"
    assert sdp.media[0].attribute_values("fmtp")[3] == "18 annexb=yes"


def test_port_count() -> None:
    sdp = SessionDescription.parse(crlf("v=0\no=- 1 1 IN IP4 h\nm=audio 49170/2 RTP/AVP 0\n"))
    assert (sdp.media[0].port, sdp.media[0].port_count) == (49170, 2)
    assert b"m=audio 49170/2 RTP/AVP 0\r\n" in sdp.to_bytes()


def test_missing_session_name_and_timing_get_defaults() -> None:
    sdp = SessionDescription.parse("v=0\no=- 1 1 IN IP4 h\nm=audio 4000 RTP/AVP 0\n")
    assert sdp.session_name == "-"
    assert sdp.timing == "0 0"
    assert sdp.connection is None


def test_tolerates_bom_blank_lines_and_bare_cr() -> None:
    text = "\ufeffv=0\r\n\r\no=- 1 1 IN IP4 h\rs=x\n\nm=audio 4000 RTP/AVP 0\r\n\r\n"
    sdp = SessionDescription.parse(text)
    assert sdp.session_name == "x"
    assert sdp.media[0].port == 4000


def test_unknown_lines_kept_and_reemitted_in_rfc_position() -> None:
    text = crlf(
        "\n".join(
            [
                "v=0",
                "o=- 1 1 IN IP4 192.0.2.1",
                "s=call",
                "a=tool:x",  # attribute before c= and t=: we put it back after them
                "t=0 0",
                "c=IN IP4 192.0.2.1",
                "y=3gpp-extension",
                "i=session info",
                "r=7d 1h 0 25h",
                "m=audio 4000 RTP/AVP 0",
                "a=sendrecv",
                "k=prompt",
                "i=media info",
                "c=IN IP4 192.0.2.2",
                "b=AS:64",
                "",
            ]
        )
    )
    sdp = SessionDescription.parse(text)
    assert sdp.other_lines == ["i=session info", "y=3gpp-extension", "r=7d 1h 0 25h"]
    assert sdp.media[0].other_lines == ["i=media info", "k=prompt"]
    assert sdp.to_bytes().decode().split("\r\n") == [
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=call",
        "i=session info",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "y=3gpp-extension",
        "r=7d 1h 0 25h",
        "a=tool:x",
        "m=audio 4000 RTP/AVP 0",
        "i=media info",
        "c=IN IP4 192.0.2.2",
        "b=AS:64",
        "k=prompt",
        "a=sendrecv",
        "",
    ]


@pytest.mark.parametrize("name", sorted(ALL_OFFERS))
def test_samples_round_trip(name: str) -> None:
    parsed = SessionDescription.parse(ALL_OFFERS[name])
    wire = parsed.to_bytes()
    assert SessionDescription.parse(wire) == parsed
    assert SessionDescription.parse(wire).to_bytes() == wire


@pytest.mark.parametrize("name", ["sipp-uac", "baresip", "asterisk", "freeswitch", "chrome-webrtc"])
def test_already_canonical_samples_serialise_byte_identical(name: str) -> None:
    assert SessionDescription.parse(ALL_OFFERS[name]).to_bytes() == ALL_OFFERS[name]


def test_serialise_built_description() -> None:
    sdp = SessionDescription(
        origin=Origin("callboard", 7, 8, "IN", "IP6", "2001:db8::1"),
        session_name="",
        connection="2001:db8::1",
        media=[
            MediaDescription(
                "audio",
                5000,
                "RTP/AVP",
                ["0"],
                connection="192.0.2.9",
                attributes=[("rtpmap", "0 PCMU/8000"), ("sendrecv", None), ("x", "")],
            )
        ],
    )
    assert sdp.to_bytes() == crlf(
        "v=0\n"
        "o=callboard 7 8 IN IP6 2001:db8::1\n"
        "s= \n"
        "c=IN IP6 2001:db8::1\n"
        "t=0 0\n"
        "m=audio 5000 RTP/AVP 0\n"
        "c=IN IP4 192.0.2.9\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=sendrecv\n"
        "a=x:\n"
    )


def test_serialise_refuses_line_breaks_in_values() -> None:
    sdp = SessionDescription.parse(SIPP_UAC)
    sdp.media[0].attributes.append(("tool", "x\r\nSubject: injected"))
    with pytest.raises(SdpError, match="line break"):
        sdp.to_bytes()


def test_attribute_values_gives_empty_string_for_flags() -> None:
    media = MediaDescription("audio", 1, "RTP/AVP", ["0"], attributes=[("x", None), ("x", "1")])
    assert media.attribute_values("x") == ["", "1"]
    assert media.attribute("x") is None
    assert media.attribute_values("y") == []


VALID_HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "start with v="),
        ("   \r\n\r\n", "start with v="),
        ("o=- 1 1 IN IP4 h\nv=0\nm=audio 1 RTP/AVP 0\n", "start with v="),
        ("v=1\no=- 1 1 IN IP4 h\nm=audio 1 RTP/AVP 0\n", "version"),
        ("v=0\ns=-\nm=audio 1 RTP/AVP 0\n", "no o="),
        (VALID_HEAD, "no m="),
        ("v=0\no=- 1 1 IN IP4 h\no=- 1 1 IN IP4 h\nm=audio 1 RTP/AVP 0\n", "duplicate o="),
        ("v=0\no=- 1 1 IN IP4 h\ns=a\ns=b\nm=audio 1 RTP/AVP 0\n", "duplicate s="),
        (VALID_HEAD + "m=audio 1 RTP/AVP 0\nv=0\n", "inside a media"),
        (VALID_HEAD + "m=audio 1 RTP/AVP 0\no=- 1 1 IN IP4 h\n", "inside a media"),
        (VALID_HEAD.replace("v=0\n", "v=0\nv=0\n") + "m=audio 1 RTP/AVP 0\n", "second v="),
        ("v=0\no=- 1 IN IP4 h\nm=audio 1 RTP/AVP 0\n", "6 fields"),
        ("v=0\no=- abc 1 IN IP4 h\nm=audio 1 RTP/AVP 0\n", "session id"),
        ("v=0\no=- 1 -2 IN IP4 h\nm=audio 1 RTP/AVP 0\n", "session version"),
        ("v=0\no=- \u00b2 1 IN IP4 h\nm=audio 1 RTP/AVP 0\n", "session id"),
        ("v=0\no=- " + "9" * 41 + " 1 IN IP4 h\nm=audio 1 RTP/AVP 0\n", "session id"),
        (VALID_HEAD + "m=audio abc RTP/AVP 0\n", "port"),
        (VALID_HEAD + "m=audio -1 RTP/AVP 0\n", "port"),
        (VALID_HEAD + "m=audio 65536 RTP/AVP 0\n", "out of range"),
        (VALID_HEAD + "m=audio 4000/0 RTP/AVP 0\n", "out of range"),
        (VALID_HEAD + "m=audio 4000\n", "m= needs"),
        (VALID_HEAD + "m=audio 4000 RTP/AVP 0\nc=IN IP4\n", "c= line"),
        (VALID_HEAD + "m=audio 4000 RTP/AVP 0\nc=ATM NSAP 47.0005\n", "c= line"),
        (VALID_HEAD + "m=audio 4000 RTP/AVP 0\nthis is not sdp\n", "not an SDP line"),
        (VALID_HEAD + "m=audio 4000 RTP/AVP 0\n=foo\n", "not an SDP line"),
        (VALID_HEAD + "m=audio 4000 RTP/AVP 0\n\u00e9=foo\n", "not an SDP line"),
        ("v=0\no=- 1 1 IN IP4 h\ud800\nm=audio 1 RTP/AVP 0\n", "Unicode"),
    ],
)
def test_rejects(text: str, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        SessionDescription.parse(text)


def test_rejects_non_utf8_bytes() -> None:
    with pytest.raises(SdpError, match="UTF-8"):
        SessionDescription.parse(SIPP_UAC.replace(b"s=-", b"s=\xff\xfe"))


def test_accepts_utf8_session_name() -> None:
    sdp = SessionDescription.parse(SIPP_UAC.replace(b"s=-", "s=Café".encode()))
    assert sdp.session_name == "Café"
    assert "s=Café".encode() in sdp.to_bytes()


def test_size_limit() -> None:
    padding = b"a=x-pad:" + b"p" * 200 + b"\r\n"
    body = SIPP_UAC
    while len(body) <= MAX_SDP_BYTES:
        body += padding
    with pytest.raises(SdpError, match="exceeds"):
        SessionDescription.parse(body)
    with pytest.raises(SdpError, match="exceeds"):
        SessionDescription.parse(body.decode())
    # Just under the limit is still accepted.
    under = body[: body.rindex(b"a=x-pad", 0, MAX_SDP_BYTES - len(padding))]
    assert len(SessionDescription.parse(under).media[0].attributes) > 100
