"""Audio payload formats: what we can speak, and what a peer's ``m=`` line says it speaks.

An RTP format in SDP is a payload type number whose meaning comes from ``a=rtpmap`` or,
for the static numbers of RFC 3551, from the number alone. Codecs are compared by
(encoding name case-insensitively, clock rate, channels), never by payload type number,
because dynamic numbers differ from peer to peer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from callboard.sdp.description import MediaDescription

TELEPHONE_EVENT = "telephone-event"
TELEPHONE_EVENT_FMTP = "0-16"  # DTMF 0-9, *, #, A-D and flash (RFC 4733 §3.2)

# Dynamic payload types we use when we are the offerer. 111 for opus matches what browsers
# and most softphones use, which keeps packet captures easy to read; 101 is the customary
# DTMF number and the one the brief fixes.
TELEPHONE_EVENT_PT = 101
TELEPHONE_EVENT_WIDEBAND_PT = 110
_DYNAMIC_RANGE = range(96, 128)


@dataclass(frozen=True)
class RtpMap:
    """What a payload type number stands for: ``PCMU/8000``, ``opus/48000/2``."""

    encoding: str
    clock_rate: int
    channels: int = 1

    def to_value(self, payload_type: int) -> str:
        suffix = f"/{self.channels}" if self.channels != 1 else ""
        return f"{payload_type} {self.encoding}/{self.clock_rate}{suffix}"


# RFC 3551 §6, audio rows: these numbers mean the same thing with or without a=rtpmap.
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    0: RtpMap("PCMU", 8000),
    3: RtpMap("GSM", 8000),
    4: RtpMap("G723", 8000),
    5: RtpMap("DVI4", 8000),
    6: RtpMap("DVI4", 16000),
    7: RtpMap("LPC", 8000),
    8: RtpMap("PCMA", 8000),
    # G.722 samples at 16 kHz but RFC 3551 §4.5.2 fixes its RTP clock at 8000 (a historical
    # mistake every implementation now has to honour).
    9: RtpMap("G722", 8000),
    10: RtpMap("L16", 44100, 2),
    11: RtpMap("L16", 44100),
    12: RtpMap("QCELP", 8000),
    13: RtpMap("CN", 8000),
    14: RtpMap("MPA", 90000),
    15: RtpMap("G728", 8000),
    16: RtpMap("DVI4", 11025),
    17: RtpMap("DVI4", 22050),
    18: RtpMap("G729", 8000),
}


@dataclass(frozen=True)
class CodecSpec:
    """One codec we can encode and decode, and how we describe it in our own offers."""

    name: str
    clock_rate: int
    channels: int
    payload_type: int  # static number, or the dynamic number we pick when offering
    fmtp: str | None = None  # what we want to receive; sent in our offers and answers

    @property
    def rtpmap(self) -> RtpMap:
        return RtpMap(self.name, self.clock_rate, self.channels)

    def matches(self, rtpmap: RtpMap) -> bool:
        return (
            rtpmap.encoding.lower() == self.name.lower()
            and rtpmap.clock_rate == self.clock_rate
            and rtpmap.channels == self.channels
        )


SUPPORTED_CODECS: dict[str, CodecSpec] = {
    spec.name: spec
    for spec in (
        CodecSpec("PCMU", 8000, 1, 0),
        CodecSpec("PCMA", 8000, 1, 8),
        CodecSpec("G722", 8000, 1, 9),
        # RFC 7587 §7: opus is always "opus/48000/2" whatever is actually sent; inband FEC
        # lets us conceal single losses, minptime=10 is the RFC's recommended floor.
        CodecSpec("opus", 48000, 2, 111, "minptime=10;useinbandfec=1"),
    )
}


def resolve_codecs(names: Sequence[str]) -> tuple[CodecSpec, ...]:
    """Our codec names in preference order -> specs; ValueError for names we cannot do.

    ``telephone-event`` is accepted and skipped: DTMF is always offered, so listing it is
    harmless and need not be an error for a configuration that names it.
    """
    if isinstance(names, str):  # "PCMU" would otherwise read as ["P", "C", "M", "U"]
        raise ValueError("codecs must be a sequence of names, not a string")
    by_lower = {name.lower(): spec for name, spec in SUPPORTED_CODECS.items()}
    specs: list[CodecSpec] = []
    for name in names:
        if name.lower() == TELEPHONE_EVENT:
            continue
        spec = by_lower.get(name.lower())
        if spec is None:
            raise ValueError(f"unsupported codec {name!r}; known: {sorted(SUPPORTED_CODECS)}")
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ValueError("at least one audio codec is required")
    return tuple(specs)


def _is_number(text: str, max_digits: int) -> bool:
    # str.isdigit alone accepts "²" and other digits int() refuses.
    return text.isascii() and text.isdigit() and len(text) <= max_digits


def parse_rtpmap(value: str) -> tuple[int, RtpMap] | None:
    """``"96 opus/48000/2"`` -> (96, RtpMap); None when malformed (the format is then unknown)."""
    pt_text, _, encoding_text = value.strip().partition(" ")
    parts = encoding_text.strip().split("/")
    if not _is_number(pt_text, 3) or not 2 <= len(parts) <= 3:
        return None
    name, clock, *rest = parts
    channels = rest[0] if rest else "1"
    if not name or not _is_number(clock, 9) or not _is_number(channels, 3):
        return None
    return int(pt_text), RtpMap(name, int(clock), int(channels))


def payload_types(media: MediaDescription) -> list[int]:
    """The RTP payload type numbers of an m= line, in the peer's order, junk skipped."""
    numbers: list[int] = []
    for fmt in media.formats:
        if _is_number(fmt, 3) and int(fmt) < 128 and int(fmt) not in numbers:
            numbers.append(int(fmt))
    return numbers


def payload_map(media: MediaDescription) -> dict[int, RtpMap]:
    """Payload type -> meaning for every format of ``media`` we can identify, in m= order."""
    declared: dict[int, RtpMap] = {}
    for value in media.attribute_values("rtpmap"):
        parsed = parse_rtpmap(value)
        if parsed is not None:
            declared.setdefault(*parsed)  # first rtpmap for a number wins
    known: dict[int, RtpMap] = {}
    for pt in payload_types(media):
        rtpmap = declared.get(pt) or STATIC_PAYLOAD_TYPES.get(pt)
        if rtpmap is not None:
            known[pt] = rtpmap
    return known


def fmtp_of(media: MediaDescription, payload_type: int) -> str | None:
    """Parameters of ``a=fmtp:<pt> ...`` for one payload type, if the peer gave any."""
    for value in media.attribute_values("fmtp"):
        pt_text, _, params = value.strip().partition(" ")
        if pt_text == str(payload_type):
            return params.strip() or None
    return None


def free_dynamic_payload_type(taken: set[int], preferred: int) -> int:
    """``preferred`` unless already used, else the lowest free dynamic number."""
    if preferred not in taken:
        return preferred
    for pt in _DYNAMIC_RANGE:
        if pt not in taken:
            return pt
    raise ValueError("no free dynamic payload type")
