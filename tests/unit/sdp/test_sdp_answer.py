"""We answer: receive_offer picks stream, codec and DTMF; create_answer writes the reply."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from callboard.sdp import (
    CodecChoice,
    NegotiationError,
    SdpError,
    SdpSession,
    SessionDescription,
)

from .sdp_samples import (
    ASTERISK_HOLD,
    ASTERISK_OFFER,
    BARESIP_OFFER,
    CHROME_WEBRTC_OFFER,
    FREESWITCH_OFFER,
    LINPHONE_OFFER,
    SIPP_PCAP_LF,
    SIPP_UAC,
    audio_offer,
    crlf,
)


def session(codecs: Sequence[str] = ("PCMU", "PCMA"), port: int = 40000) -> SdpSession:
    return SdpSession(local_ip="192.0.2.10", local_port=port, codecs=codecs, session_id=5000)


def answer_to(offer: bytes, codecs: Sequence[str] = ("PCMU", "PCMA"), **kw: str) -> bytes:
    sdp = session(codecs)
    sdp.receive_offer(offer)
    return sdp.create_answer(**kw)


# -- codec choice: our preference order wins, the offer's numbers are kept ------------------


@pytest.mark.parametrize(
    ("offer", "codecs", "name", "pt", "dtmf_pt", "dtmf_rate"),
    [
        (ASTERISK_OFFER, ["PCMU", "PCMA"], "PCMU", 0, 101, 8000),
        (ASTERISK_OFFER, ["PCMA", "PCMU"], "PCMA", 8, 101, 8000),
        (ASTERISK_OFFER, ["G722", "PCMU"], "G722", 9, 101, 8000),
        (ASTERISK_OFFER, ["opus", "PCMA"], "PCMA", 8, 101, 8000),
        (FREESWITCH_OFFER, ["PCMU", "opus"], "PCMU", 0, 101, 8000),
        (FREESWITCH_OFFER, ["opus", "PCMU"], "opus", 102, 103, 48000),
        (BARESIP_OFFER, ["opus"], "opus", 96, 101, 8000),  # no te/48000 on offer: use /8000
        (BARESIP_OFFER, ["G722", "PCMA"], "PCMA", 8, 101, 8000),
        (LINPHONE_OFFER, ["opus"], "opus", 96, 101, 48000),
        (LINPHONE_OFFER, ["PCMA", "opus"], "PCMA", 8, 100, 8000),
        (SIPP_UAC, ["PCMA", "PCMU"], "PCMU", 0, None, None),
        (SIPP_PCAP_LF, ["PCMU", "PCMA"], "PCMA", 8, 101, 8000),
    ],
)
def test_codec_and_dtmf_choice(
    offer: bytes,
    codecs: list[str],
    name: str,
    pt: int,
    dtmf_pt: int | None,
    dtmf_rate: int | None,
) -> None:
    negotiated = session(codecs).receive_offer(offer)
    assert (negotiated.codec.name, negotiated.codec.payload_type) == (name, pt)
    assert (negotiated.dtmf_payload_type, negotiated.dtmf_clock_rate) == (dtmf_pt, dtmf_rate)
    assert negotiated.receive_payload_type == pt
    assert negotiated.receive_dtmf_payload_type == dtmf_pt


def test_codec_choice_details_from_freeswitch() -> None:
    negotiated = session(["opus"]).receive_offer(FREESWITCH_OFFER)
    assert negotiated.codec == CodecChoice(
        name="opus",
        payload_type=102,
        clock_rate=48000,
        channels=2,
        fmtp=(
            "useinbandfec=1; maxaveragebitrate=30000; maxplaybackrate=48000; ptime=20; minptime=10"
        ),
    )
    assert negotiated.remote_ip == "198.51.100.7"
    assert negotiated.remote_port == 23456
    assert negotiated.remote_rtcp == ("198.51.100.7", 23457)
    assert negotiated.ptime == 20
    assert (negotiated.local_direction, negotiated.remote_direction) == ("sendrecv", "sendrecv")
    assert not negotiated.on_hold_by_remote


@pytest.mark.parametrize(
    ("formats", "attributes", "codecs", "expected"),
    [
        # static numbers need no rtpmap; G.729 (18) is understood but not ours
        ("18 8 0", (), ["PCMU", "PCMA"], ("PCMU", 0)),
        ("9 0", (), ["G722"], ("G722", 9)),
        # case-insensitive names, dynamic number for a static codec
        ("97", ("a=rtpmap:97 pcmu/8000",), ["PCMU"], ("PCMU", 97)),
        ("96", ("a=rtpmap:96 OPUS/48000/2",), ["opus"], ("opus", 96)),
        # the same codec twice: the first listed number is taken
        ("98 96", ("a=rtpmap:96 opus/48000/2", "a=rtpmap:98 opus/48000/2"), ["opus"], ("opus", 98)),
        # a wrongly-clocked entry is skipped in favour of a correct one
        ("97 0", ("a=rtpmap:97 PCMU/16000",), ["PCMU"], ("PCMU", 0)),
    ],
)
def test_codec_table(
    formats: str, attributes: tuple[str, ...], codecs: list[str], expected: tuple[str, int]
) -> None:
    codec = session(codecs).receive_offer(audio_offer(formats, *attributes)).codec
    assert (codec.name, codec.payload_type) == expected


@pytest.mark.parametrize(
    ("formats", "attributes", "codecs"),
    [
        ("18", (), ["PCMU", "PCMA", "G722", "opus"]),  # only G.729
        ("3 4", (), ["PCMU"]),
        ("96", ("a=rtpmap:96 opus/48000",), ["opus"]),  # opus must be /2
        ("96", ("a=rtpmap:96 opus/16000/2",), ["opus"]),
        ("96", (), ["opus"]),  # dynamic number without rtpmap: unknown
        ("0", ("a=rtpmap:0 PCMA/8000",), ["PCMU"]),  # the explicit map wins over the table
        ("101", ("a=rtpmap:101 telephone-event/8000",), ["PCMU"]),  # DTMF alone is no codec
        ("x y", (), ["PCMU"]),
    ],
)
def test_no_common_codec(formats: str, attributes: tuple[str, ...], codecs: list[str]) -> None:
    with pytest.raises(NegotiationError, match="no codec in common"):
        session(codecs).receive_offer(audio_offer(formats, *attributes))


@pytest.mark.parametrize(
    ("events", "codecs", "expected"),
    [
        (("100 telephone-event/8000",), ["PCMU"], 100),
        (("100 telephone-event/48000",), ["PCMU"], None),  # wrong clock for PCMU
        (("100 telephone-event/48000", "101 telephone-event/8000"), ["PCMU"], 101),
        (("100 telephone-event/48000", "101 telephone-event/8000"), ["opus"], 100),
        (("101 telephone-event/8000", "100 telephone-event/48000"), ["opus"], 100),
        (("101 telephone-event/8000",), ["opus"], 101),
        (("100 TELEPHONE-EVENT/8000",), ["PCMU"], 100),
        (("100 telephone-event/16000",), ["PCMU", "opus"], None),
    ],
)
def test_dtmf_table(events: tuple[str, ...], codecs: list[str], expected: int | None) -> None:
    pts = " ".join(event.split()[0] for event in events)
    offer = audio_offer(
        f"96 0 {pts}", "a=rtpmap:96 opus/48000/2", *(f"a=rtpmap:{e}" for e in events)
    )
    assert session(codecs).receive_offer(offer).dtmf_payload_type == expected


# -- which stream, and where to send -----------------------------------------------------


def test_chrome_webrtc_offer_is_refused() -> None:
    with pytest.raises(NegotiationError, match="no plain RTP audio"):
        session(["opus", "PCMU"]).receive_offer(CHROME_WEBRTC_OFFER)


@pytest.mark.parametrize(
    "proto", ["RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVPF", "udp", "TCP/MRCPv2"]
)
def test_unusable_protocols(proto: str) -> None:
    with pytest.raises(NegotiationError):
        session().receive_offer(audio_offer("0", proto=proto))


def test_avpf_is_answered_like_avp() -> None:
    answer = SessionDescription.parse(answer_to(audio_offer("0", proto="RTP/AVPF")))
    assert answer.media[0].proto == "RTP/AVPF"


def test_disabled_stream_is_not_used() -> None:
    with pytest.raises(NegotiationError):
        session().receive_offer(audio_offer("0", port=0))


def test_stream_without_any_address_is_not_used() -> None:
    with pytest.raises(NegotiationError, match="no c= address"):
        session().receive_offer(audio_offer("0", connection=None))


def test_linphone_video_is_refused_at_port_zero() -> None:
    sdp = session(["opus", "PCMU"])
    negotiated = sdp.receive_offer(LINPHONE_OFFER)
    assert negotiated.remote_ip == "2001:db8::10"
    assert negotiated.remote_rtcp == ("2001:db8::10", 7079)
    answer = SessionDescription.parse(sdp.create_answer())
    audio, video = answer.media
    assert (audio.port, audio.formats) == (40000, ["96", "101"])
    assert (video.media, video.port, video.proto, video.formats) == (
        "video",
        0,
        "RTP/AVP",
        ["96", "97"],
    )
    assert video.attributes == []


def test_second_audio_and_srtp_streams_refused_in_place() -> None:
    offer = crlf(
        "\n".join(
            [
                "v=0",
                "o=pbx 9 9 IN IP4 192.0.2.77",
                "s=-",
                "c=IN IP4 192.0.2.77",
                "t=0 0",
                "m=audio 5000 RTP/SAVP 0",  # SDES best-effort peers offer SRTP first
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVu",
                "m=audio 5002 RTP/AVP 8 0",
                "a=rtpmap:8 PCMA/8000",
                "m=audio 5004 RTP/AVP 0",
                "m=video 5006 RTP/AVP 31",
                "m=image 5008 udptl t38",
                "",
            ]
        )
    )
    sdp = session(["PCMU", "PCMA"])
    negotiated = sdp.receive_offer(offer)
    assert (negotiated.remote_port, negotiated.codec.name) == (5002, "PCMU")
    answer = SessionDescription.parse(sdp.create_answer())
    assert [(m.media, m.port, m.proto, m.formats) for m in answer.media] == [
        ("audio", 0, "RTP/SAVP", ["0"]),
        ("audio", 40000, "RTP/AVP", ["0"]),
        ("audio", 0, "RTP/AVP", ["0"]),
        ("video", 0, "RTP/AVP", ["31"]),
        ("image", 0, "udptl", ["t38"]),
    ]


def test_audio_without_common_codec_falls_through_to_next_audio() -> None:
    offer = audio_offer("18") + b"m=audio 30002 RTP/AVP 0\r\n"
    negotiated = session().receive_offer(offer)
    assert (negotiated.remote_port, negotiated.codec.name) == (30002, "PCMU")


@pytest.mark.parametrize(
    ("session_c", "media_c", "expected"),
    [
        ("c=IN IP4 192.0.2.1", None, "192.0.2.1"),
        ("c=IN IP4 192.0.2.1", "c=IN IP4 192.0.2.2", "192.0.2.2"),
        (None, "c=IN IP4 192.0.2.2", "192.0.2.2"),
        (None, "c=IN IP6 2001:db8::5", "2001:db8::5"),
        ("c=IN IP4 233.252.0.1/127", None, "233.252.0.1"),
    ],
)
def test_connection_media_level_wins(
    session_c: str | None, media_c: str | None, expected: str
) -> None:
    attributes = [media_c] if media_c else []
    negotiated = session().receive_offer(audio_offer("0", *attributes, connection=session_c))
    assert negotiated.remote_ip == expected
    assert negotiated.remote_rtcp == (expected, 30001)


@pytest.mark.parametrize(
    ("attributes", "rtcp"),
    [
        ((), ("192.0.2.50", 30001)),
        (("a=rtcp:31000",), ("192.0.2.50", 31000)),
        (("a=rtcp:31000 IN IP4 198.51.100.1",), ("198.51.100.1", 31000)),
        (("a=rtcp:31000 IN IP6 2001:db8::9",), ("2001:db8::9", 31000)),
        (("a=rtcp-mux",), ("192.0.2.50", 30001)),  # we do not multiplex: ignored
        (("a=rtcp:",), ("192.0.2.50", 30001)),
        (("a=rtcp:banana",), ("192.0.2.50", 30001)),
        (("a=rtcp:70000",), ("192.0.2.50", 30001)),
    ],
)
def test_rtcp_address(attributes: tuple[str, ...], rtcp: tuple[str, int]) -> None:
    assert session().receive_offer(audio_offer("0", *attributes)).remote_rtcp == rtcp


@pytest.mark.parametrize(
    ("attributes", "session_attr", "ptime"),
    [
        ((), "", None),
        (("a=ptime:30",), "", 30),
        (("a=ptime:20.0",), "", 20),
        ((), "a=ptime:40", 40),
        (("a=ptime:10",), "a=ptime:40", 10),
        (("a=ptime:soon",), "", None),
        (("a=ptime:0",), "", None),
    ],
)
def test_ptime(attributes: tuple[str, ...], session_attr: str, ptime: int | None) -> None:
    offer = audio_offer("0", *attributes, session=session_attr)
    assert session().receive_offer(offer).ptime == ptime


# -- directions and hold -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_attr", "session_attr", "connection", "remote", "local", "held"),
    [
        (None, "", "192.0.2.50", "sendrecv", "sendrecv", False),
        ("a=sendrecv", "", "192.0.2.50", "sendrecv", "sendrecv", False),
        ("a=sendonly", "", "192.0.2.50", "sendonly", "recvonly", True),
        ("a=recvonly", "", "192.0.2.50", "recvonly", "sendonly", False),
        ("a=inactive", "", "192.0.2.50", "inactive", "inactive", True),
        # RFC 2543 hold: the address says "do not send to me"
        (None, "", "0.0.0.0", "sendrecv", "recvonly", True),
        ("a=sendonly", "", "0.0.0.0", "sendonly", "recvonly", True),
        ("a=recvonly", "", "0.0.0.0", "recvonly", "inactive", True),
        (None, "", "::", "sendrecv", "recvonly", True),
        # session-level direction applies unless the media says otherwise
        (None, "a=sendonly", "192.0.2.50", "sendonly", "recvonly", True),
        (None, "a=inactive", "192.0.2.50", "inactive", "inactive", True),
        ("a=sendrecv", "a=inactive", "192.0.2.50", "sendrecv", "sendrecv", False),
    ],
)
def test_remote_direction_and_hold(
    media_attr: str | None,
    session_attr: str,
    connection: str,
    remote: str,
    local: str,
    held: bool,
) -> None:
    attributes = [media_attr] if media_attr else []
    addrtype = "IP6" if ":" in connection else "IP4"
    offer = audio_offer(
        "0", *attributes, session=session_attr, connection=f"c=IN {addrtype} {connection}"
    )
    sdp = session()
    negotiated = sdp.receive_offer(offer)
    assert (negotiated.remote_direction, negotiated.local_direction) == (remote, local)
    assert negotiated.on_hold_by_remote is held
    answer = SessionDescription.parse(sdp.create_answer())
    assert answer.media[0].has_attribute(local)


def test_asterisk_hold_reinvite() -> None:
    sdp = session(["PCMU"])
    sdp.receive_offer(ASTERISK_OFFER)
    sdp.create_answer()
    held = sdp.receive_offer(ASTERISK_HOLD)
    assert held.on_hold_by_remote
    assert held.local_direction == "recvonly"
    assert b"a=recvonly\r\n" in sdp.create_answer()


@pytest.mark.parametrize(
    ("offered", "ours", "expected"),
    [
        ("sendrecv", None, "sendrecv"),
        ("sendonly", None, "recvonly"),
        ("recvonly", None, "sendonly"),
        ("inactive", None, "inactive"),
        ("sendrecv", "sendonly", "sendonly"),  # we hold
        ("sendonly", "sendonly", "inactive"),  # both hold
        ("recvonly", "sendonly", "sendonly"),
        ("sendrecv", "recvonly", "recvonly"),
        ("sendrecv", "inactive", "inactive"),
        ("recvonly", "sendrecv", "sendonly"),  # cannot receive from a peer that won't send
        ("inactive", "sendrecv", "inactive"),
    ],
)
def test_answer_direction(offered: str, ours: str | None, expected: str) -> None:
    sdp = session()
    sdp.receive_offer(audio_offer("0", f"a={offered}"))
    answer = SessionDescription.parse(sdp.create_answer(direction=ours))
    directions = [
        name for name, _ in answer.media[0].attributes if name.endswith(("only", "recv", "active"))
    ]
    assert directions == [expected]
    assert sdp.negotiated is not None
    assert sdp.negotiated.local_direction == expected


def test_answer_rejects_unknown_direction() -> None:
    sdp = session()
    sdp.receive_offer(SIPP_UAC)
    with pytest.raises(ValueError, match="direction"):
        sdp.create_answer(direction="hold")


# -- the answer we write -----------------------------------------------------------------


def test_answer_to_freeswitch_opus_exact_bytes() -> None:
    assert answer_to(FREESWITCH_OFFER, ["opus", "PCMU"]) == crlf(
        "v=0\n"
        "o=callboard 5000 5000 IN IP4 192.0.2.10\n"
        "s=callboard\n"
        "c=IN IP4 192.0.2.10\n"
        "t=0 0\n"
        "m=audio 40000 RTP/AVP 102 103\n"
        "a=rtpmap:102 opus/48000/2\n"
        "a=fmtp:102 minptime=10;useinbandfec=1\n"
        "a=rtpmap:103 telephone-event/48000\n"
        "a=fmtp:103 0-16\n"
        "a=ptime:20\n"
        "a=sendrecv\n"
        "a=rtcp:40001\n"
    )


def test_answer_to_sipp_has_rtpmap_for_static_codec_and_no_dtmf() -> None:
    answer = SessionDescription.parse(answer_to(SIPP_UAC))
    assert answer.media[0].formats == ["0"]
    assert answer.media[0].attribute_values("rtpmap") == ["0 PCMU/8000"]
    assert answer.media[0].attribute_values("fmtp") == []


def test_answer_over_ipv6() -> None:
    sdp = SdpSession(local_ip="2001:db8::1", local_port=40000, codecs=["PCMU"])
    sdp.receive_offer(LINPHONE_OFFER)
    answer = sdp.create_answer()
    assert b"c=IN IP6 2001:db8::1\r\n" in answer
    assert SessionDescription.parse(answer).origin.addrtype == "IP6"


def test_failed_offer_leaves_previous_negotiation() -> None:
    sdp = session(["PCMU"])
    first = sdp.receive_offer(ASTERISK_OFFER)
    answer = sdp.create_answer()
    with pytest.raises(NegotiationError):
        sdp.receive_offer(audio_offer("18"))  # re-INVITE we must 488
    with pytest.raises(SdpError):
        sdp.receive_offer(b"v=0\r\ngarbage\r\n")
    assert sdp.negotiated == first
    assert sdp.create_answer() == answer


def test_create_answer_needs_an_offer() -> None:
    with pytest.raises(RuntimeError, match="no SDP offer"):
        session().create_answer()


def test_local_port_set_after_bind() -> None:
    sdp = SdpSession(local_ip="192.0.2.10", local_port=0, codecs=["PCMU"])
    sdp.receive_offer(SIPP_UAC)
    with pytest.raises(RuntimeError, match="local_port"):
        sdp.create_answer()
    sdp.local_port = 41000
    assert b"m=audio 41000 RTP/AVP 0\r\n" in sdp.create_answer()
