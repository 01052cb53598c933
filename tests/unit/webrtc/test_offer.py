"""Reading a browser's offer and writing our answer (webrtc.offer)."""

from __future__ import annotations

import pytest

from callboard.sdp.description import SessionDescription
from callboard.webrtc.offer import LocalParameters, OfferError, build_answer, parse_offer

FINGERPRINT = ":".join(["AB"] * 32)
# Shaped like Chromium's: audio with opus, telephone-event at both clocks, then video and
# a data channel, everything bundled on mid 0.
CHROME_OFFER = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1 2\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
    "c=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:AbCd\r\na=ice-pwd:0123456789abcdefghijkl\r\na=ice-options:trickle\r\n"
    f"a=fingerprint:sha-256 {FINGERPRINT}\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=sendrecv\r\na=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n"
    "a=rtpmap:110 telephone-event/48000\r\na=rtpmap:126 telephone-event/8000\r\n"
    "a=candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host generation 0\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\n"
)
LOCAL = LocalParameters(
    ice_ufrag="wxyz", ice_pwd="p" * 22, fingerprint=":".join(["CD"] * 32), ssrc=1234
)


def test_a_chrome_offer_takes_opus_with_its_dtmf() -> None:
    offer = parse_offer(CHROME_OFFER)
    assert (offer.audio.codec, offer.audio.payload_type) == ("opus", 111)
    assert offer.audio.dtmf_payload_type == 110  # the 48 kHz one, opus's clock
    assert (offer.ice_ufrag, offer.mid, offer.audio_index) == ("AbCd", "0", 0)
    assert offer.fingerprint == ("sha-256", FINGERPRINT)
    assert offer.we_are_dtls_server
    assert offer.candidates == ["1 1 udp 2122260223 192.0.2.7 50000 typ host generation 0"]


def test_the_answer_keeps_audio_and_rejects_the_rest() -> None:
    answer = SessionDescription.parse(build_answer(parse_offer(CHROME_OFFER), LOCAL, []))
    audio, video, data = answer.media
    assert (audio.port, audio.formats) == (9, ["111", "110"])
    assert audio.attribute("setup") == "passive"
    assert audio.attribute("ice-ufrag") == "wxyz"
    assert audio.attribute("fingerprint") == "sha-256 " + LOCAL.fingerprint
    assert audio.has_attribute("rtcp-mux") and audio.has_attribute("sendrecv")
    assert audio.attribute_values("rtpmap") == ["111 opus/48000/2", "110 telephone-event/48000"]
    assert (video.port, video.attribute("mid")) == (0, "1")
    assert (data.port, data.attribute("mid")) == (0, "2")
    assert answer.attribute("group") == "BUNDLE 0"


def test_g711_when_the_browser_has_no_opus_and_direction_mirrored() -> None:
    offer_text = (
        CHROME_OFFER.replace("a=rtpmap:111 opus/48000/2\r\n", "")
        .replace(" 111 63", " 63")
        .replace("a=sendrecv", "a=sendonly")
        .replace("a=setup:actpass", "a=setup:passive")
    )
    offer = parse_offer(offer_text)
    assert (offer.audio.codec, offer.audio.payload_type) == ("PCMU", 0)
    assert offer.audio.dtmf_payload_type == 126
    answer = SessionDescription.parse(build_answer(offer, LOCAL, []))
    assert answer.media[0].has_attribute("recvonly")
    assert answer.media[0].attribute("setup") == "active"
    assert not offer.we_are_dtls_server


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: "", "invalid SDP offer: empty"),
        (lambda s: "not sdp", "invalid SDP offer"),
        (lambda s: s.replace("m=audio 9", "m=audio 0"), "no audio stream"),
        (lambda s: s.replace("UDP/TLS/RTP/SAVPF 111", "RTP/AVP 111"), "not DTLS-SRTP"),
        (lambda s: s.replace("a=ice-pwd:0123456789abcdefghijkl\r\n", ""), "ICE credentials"),
        (lambda s: s.replace("a=ice-pwd:0123456789abcdefghijkl", "a=ice-pwd:short"), "length"),
        (lambda s: s.replace("sha-256", "sha-1"), "fingerprint"),
        (lambda s: s.replace("a=rtcp-mux\r\n", ""), "rtcp-mux"),
        (lambda s: s.replace("a=setup:actpass", "a=setup:holdconn"), "a=setup"),
        (
            lambda s: (
                s.replace("opus/48000/2", "foo/48000")
                .replace("PCMU/8000", "x/8000")
                .replace("PCMA/8000", "y/8000")
                .replace(" 0 8 13", " 13")
            ),
            "no codec in common",
        ),
    ],
)
def test_unusable_offers_say_why(change, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(OfferError, match=message):
        parse_offer(change(CHROME_OFFER))
