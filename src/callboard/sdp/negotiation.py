"""RFC 3264 offer/answer for one audio stream per call.

:class:`SdpSession` is sans-IO like the SIP core: it takes the peer's SDP bytes and gives
back ours plus a :class:`NegotiatedMedia` saying where to send what. It owns our ``o=``
line, so the version rules of RFC 3264 §8 live in one place: every SDP we send that differs
from the previous one gets version + 1, and an identical one keeps its version (a
retransmitted or repeated answer must be byte-identical).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from callboard.sdp import direction as dirs
from callboard.sdp.codecs import (
    TELEPHONE_EVENT,
    TELEPHONE_EVENT_FMTP,
    TELEPHONE_EVENT_PT,
    TELEPHONE_EVENT_WIDEBAND_PT,
    CodecSpec,
    RtpMap,
    fmtp_of,
    free_dynamic_payload_type,
    payload_map,
    resolve_codecs,
)
from callboard.sdp.description import MediaDescription, Origin, SessionDescription
from callboard.sdp.remote import (
    choose_dtmf,
    is_rtp_audio,
    ptime_of,
    remote_endpoint,
)

OUR_PTIME_MS = 20  # the media clock ticks in 20 ms frames; asking for more would mean re-framing
SESSION_NAME = "callboard"


class NegotiationError(ValueError):
    """No usable audio stream or no codec in common; the caller answers 488."""


@dataclass(frozen=True)
class CodecChoice:
    """The codec both sides use; ``fmtp`` is the peer's parameters for it (what it wants to
    receive, e.g. opus ``maxplaybackrate``), which is what our encoder must honour."""

    name: str
    payload_type: int  # the number we put on packets we send
    clock_rate: int
    channels: int
    fmtp: str | None


@dataclass(frozen=True)
class NegotiatedMedia:
    remote_ip: str
    remote_port: int
    remote_rtcp: tuple[str, int]
    codec: CodecChoice
    dtmf_payload_type: int | None  # for DTMF we send; None when the peer offered none usable
    local_direction: str  # what WE do: sendrecv | sendonly | recvonly | inactive
    remote_direction: str  # what the peer declared
    ptime: int | None  # what the peer asked to receive, ms
    dtmf_clock_rate: int | None = None  # 8000, or 48000 with opus when both sides have it
    # Numbers the peer puts on packets it sends us. They equal the send numbers except when
    # we offered and the answer renumbered (allowed by RFC 3264 §6.1: the answerer sends
    # with the offer's numbers, the offerer with the answer's).
    receive_payload_type: int | None = None
    receive_dtmf_payload_type: int | None = None

    @property
    def on_hold_by_remote(self) -> bool:
        """The peer stopped receiving: a=sendonly / a=inactive, or an RFC 2543 c=0.0.0.0."""
        return (
            self.remote_direction in (dirs.SENDONLY, dirs.INACTIVE)
            or self.remote_ip in dirs.HOLD_ADDRESSES
        )


@dataclass(frozen=True)
class _AudioFormats:
    """What one m=audio line of ours carries: codecs and telephone-event entries with the
    payload type numbers we receive them on."""

    proto: str
    codecs: tuple[tuple[int, CodecSpec], ...]
    events: tuple[tuple[int, int], ...]  # (payload type, clock rate)


@dataclass(frozen=True)
class _LocalOffer:
    formats: _AudioFormats
    direction: str
    audio_index: int


@dataclass(frozen=True)
class _RemoteOffer:
    description: SessionDescription
    audio_index: int
    formats: _AudioFormats  # the chosen codec and DTMF, with the offer's numbers
    effective_direction: str  # declared direction, minus receiving if c= is a hold address
    negotiated: NegotiatedMedia


class SdpSession:
    """One per call: owns our o= line (session id random, version +1 on every changed SDP
    we send, RFC 3264 §8) and the last offer/answer."""

    def __init__(
        self,
        *,
        local_ip: str,
        local_port: int,
        codecs: Sequence[str],
        username: str = "callboard",
        session_id: int | None = None,
    ) -> None:
        self._codecs = resolve_codecs(codecs)
        if not username or any(ch.isspace() for ch in username):
            raise ValueError(f"o= username must be one non-empty token: {username!r}")
        self.local_ip = local_ip
        self.local_port = local_port
        self.username = username
        # 31 bits: ample for uniqueness per (username, address) and within what every
        # deployed parser accepts, some of which choke on full 64-bit numbers.
        self.session_id = secrets.randbelow(2**31 - 1) + 1 if session_id is None else session_id
        self.session_version = self.session_id
        self._origin_address: str | None = None  # frozen at first send: o= must not change
        self._last_sent: tuple[SessionDescription, bytes] | None = None
        self._audio_index = 0  # position of our audio stream among the m= lines we send
        self._local_offer: _LocalOffer | None = None
        self._remote_offer: _RemoteOffer | None = None
        self._agreed: _AudioFormats | None = None  # what the last completed exchange settled
        self._negotiated: NegotiatedMedia | None = None

    # -- local transport address (the RTP port is often known only after bind) ----------

    @property
    def local_ip(self) -> str:
        return self._local_ip

    @local_ip.setter
    def local_ip(self, value: str) -> None:
        self._local_ip = str(ipaddress.ip_address(value))  # ValueError for non-IP text

    @property
    def local_port(self) -> int:
        return self._local_port

    @local_port.setter
    def local_port(self, value: int) -> None:
        # 0 = not bound yet; 65535 is excluded because RTCP goes on port + 1.
        if not 0 <= value <= 65534:
            raise ValueError(f"RTP port out of range: {value}")
        self._local_port = value

    # -- read-only state -------------------------------------------------------------------

    @property
    def negotiated(self) -> NegotiatedMedia | None:
        """The outcome of the latest successful offer/answer step."""
        return self._negotiated

    @property
    def last_local_sdp(self) -> bytes | None:
        """The exact bytes of the last SDP we produced, for retransmissions."""
        return None if self._last_sent is None else self._last_sent[1]

    # -- we offer ----------------------------------------------------------------------------

    def create_offer(self, *, direction: str = dirs.SENDRECV) -> bytes:
        """Offer every codec we have, in preference order, plus telephone-event."""
        events = [(TELEPHONE_EVENT_PT, 8000)]
        if any(spec.clock_rate == 48000 for spec in self._codecs):
            events.append((TELEPHONE_EVENT_WIDEBAND_PT, 48000))
        formats = _AudioFormats(
            proto="RTP/AVP",
            codecs=tuple((spec.payload_type, spec) for spec in self._codecs),
            events=tuple(events),
        )
        return self._offer(formats, dirs.check_direction(direction))

    def create_reoffer(self, *, direction: str) -> bytes:
        """A re-INVITE offer (hold = "sendonly", resume = "sendrecv") narrowed to the codec
        already in use, so the peer cannot switch codecs under a hold."""
        if self._agreed is None:
            raise RuntimeError("no completed offer/answer to re-offer")
        formats = self._agreed
        if not formats.events:
            # Nothing was agreed for DTMF; offer the customary 8 kHz events again, on a number
            # the agreed codec does not use (a peer may have given opus number 101).
            taken = {pt for pt, _ in formats.codecs}
            event_pt = free_dynamic_payload_type(taken, TELEPHONE_EVENT_PT)
            formats = replace(formats, events=((event_pt, 8000),))
        return self._offer(formats, dirs.check_direction(direction))

    def receive_answer(self, answer: bytes | str) -> NegotiatedMedia:
        """Apply the peer's answer to our last offer."""
        offer = self._local_offer
        if offer is None:
            raise RuntimeError("received an SDP answer but no offer was sent")
        description = SessionDescription.parse(answer)
        if offer.audio_index >= len(description.media):
            raise NegotiationError("answer has fewer m= lines than our offer")
        media = description.media[offer.audio_index]
        if not is_rtp_audio(media):
            raise NegotiationError("peer rejected our audio stream")
        rtpmaps = payload_map(media)
        ours = {spec: pt for pt, spec in offer.formats.codecs}
        chosen = _first_offered(ours, rtpmaps)
        if chosen is None:
            raise NegotiationError("answer contains none of the codecs we offered")
        spec = chosen[1]
        our_events = {rate: event_pt for event_pt, rate in offer.formats.events}
        dtmf = choose_dtmf(rtpmaps, spec.clock_rate, our_events)
        declared = dirs.declared_direction(description, media)
        negotiated = _negotiated(
            description,
            media,
            codec=chosen,
            dtmf=dtmf,
            declared=declared,
            local_direction=dirs.intersect(
                offer.direction, dirs.reciprocal(_effective(description, media, declared))
            ),
            receive=(ours[spec], None if dtmf is None else our_events[dtmf[1]]),
        )
        # A re-offer keeps our own (receive) numbers for the agreed codec and DTMF.
        self._agreed = _AudioFormats(
            proto=offer.formats.proto,
            codecs=((ours[spec], spec),),
            events=() if dtmf is None else ((our_events[dtmf[1]], dtmf[1]),),
        )
        self._negotiated = negotiated
        return negotiated

    # -- the peer offers ---------------------------------------------------------------------

    def receive_offer(self, offer: bytes | str) -> NegotiatedMedia:
        """Pick a stream and codec from the peer's offer; nothing changes if that fails."""
        description = SessionDescription.parse(offer)
        remembered = self._choose_stream(description)
        self._remote_offer = remembered
        self._negotiated = remembered.negotiated
        return remembered.negotiated

    def create_answer(self, *, direction: str | None = None) -> bytes:
        """Answer the last received offer: one m= line per offered one, in order; ours
        carries only the chosen codec and DTMF, every other stream is refused with port 0."""
        remote = self._remote_offer
        if remote is None:
            raise RuntimeError("no SDP offer to answer")
        local_direction = dirs.reciprocal(remote.effective_direction)
        if direction is not None:
            local_direction = dirs.intersect(dirs.check_direction(direction), local_direction)
        media: list[MediaDescription] = []
        for index, offered in enumerate(remote.description.media):
            if index == remote.audio_index:
                media.append(self._audio_media(remote.formats, local_direction))
            else:
                media.append(
                    MediaDescription(offered.media, 0, offered.proto, list(offered.formats))
                )
        sdp = self._send(media)
        self._audio_index = remote.audio_index
        self._agreed = remote.formats
        self._negotiated = replace(remote.negotiated, local_direction=local_direction)
        return sdp

    # -- internals -------------------------------------------------------------------------

    def _choose_stream(self, description: SessionDescription) -> _RemoteOffer:
        reason = "offer has no plain RTP audio stream (SRTP and WebRTC are not handled here)"
        for index, media in enumerate(description.media):
            if not is_rtp_audio(media):
                continue
            if remote_endpoint(description, media) is None:
                reason = "offered audio stream has no c= address"
                continue
            rtpmaps = payload_map(media)
            chosen = _prefer(self._codecs, rtpmaps)
            if chosen is None:
                reason = "no codec in common with the offer"
                continue
            pt, spec = chosen
            dtmf = choose_dtmf(rtpmaps, spec.clock_rate, (8000, 48000))
            declared = dirs.declared_direction(description, media)
            effective = _effective(description, media, declared)
            negotiated = _negotiated(
                description,
                media,
                codec=chosen,
                dtmf=dtmf,
                declared=declared,
                local_direction=dirs.reciprocal(effective),
                receive=(pt, None if dtmf is None else dtmf[0]),
            )
            formats = _AudioFormats(
                proto=media.proto,
                codecs=((pt, spec),),
                events=() if dtmf is None else (dtmf,),
            )
            return _RemoteOffer(description, index, formats, effective, negotiated)
        raise NegotiationError(reason)

    def _offer(self, formats: _AudioFormats, direction: str) -> bytes:
        audio = self._audio_media(formats, direction)
        media = list(self._last_sent[0].media) if self._last_sent is not None else []
        # RFC 3264 §8: a new offer keeps every earlier m= line in place (refused ones stay
        # refused at port 0), so only our audio slot is replaced.
        if self._audio_index < len(media):
            media[self._audio_index] = audio
        else:
            self._audio_index = len(media)
            media.append(audio)
        sdp = self._send(media)
        self._local_offer = _LocalOffer(formats, direction, self._audio_index)
        return sdp

    def _audio_media(self, formats: _AudioFormats, direction: str) -> MediaDescription:
        if self.local_port == 0:
            raise RuntimeError("local_port must be set before creating SDP")
        media = MediaDescription(
            media="audio",
            port=self.local_port,
            proto=formats.proto,
            formats=[str(pt) for pt, _ in formats.codecs] + [str(pt) for pt, _ in formats.events],
        )
        for pt, spec in formats.codecs:
            # rtpmap even for static numbers: some peers ignore formats they cannot map.
            media.attributes.append(("rtpmap", spec.rtpmap.to_value(pt)))
            if spec.fmtp:
                media.attributes.append(("fmtp", f"{pt} {spec.fmtp}"))
        for pt, rate in formats.events:
            media.attributes.append(("rtpmap", RtpMap(TELEPHONE_EVENT, rate).to_value(pt)))
            media.attributes.append(("fmtp", f"{pt} {TELEPHONE_EVENT_FMTP}"))
        media.attributes += [
            ("ptime", str(OUR_PTIME_MS)),
            (direction, None),
            ("rtcp", str(self.local_port + 1)),
        ]
        return media

    def _send(self, media: list[MediaDescription]) -> bytes:
        if self._origin_address is None:
            self._origin_address = self.local_ip
        description = SessionDescription(
            origin=Origin(
                self.username,
                self.session_id,
                self.session_version,
                "IN",
                _addrtype(self._origin_address),
                self._origin_address,
            ),
            session_name=SESSION_NAME,
            connection=self.local_ip,
            media=media,
        )
        if self._last_sent is not None:
            previous, previous_bytes = self._last_sent
            if description == previous:
                return previous_bytes  # unchanged: same version, same bytes (RFC 3264 §8)
            self.session_version += 1
            description.origin.session_version = self.session_version
        sdp = description.to_bytes()
        self._last_sent = (description, sdp)
        return sdp


