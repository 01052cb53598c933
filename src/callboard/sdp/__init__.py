"""SDP: the description data model (RFC 8866) and offer/answer for audio (RFC 3264)."""

from callboard.sdp.description import (
    MediaDescription,
    Origin,
    SdpError,
    SessionDescription,
)
from callboard.sdp.negotiation import (
    CodecChoice,
    NegotiatedMedia,
    NegotiationError,
    SdpSession,
)

__all__ = [
    "CodecChoice",
    "MediaDescription",
    "NegotiatedMedia",
    "NegotiationError",
    "Origin",
    "SdpError",
    "SdpSession",
    "SessionDescription",
]
