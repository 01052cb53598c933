"""Listening-quality estimate (MOS) from a simplified ITU-T G.107 E-model.

R = R0 - Is - Id - Ie,eff with the G.107 default R0 - Is = 93.2 (no noise, no echo),
Id from the one-way effective delay (the Cole-Rosenbluth fit of G.107's delay terms), and
Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl) for random loss (BurstR = 1).
R maps to MOS with the G.107 Annex B formula.
"""

from __future__ import annotations

from dataclasses import dataclass

R_DEFAULT = 93.2


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    ie: float  # equipment impairment without loss
    bpl: float  # packet-loss robustness with concealment
    bpl_no_plc: float  # ... when lost frames are replaced by silence
    delay_ms: float  # frame + lookahead, added to the effective delay


# G.711 from ITU-T G.113 Appendix I (Bpl 25.1 with Appendix I PLC, 4.3 without). The
# E-model's narrowband scale cannot credit wideband audio, so G.722 and Opus get Ie 0 like
# G.711; G.722 concealment here is the same fade as G.711; Opus decoder PLC with in-band
# FEC is more robust (Bpl in the range reported for modern PLC codecs).
IMPAIRMENTS: dict[str, CodecImpairment] = {
    "PCMU": CodecImpairment(ie=0.0, bpl=25.1, bpl_no_plc=4.3, delay_ms=20.0),
    "PCMA": CodecImpairment(ie=0.0, bpl=25.1, bpl_no_plc=4.3, delay_ms=20.0),
    "G722": CodecImpairment(ie=0.0, bpl=25.1, bpl_no_plc=4.3, delay_ms=21.5),
    "opus": CodecImpairment(ie=0.0, bpl=35.0, bpl_no_plc=10.0, delay_ms=26.5),
}


def delay_impairment(one_way_ms: float) -> float:
    """Id: grows slowly with delay, steeply beyond ~177 ms."""
    excess = max(0.0, one_way_ms - 177.3)
    return 0.024 * one_way_ms + 0.11 * excess


def effective_equipment_impairment(ie: float, bpl: float, loss_percent: float) -> float:
    return ie + (95.0 - ie) * loss_percent / (loss_percent + bpl)


def r_to_mos(r: float) -> float:
    """G.107 Annex B conversion of the rating factor R to MOS (conversational, CQE)."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)


def mos_score(
    loss_fraction: float,
    jitter_ms: float,
    rtt_ms: float = 0.0,
    codec: str = "PCMU",
    *,
    plc: bool = True,
) -> float:
    """Estimated MOS (1.0..4.5) for a received stream.

    The effective one-way delay is half the RTT, plus a jitter buffer of about twice the
    interarrival jitter, plus the codec's frame and lookahead.
    """
    impairment = IMPAIRMENTS.get(codec) or IMPAIRMENTS.get(codec.upper()) or IMPAIRMENTS["PCMU"]
    loss_percent = min(max(loss_fraction, 0.0), 1.0) * 100.0
    one_way_ms = max(rtt_ms, 0.0) / 2.0 + 2.0 * max(jitter_ms, 0.0) + impairment.delay_ms
    bpl = impairment.bpl if plc else impairment.bpl_no_plc
    r = (
        R_DEFAULT
        - delay_impairment(one_way_ms)
        - effective_equipment_impairment(impairment.ie, bpl, loss_percent)
    )
    return min(4.5, max(1.0, r_to_mos(r)))