def _addrtype(ip: str) -> str:
    return "IP6" if ":" in ip else "IP4"


def _effective(session: SessionDescription, media: MediaDescription, declared: str) -> str:
    """The declared direction, minus receiving when c= is an RFC 2543 hold address: nothing
    can be sent to 0.0.0.0, whatever the a= line says."""
    endpoint = remote_endpoint(session, media)
    if endpoint is not None and endpoint.ip in dirs.HOLD_ADDRESSES:
        return dirs.without_receiving(declared)
    return declared


def _first_offered(
    ours: dict[CodecSpec, int], rtpmaps: dict[int, RtpMap]
) -> tuple[int, CodecSpec] | None:
    """The answer's first format that is one we offered: the answer's order is the
    answerer's preference, and it is the answerer's choice to make."""
    for pt, rtpmap in rtpmaps.items():
        for spec in ours:
            if spec.matches(rtpmap):
                return pt, spec
    return None


def _prefer(
    codecs: Sequence[CodecSpec], rtpmaps: dict[int, RtpMap]
) -> tuple[int, CodecSpec] | None:
    """Our preference order decides, the offer's number is kept (RFC 3264 §6.1 allows the
    answerer any order; the API user's list is what they asked for)."""
    for spec in codecs:
        for pt, rtpmap in rtpmaps.items():
            if spec.matches(rtpmap):
                return pt, spec
    return None


def _negotiated(
    description: SessionDescription,
    media: MediaDescription,
    *,
    codec: tuple[int, CodecSpec],
    dtmf: tuple[int, int] | None,
    declared: str,
    local_direction: str,
    receive: tuple[int, int | None],
) -> NegotiatedMedia:
    endpoint = remote_endpoint(description, media)
    if endpoint is None:
        raise NegotiationError("audio stream has no c= address")
    pt, spec = codec
    return NegotiatedMedia(
        remote_ip=endpoint.ip,
        remote_port=endpoint.port,
        remote_rtcp=endpoint.rtcp,
        codec=CodecChoice(spec.name, pt, spec.clock_rate, spec.channels, fmtp_of(media, pt)),
        dtmf_payload_type=None if dtmf is None else dtmf[0],
        local_direction=local_direction,
        remote_direction=declared,
        ptime=ptime_of(description, media),
        dtmf_clock_rate=None if dtmf is None else dtmf[1],
        receive_payload_type=receive[0],
        receive_dtmf_payload_type=receive[1],
    )
