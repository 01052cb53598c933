"""Media direction attributes (RFC 3264 §5.1, §6.1, §8.4).

A direction is treated as the pair (do I send?, do I receive?), which turns the offer/answer
rules into set operations: the answer's direction is the reciprocal of the offer's, narrowed
by what the answerer wants.
"""

from __future__ import annotations

from callboard.sdp.description import MediaDescription, SessionDescription

SENDRECV = "sendrecv"
SENDONLY = "sendonly"
RECVONLY = "recvonly"
INACTIVE = "inactive"
DIRECTIONS = (SENDRECV, SENDONLY, RECVONLY, INACTIVE)

_AS_FLAGS = {
    SENDRECV: (True, True),
    SENDONLY: (True, False),
    RECVONLY: (False, True),
    INACTIVE: (False, False),
}
_FROM_FLAGS = {flags: name for name, flags in _AS_FLAGS.items()}

# RFC 2543 put a call on hold by setting c= to the unspecified address; RFC 3264 §8.4 still
# asks answerers to understand it. "::" is the same idea for IPv6 peers.
HOLD_ADDRESSES = frozenset({"0.0.0.0", "::"})


def check_direction(direction: str) -> str:
    if direction not in _AS_FLAGS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    return direction


def reciprocal(direction: str) -> str:
    """What the other side does when one side declares ``direction``."""
    sends, receives = _AS_FLAGS[check_direction(direction)]
    return _FROM_FLAGS[(receives, sends)]


def intersect(first: str, second: str) -> str:
    """Only what both directions allow: intersect("sendonly", "recvonly") == "inactive"."""
    a_sends, a_receives = _AS_FLAGS[check_direction(first)]
    b_sends, b_receives = _AS_FLAGS[check_direction(second)]
    return _FROM_FLAGS[(a_sends and b_sends, a_receives and b_receives)]


def declared_direction(session: SessionDescription, media: MediaDescription) -> str:
    """The direction a peer declared for one stream: media level, else session level, else
    sendrecv (RFC 8866 §6.7)."""
    for attributes in (media.attributes, session.attributes):
        for name, _ in attributes:
            if name.lower() in _AS_FLAGS:
                return name.lower()
    return SENDRECV


def without_receiving(direction: str) -> str:
    """``direction`` with its receive half removed, for a peer that advertised a hold address
    (it cannot receive at 0.0.0.0, whatever its a= line says)."""
    return intersect(direction, SENDONLY)
