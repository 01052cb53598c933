"""A browser's SDP offer read, and our answer written (JSEP, RFC 8829), without I/O.

We accept one audio stream: the first audio m= section a WebRTC peer can carry (DTLS-SRTP,
rtcp-mux). Every other section (video, data channels, a second audio) is rejected with port
0 as JSEP allows, and the BUNDLE group keeps only the accepted one. ICE credentials and the
DTLS fingerprint may sit at session or media level; media level wins.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from callboard.sdp.codecs import TELEPHONE_EVENT, RtpMap, fmtp_of, payload_map, payload_types
from callboard.sdp.description import MediaDescription, SdpError, SessionDescription

WEBRTC_PROTOS = frozenset({"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP"})
# What we take, best first: Opus at 48 kHz, then G.711 (issue 12).
PREFERRED_CODECS = (("opus", 48000), ("PCMU", 8000), ("PCMA", 8000))
_OPUS_FMTP = "minptime=10;useinbandfec=1"
_SETUP_ANSWERS = {"actpass": "passive", "active": "passive", "passive": "active"}


class OfferError(ValueError):
    """The offer cannot be answered; the message is fit for a 400."""


@dataclass(frozen=True)
class AudioChoice:
    codec: str  # our codec name: "opus", "PCMU", "PCMA"
    payload_type: int
    rtpmap: RtpMap
    dtmf_payload_type: int | None  # telephone-event at the codec's clock rate, if offered


@dataclass(frozen=True)
class WebRtcOffer:
    description: SessionDescription
    audio_index: int  # which m= section we take
    mid: str | None
    ice_ufrag: str
    ice_pwd: str
    fingerprint: tuple[str, str]  # (hash function, colon-separated hex), e.g. ("sha-256", ...)
    setup: str  # the offer's a=setup: actpass, active or passive
    direction: str
    audio: AudioChoice
    candidates: list[str] = field(default_factory=list)  # "candidate:..." values
    end_of_candidates: bool = False

    @property
    def we_are_dtls_server(self) -> bool:
        """An offer of actpass or active leaves the server role (setup:passive) to us."""
        return _SETUP_ANSWERS[self.setup] == "passive"


def parse_offer(text: str) -> WebRtcOffer:
    """The browser's offer -> what we answer with; OfferError for anything unusable."""
    if not text or not text.strip():
        raise OfferError("invalid SDP offer: empty")
    try:
        description = SessionDescription.parse(text)
    except SdpError as exc:
        raise OfferError(f"invalid SDP offer: {exc}") from None
    index = next(
        (i for i, m in enumerate(description.media) if m.media.lower() == "audio" and m.port != 0),
        None,
    )
    if index is None:
        raise OfferError("the offer has no audio stream")
    media = description.media[index]
    if media.proto not in WEBRTC_PROTOS:
        raise OfferError(
            f"the audio stream is {media.proto}, not DTLS-SRTP (UDP/TLS/RTP/SAVPF); "
            "SIP peers call the SIP address instead"
        )
    ufrag = _either(media, description, "ice-ufrag")
    pwd = _either(media, description, "ice-pwd")
    if not ufrag or not pwd:
        raise OfferError("the offer has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
    if not (4 <= len(ufrag) <= 256 and 22 <= len(pwd) <= 256):
        raise OfferError("the offer's ICE credentials have the wrong length (RFC 8839 5.4)")
    fingerprint = _fingerprint(media, description)
    setup = (_either(media, description, "setup") or "actpass").lower()
    if setup not in _SETUP_ANSWERS:
        raise OfferError(f"unsupported a=setup:{setup[:20]} in the offer")
    if not media.has_attribute("rtcp-mux"):
        raise OfferError("the offer does not multiplex RTCP (a=rtcp-mux), which WebRTC requires")
    return WebRtcOffer(
        description=description,
        audio_index=index,
        mid=media.attribute("mid"),
        ice_ufrag=ufrag,
        ice_pwd=pwd,
        fingerprint=fingerprint,
        setup=setup,
        direction=_direction(media, description),
        audio=_choose_audio(media),
        candidates=media.attribute_values("candidate"),
        end_of_candidates=media.has_attribute("end-of-candidates"),
    )


def _either(media: MediaDescription, session: SessionDescription, name: str) -> str | None:
    value = media.attribute(name)
    return value if value is not None else session.attribute(name)


def _fingerprint(media: MediaDescription, session: SessionDescription) -> tuple[str, str]:
    values = media.attribute_values("fingerprint") or session.attribute_values("fingerprint")
    for value in values:
        algorithm, _, digest = value.strip().partition(" ")
        if algorithm.lower() == "sha-256" and len(digest.strip()) == 95:
            return "sha-256", digest.strip().upper()
    raise OfferError("the offer has no sha-256 DTLS fingerprint (a=fingerprint:sha-256 ...)")


def _direction(media: MediaDescription, session: SessionDescription) -> str:
    for attributes in (media, session):
        for name in ("sendrecv", "sendonly", "recvonly", "inactive"):
            if attributes.has_attribute(name):
                return name
    return "sendrecv"


def _choose_audio(media: MediaDescription) -> AudioChoice:
    offered = payload_map(media)
    for name, rate in PREFERRED_CODECS:
        for pt in payload_types(media):
            rtpmap = offered.get(pt)
            if rtpmap and rtpmap.encoding.lower() == name.lower() and rtpmap.clock_rate == rate:
                dtmf = next(
                    (
                        p
                        for p, m in offered.items()
                        if m.encoding.lower() == TELEPHONE_EVENT and m.clock_rate == rate
                    ),
                    None,
                )
                return AudioChoice(name, pt, rtpmap, dtmf)
    raise OfferError("no codec in common: the offer has none of opus/48000, PCMU, PCMA")


@dataclass(frozen=True)
class LocalParameters:
    ice_ufrag: str
    ice_pwd: str
    fingerprint: str  # sha-256, colon-separated upper-case hex
    ssrc: int
    cname: str = field(default_factory=lambda: secrets.token_hex(8))


_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


def build_answer(offer: WebRtcOffer, local: LocalParameters, candidates: list[str]) -> str:
    """Our answer: the chosen audio stream and every other section rejected. `candidates`
    are "candidate:..." values known now (none when they trickle later)."""
    origin = f"o=- {secrets.randbits(62)} 2 IN IP4 0.0.0.0"
    lines = ["v=0", origin, "s=-", "t=0 0"]
    accepted_mid = offer.mid
    if accepted_mid is not None and any(
        v.split()[:1] == ["BUNDLE"] for v in offer.description.attribute_values("group")
    ):
        lines.append(f"a=group:BUNDLE {accepted_mid}")
    for index, media in enumerate(offer.description.media):
        if index == offer.audio_index:
            lines += _audio_section(offer, local, candidates)
        else:
            lines += _rejected_section(media)
    return "\r\n".join(lines) + "\r\n"


def _audio_section(offer: WebRtcOffer, local: LocalParameters, candidates: list[str]) -> list[str]:
    audio = offer.audio
    formats = [str(audio.payload_type)]
    if audio.dtmf_payload_type is not None:
        formats.append(str(audio.dtmf_payload_type))
    media = offer.description.media[offer.audio_index]
    lines = [
        f"m=audio 9 {media.proto} {' '.join(formats)}",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        f"a=ice-ufrag:{local.ice_ufrag}",
        f"a=ice-pwd:{local.ice_pwd}",
        "a=ice-options:trickle",
        f"a=fingerprint:sha-256 {local.fingerprint}",
        f"a=setup:{_SETUP_ANSWERS[offer.setup]}",
    ]
    if offer.mid is not None:
        lines.append(f"a=mid:{offer.mid}")
    lines += [f"a={_ANSWER_DIRECTION[offer.direction]}", "a=rtcp-mux"]
    rtpmap = audio.rtpmap
    lines.append(f"a=rtpmap:{rtpmap.to_value(audio.payload_type)}")
    if audio.codec == "opus":
        lines.append(f"a=fmtp:{audio.payload_type} {_OPUS_FMTP}")
    if audio.dtmf_payload_type is not None:
        pt = audio.dtmf_payload_type
        lines.append(f"a=rtpmap:{pt} {TELEPHONE_EVENT}/{rtpmap.clock_rate}")
        lines.append(f"a=fmtp:{pt} {fmtp_of(media, pt) or '0-15'}")
    lines += [f"a=candidate:{c.removeprefix('candidate:')}" for c in candidates]
    lines.append(f"a=ssrc:{local.ssrc} cname:{local.cname}")
    return lines


def _rejected_section(media: MediaDescription) -> list[str]:
    formats = " ".join(media.formats) or "0"
    lines = [f"m={media.media} 0 {media.proto} {formats}", "c=IN IP4 0.0.0.0"]
    mid = media.attribute("mid")
    if mid is not None:
        lines.append(f"a=mid:{mid}")
    return lines
