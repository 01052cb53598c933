"""Reading a peer's description: which stream we can use and where to send to.

These are the rules that do not depend on whether the peer's SDP is an offer or an answer:
which m= lines are plain RTP audio, how the transport address is found (c= at media level
wins over session level; RFC 3605 ``a=rtcp`` or port + 1), ptime, and which
``telephone-event`` entry goes with the chosen codec.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass

from callboard.sdp.codecs import TELEPHONE_EVENT, RtpMap
from callboard.sdp.description import MediaDescription, SessionDescription

# Plain RTP only: the SAVP family needs SRTP keys (SDES or DTLS) we do not negotiate here.
# AVPF is AVP plus feedback messages a receiver may ignore (RFC 4585 §4.2), so we can
# answer it like AVP.
RTP_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF"})

_PTIME = re.compile(r"([0-9]{1,4})(?:\.[0-9]*)?")
_NARROWBAND_RATE = 8000


@dataclass(frozen=True)
class RemoteEndpoint:
    ip: str
    port: int
    rtcp: tuple[str, int]


def is_rtp_audio(media: MediaDescription) -> bool:
    """An enabled (port != 0) plain-RTP audio stream."""
    return media.media.lower() == "audio" and media.port != 0 and media.proto in RTP_PROTOS


def remote_endpoint(session: SessionDescription, media: MediaDescription) -> RemoteEndpoint | None:
    """Where the peer receives RTP and RTCP for ``media``; None without a c= address that is
    an IP address (media never waits for DNS, so a host name or junk there is unusable)."""
    address = media.connection or session.connection
    if not address:
        return None
    ip = address.split("/", 1)[0]  # drop a multicast "/ttl" suffix
    if not _is_ip(ip):
        return None
    return RemoteEndpoint(ip=ip, port=media.port, rtcp=_rtcp_address(media, ip))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _rtcp_address(media: MediaDescription, ip: str) -> tuple[str, int]:
    # RFC 3605: "a=rtcp:53020" or "a=rtcp:53020 IN IP4 192.0.2.1". Peers behind NAT-aware
    # gear rely on this, so a malformed line falls back to the RFC 3550 default, not an error.
    fallback = (ip, media.port + 1)
    value = media.attribute("rtcp")
    if not value:
        return fallback
    fields = value.split()
    if not fields[0].isascii() or not fields[0].isdigit() or not 0 < int(fields[0]) <= 65535:
        return fallback
    port = int(fields[0])
    if len(fields) == 4 and fields[1] == "IN":
        return (fields[3], port)
    return (ip, port)


def ptime_of(session: SessionDescription, media: MediaDescription) -> int | None:
    """Packet time the peer wants to receive, in ms (``a=ptime``, media level first)."""
    value = media.attribute("ptime") or session.attribute("ptime")
    match = _PTIME.fullmatch((value or "").strip())
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1))


def choose_dtmf(
    rtpmaps: dict[int, RtpMap], codec_clock_rate: int, allowed_rates: Collection[int]
) -> tuple[int, int] | None:
    """(payload type, clock rate) of the telephone-event entry to use with a codec.

    RFC 4733 §2.1 wants the event clock to be the audio clock, so that rate wins. For a
    wideband codec whose peer only lists telephone-event/8000 (common with opus from
    Asterisk and FreeSWITCH) we still use the 8000 one: DTMF that works beats none.
    """
    events = [
        (pt, rtpmap.clock_rate)
        for pt, rtpmap in rtpmaps.items()
        if rtpmap.encoding.lower() == TELEPHONE_EVENT and rtpmap.clock_rate in allowed_rates
    ]
    for rate in (codec_clock_rate, _NARROWBAND_RATE):
        for pt, event_rate in events:
            if event_rate == rate:
                return pt, event_rate
    return None
