"""We offer: create_offer, receive_answer, re-offers and the o= version rules."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from callboard.sdp import NegotiationError, SdpError, SdpSession, SessionDescription

from .sdp_samples import ASTERISK_OFFER, FREESWITCH_OFFER, LINPHONE_OFFER, SIPP_UAC, crlf


def session(codecs: Sequence[str] = ("opus", "PCMU", "PCMA", "G722")) -> SdpSession:
    return SdpSession(local_ip="192.0.2.10", local_port=40000, codecs=codecs, session_id=777)


def answer(formats: str, *attributes: str, version: int = 1, port: int = 20000) -> bytes:
    lines = [
        "v=0",
        f"o=peer 99 {version} IN IP4 198.51.100.20",
        "s=-",
        "c=IN IP4 198.51.100.20",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        *attributes,
    ]
    return crlf("\n".join(lines) + "\n")


def version_of(sdp: bytes) -> int:
    return SessionDescription.parse(sdp).origin.session_version


# -- the offer -----------------------------------------------------------------------------


def test_offer_exact_bytes() -> None:
    assert session().create_offer() == crlf(
        "v=0\n"
        "o=callboard 777 777 IN IP4 192.0.2.10\n"
        "s=callboard\n"
        "c=IN IP4 192.0.2.10\n"
        "t=0 0\n"
        "m=audio 40000 RTP/AVP 111 0 8 9 101 110\n"
        "a=rtpmap:111 opus/48000/2\n"
        "a=fmtp:111 minptime=10;useinbandfec=1\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=rtpmap:8 PCMA/8000\n"
        "a=rtpmap:9 G722/8000\n"
        "a=rtpmap:101 telephone-event/8000\n"
        "a=fmtp:101 0-16\n"
        "a=rtpmap:110 telephone-event/48000\n"
        "a=fmtp:110 0-16\n"
        "a=ptime:20\n"
        "a=sendrecv\n"
        "a=rtcp:40001\n"
    )


def test_narrowband_offer_has_only_8k_events_and_custom_username() -> None:
    sdp = SdpSession(local_ip="192.0.2.10", local_port=40000, codecs=["PCMA"], username="ivr")
    offer = SessionDescription.parse(sdp.create_offer(direction="sendonly"))
    assert offer.origin.username == "ivr"
    assert 0 < offer.origin.session_id < 2**31
    assert offer.media[0].formats == ["8", "101"]
    assert offer.media[0].has_attribute("sendonly")
    assert not offer.media[0].has_attribute("sendrecv")


def test_random_session_ids_differ() -> None:
    ids = {
        SdpSession(local_ip="192.0.2.1", local_port=4000, codecs=["PCMU"]).session_id
        for _ in range(20)
    }
    assert len(ids) > 15


@pytest.mark.parametrize(
    "kwargs",
    [
        {"codecs": ["PCMU", "iLBC"]},
        {"codecs": []},
        {"local_ip": "pbx.example.com"},
        {"local_port": 65535},
        {"local_port": -1},
        {"username": "two words"},
        {"username": ""},
    ],
)
def test_constructor_validation(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"local_ip": "192.0.2.1", "local_port": 4000, "codecs": ["PCMU"]}
    args.update(kwargs)
    with pytest.raises(ValueError):
        SdpSession(**args)  # type: ignore[arg-type]


def test_offer_rejects_unknown_direction() -> None:
    with pytest.raises(ValueError):
        session().create_offer(direction="hold")


# -- the answer to our offer -------------------------------------------------------------


@pytest.mark.parametrize(
    ("formats", "attributes", "name", "pt", "receive_pt", "dtmf", "receive_dtmf"),
    [
        ("0 101", ("a=rtpmap:101 telephone-event/8000",), "PCMU", 0, 0, 101, 101),
        # the answerer's order decides, not ours
        ("8 0", (), "PCMA", 8, 8, None, None),
        ("9", (), "G722", 9, 9, None, None),
        # a codec we did not offer is skipped
        ("18 8", (), "PCMA", 8, 8, None, None),
        # renumbered in the answer: we send with the answer's numbers, receive with ours
        (
            "96 97",
            ("a=rtpmap:96 opus/48000/2", "a=rtpmap:97 telephone-event/48000"),
            "opus",
            96,
            111,
            97,
            110,
        ),
        (
            "111 101",
            ("a=rtpmap:111 opus/48000/2", "a=rtpmap:101 telephone-event/8000"),
            "opus",
            111,
            111,
            101,
            101,
        ),
        # telephone-event at a rate we did not offer is not DTMF for us
        ("0 100", ("a=rtpmap:100 telephone-event/16000",), "PCMU", 0, 0, None, None),
    ],
)
def test_receive_answer(
    formats: str,
    attributes: tuple[str, ...],
    name: str,
    pt: int,
    receive_pt: int,
    dtmf: int | None,
    receive_dtmf: int | None,
) -> None:
    sdp = session()
    sdp.create_offer()
    negotiated = sdp.receive_answer(answer(formats, *attributes, "a=ptime:30"))
    assert (negotiated.codec.name, negotiated.codec.payload_type) == (name, pt)
    assert negotiated.receive_payload_type == receive_pt
    assert (negotiated.dtmf_payload_type, negotiated.receive_dtmf_payload_type) == (
        dtmf,
        receive_dtmf,
    )
    assert (negotiated.remote_ip, negotiated.remote_port) == ("198.51.100.20", 20000)
    assert negotiated.remote_rtcp == ("198.51.100.20", 20001)
    assert negotiated.ptime == 30
    assert sdp.negotiated == negotiated


def test_answer_must_pick_an_offered_codec_from_our_narrowed_list() -> None:
    sdp = session(["PCMU"])
    sdp.create_offer()
    with pytest.raises(NegotiationError, match="none of the codecs"):
        sdp.receive_answer(answer("8"))


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (answer("0", port=0), NegotiationError),  # stream refused
        (answer("18"), NegotiationError),
        (answer("0").replace(b"m=audio", b"m=video"), NegotiationError),
        (answer("0").replace(b"RTP/AVP", b"RTP/SAVP"), NegotiationError),
        (answer("0").replace(b"c=IN IP4 198.51.100.20\r\n", b""), NegotiationError),
        (b"", SdpError),
        (b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n", SdpError),  # no m= line
        (answer("0").replace(b"20000", b"99999"), SdpError),
    ],
)
def test_bad_answers(body: bytes, error: type[Exception]) -> None:
    sdp = session()
    sdp.create_offer()
    with pytest.raises(error):
        sdp.receive_answer(body)
    assert sdp.negotiated is None


def test_answer_without_offer() -> None:
    with pytest.raises(RuntimeError, match="no offer"):
        session().receive_answer(answer("0"))


@pytest.mark.parametrize(
    ("ours", "theirs", "connection", "local", "held"),
    [
        ("sendrecv", "sendrecv", "198.51.100.20", "sendrecv", False),
        ("sendrecv", "recvonly", "198.51.100.20", "sendonly", False),
        ("sendrecv", "sendonly", "198.51.100.20", "recvonly", True),
        ("sendonly", "recvonly", "198.51.100.20", "sendonly", False),
        ("sendonly", "inactive", "198.51.100.20", "inactive", True),
        ("sendonly", "sendrecv", "198.51.100.20", "sendonly", False),  # sloppy answerer
        ("recvonly", "sendonly", "198.51.100.20", "recvonly", True),
        ("sendrecv", "sendrecv", "0.0.0.0", "recvonly", True),
    ],
)
def test_answer_directions(ours: str, theirs: str, connection: str, local: str, held: bool) -> None:
    sdp = session()
    sdp.create_offer(direction=ours)
    body = answer("0", f"a={theirs}").replace(
        b"198.51.100.20\r\nt=", f"{connection}\r\nt=".encode()
    )
    negotiated = sdp.receive_answer(body)
    assert negotiated.remote_direction == theirs
    assert negotiated.local_direction == local
    assert negotiated.on_hold_by_remote is held


# -- versions (RFC 3264 §8) and re-offers ---------------------------------------------------


def test_versions_across_a_call_we_placed() -> None:
    sdp = session()
    offer = sdp.create_offer()
    assert version_of(offer) == 777
    assert sdp.create_offer() == offer  # retransmitted INVITE / repeated offer: unchanged
    assert sdp.last_local_sdp == offer
    sdp.receive_answer(answer("0 101", "a=rtpmap:101 telephone-event/8000"))

    hold = sdp.create_reoffer(direction="sendonly")
    assert version_of(hold) == 778
    assert SessionDescription.parse(hold).media[0].formats == ["0", "101"]
    assert b"a=sendonly\r\n" in hold
    assert sdp.receive_answer(answer("0 101", "a=recvonly")).local_direction == "sendonly"
    assert sdp.create_reoffer(direction="sendonly") == hold  # session refresh while held

    resume = sdp.create_reoffer(direction="sendrecv")
    assert version_of(resume) == 779
    assert b"a=sendrecv\r\n" in resume

    sdp.local_port = 42000  # media moved: a changed SDP
    moved = sdp.create_reoffer(direction="sendrecv")
    assert version_of(moved) == 780
    assert b"m=audio 42000 " in moved and b"a=rtcp:42001\r\n" in moved


def test_origin_stays_fixed_except_version() -> None:
    sdp = session()
    first = SessionDescription.parse(sdp.create_offer()).origin
    sdp.local_ip = "192.0.2.99"
    second = SessionDescription.parse(sdp.create_offer()).origin
    assert (second.username, second.session_id, second.address) == (
        first.username,
        first.session_id,
        first.address,
    )
    assert second.session_version == first.session_version + 1
    assert sdp.last_local_sdp is not None
    assert b"c=IN IP4 192.0.2.99\r\n" in sdp.last_local_sdp


def test_versions_across_a_call_we_answered() -> None:
    sdp = session(["PCMU", "opus"])
    sdp.receive_offer(FREESWITCH_OFFER)
    first = sdp.create_answer()
    assert sdp.create_answer() == first  # 200 OK retransmission
    sdp.receive_offer(FREESWITCH_OFFER)  # re-INVITE refresh with the same offer
    assert sdp.create_answer() == first
    assert version_of(sdp.create_answer(direction="sendonly")) == 778

    # A re-offer after answering keeps the offer's numbers for the agreed codec.
    reoffer = SessionDescription.parse(sdp.create_reoffer(direction="sendonly"))
    assert reoffer.media[0].formats == ["0", "101"]
    assert reoffer.origin.session_version == 778  # identical to the held answer
    resume = sdp.create_reoffer(direction="sendrecv")
    assert version_of(resume) == 779


def test_reoffer_keeps_refused_streams_in_place() -> None:
    sdp = session(["opus"])
    sdp.receive_offer(LINPHONE_OFFER)
    sdp.create_answer()
    reoffer = SessionDescription.parse(sdp.create_reoffer(direction="sendonly"))
    audio, video = reoffer.media
    assert (audio.port, audio.formats) == (40000, ["96", "101"])
    assert audio.attribute_values("rtpmap") == ["96 opus/48000/2", "101 telephone-event/48000"]
    assert (video.port, video.formats) == (0, ["96", "97"])

    reply = crlf(
        "v=0\no=alice 3012 1419 IN IP6 2001:db8::10\ns=Talk\nc=IN IP6 2001:db8::10\nt=0 0\n"
        "m=audio 7078 RTP/AVP 96 101\na=rtpmap:96 opus/48000/2\n"
        "a=rtpmap:101 telephone-event/48000\na=recvonly\nm=video 0 RTP/AVP 96\n"
    )
    negotiated = sdp.receive_answer(reply)
    assert (negotiated.codec.payload_type, negotiated.dtmf_payload_type) == (96, 101)
    assert negotiated.local_direction == "sendonly"


def test_reoffer_when_our_audio_was_not_the_first_stream() -> None:
    offer = crlf(
        "v=0\no=pbx 9 9 IN IP4 192.0.2.77\ns=-\nc=IN IP4 192.0.2.77\nt=0 0\n"
        "m=audio 5000 RTP/SAVP 0\nm=audio 5002 RTP/AVP 0\n"
    )
    sdp = session(["PCMU"])
    sdp.receive_offer(offer)
    sdp.create_answer()
    reoffer = SessionDescription.parse(sdp.create_reoffer(direction="sendonly"))
    assert [(m.port, m.proto) for m in reoffer.media] == [(0, "RTP/SAVP"), (40000, "RTP/AVP")]
    head = "v=0\no=pbx 9 10 IN IP4 192.0.2.77\ns=-\nc=IN IP4 192.0.2.77\nt=0 0\n"
    with pytest.raises(NegotiationError, match="fewer m= lines"):
        sdp.receive_answer(crlf(head + "m=audio 0 RTP/SAVP 0\n"))
    reply = crlf(head + "m=audio 0 RTP/SAVP 0\nm=audio 5002 RTP/AVP 0\na=recvonly\n")
    assert sdp.receive_answer(reply).local_direction == "sendonly"


def test_reoffer_without_agreed_dtmf_avoids_the_codec_number() -> None:
    offer = crlf(
        "v=0\no=x 1 1 IN IP4 192.0.2.8\ns=-\nc=IN IP4 192.0.2.8\nt=0 0\n"
        "m=audio 6000 RTP/AVP 101\na=rtpmap:101 opus/48000/2\n"
    )
    sdp = session(["opus"])
    assert sdp.receive_offer(offer).dtmf_payload_type is None
    sdp.create_answer()
    media = SessionDescription.parse(sdp.create_reoffer(direction="sendrecv")).media[0]
    assert media.formats == ["101", "96"]
    assert media.attribute_values("rtpmap") == ["101 opus/48000/2", "96 telephone-event/8000"]


def test_reoffer_needs_a_completed_exchange() -> None:
    sdp = session()
    sdp.create_offer()
    with pytest.raises(RuntimeError, match="re-offer"):
        sdp.create_reoffer(direction="sendonly")


def test_full_offer_again_after_narrowing_increments_version() -> None:
    sdp = session(["PCMU", "PCMA"])
    sdp.receive_offer(ASTERISK_OFFER)
    answered = sdp.create_answer()
    again = sdp.create_offer()  # e.g. an SDP-less re-INVITE: offer everything once more
    assert version_of(again) == version_of(answered) + 1
    assert SessionDescription.parse(again).media[0].formats == ["0", "8", "101"]


def test_sipp_call_both_ways_interoperates() -> None:
    """Our offer answered by a SIPp-style answer, and SIPp's offer answered by us, agree."""
    caller = session(["PCMA", "PCMU"])
    caller.create_offer()
    assert caller.receive_answer(SIPP_UAC).codec.name == "PCMU"
    callee = session(["PCMA", "PCMU"])
    callee.receive_offer(caller.create_offer())
    back = callee.create_answer()
    assert caller.receive_answer(back).codec.name == "PCMA"
    assert callee.negotiated is not None and caller.negotiated is not None
    assert callee.negotiated.dtmf_payload_type == caller.negotiated.dtmf_payload_type == 101
