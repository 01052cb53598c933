"""Checks on a new inbound INVITE before any call or leg exists for it: the SDP offer must
parse and offer a codec we have, and a Session-Expires must not be below our Min-SE."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from callboard.sdp.description import SdpError, SessionDescription
from callboard.sdp.negotiation import NegotiationError, SdpSession
from callboard.sip.call_model import ALL_CODECS, TimerSettings
from callboard.sip.message import SipRequest
from callboard.sip.session_timer import parse_session_expires

log = logging.getLogger(__name__)

STATIC_PT_NAMES = {0: "PCMU", 8: "PCMA", 9: "G722"}


@dataclass(frozen=True)
class Refusal:
    status: int
    headers: tuple[tuple[str, str], ...] = ()


def offered_codec_order(offer: bytes) -> list[str]:
    """The supported codecs of the first audio stream, in the offerer's preference order."""
    desc = SessionDescription.parse(offer)
    names: list[str] = []
    for media in desc.media:
        if media.media != "audio" or media.port == 0:
            continue
        rtpmaps = {}
        for value in media.attribute_values("rtpmap"):
            pt, _, rest = value.partition(" ")
            rtpmaps[pt] = rest.split("/")[0]
        for fmt in media.formats:
            name = rtpmaps.get(fmt) or STATIC_PT_NAMES.get(int(fmt) if fmt.isdigit() else -1)
            if not name:
                continue
            for supported in ALL_CODECS:
                if name.lower() == supported.lower() and supported not in names:
                    names.append(supported)
        break
    return names


def screen_invite(
    request: SipRequest, timers: TimerSettings, advertised_ip: str
) -> list[str] | Refusal:
    """The codecs to answer with, in the caller's order, or the response that refuses it."""
    if request.body:
        if request.content_type != "application/sdp":
            return Refusal(415, (("Accept", "application/sdp"),))
        try:
            codecs = offered_codec_order(request.body)
            if not codecs:
                raise NegotiationError("no supported audio codec offered")
            # Validate fully now so that a bad offer never creates a leg.
            SdpSession(local_ip=advertised_ip, local_port=9, codecs=codecs).receive_offer(
                request.body
            )
        except SdpError as exc:
            log.info("INVITE %s with malformed SDP: %s", request.call_id, exc)
            return Refusal(400, (("Warning", f'399 callboard "Bad SDP: {warning_text(exc)}"'),))
        except NegotiationError as exc:
            log.info("INVITE %s: %s", request.call_id, exc)
            return Refusal(488, (("Warning", '304 callboard "Media type not available"'),))
    else:
        codecs = list(ALL_CODECS)
    se = parse_session_expires(request.headers.get("Session-Expires"))
    if se is not None and se[0] < timers.min_se:
        return Refusal(422, (("Min-SE", str(timers.min_se)),))
    return codecs


def warning_text(exc: Exception) -> str:
    """An error fit for a Warning header's quoted text: one line, no quotes, short."""
    return str(exc).replace('"', "'").replace("\r", " ").replace("\n", " ")[:80]
