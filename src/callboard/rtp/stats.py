"""Reception statistics of one RTP stream: RFC 3550 A.1 (sequence), A.3 (loss), A.8 (jitter);
and RtpStats, the figures an RtpSession reports.

Counts survive a change of source (new SSRC or a sender that restarts its sequence
numbers): the finished source's expected/received totals are carried over, so a
re-INVITE or a far-end restart does not zero a call's quality figures.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100


class ReceptionStats:
    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._initialized = False
        self._max_seq = 0
        self._cycles = 0
        self._base_seq = 0
        self._bad_seq = SEQ_MOD + 1
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit: float | None = None
        self.jitter = 0.0  # RFC 3550 A.8, timestamp units
        self._carried_expected = 0
        self._carried_received = 0

    # --- A.1 -------------------------------------------------------------------------

    def _init_seq(self, seq: int) -> None:
        if self._initialized:
            self._carried_expected += self._expected()
            self._carried_received += self._received
        self._initialized = True
        self._base_seq = seq
        self._max_seq = seq
        self._bad_seq = SEQ_MOD + 1
        self._cycles = 0
        self._received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._transit = None

    def update(self, seq: int, timestamp: int, arrival: float, *, timing: bool = True) -> bool:
        """Account one packet (arrival in seconds). False if it was set aside as a
        suspected restart of the sequence (not counted until confirmed).

        Pass timing=False for packets whose timestamp does not advance with the media
        (RFC 4733 events) so they do not distort the jitter estimate.
        """
        if not self._initialized:
            self._init_seq(seq)
        else:
            udelta = (seq - self._max_seq) & 0xFFFF
            if udelta < MAX_DROPOUT:
                if seq < self._max_seq:
                    self._cycles += SEQ_MOD
                self._max_seq = seq
            elif udelta <= SEQ_MOD - MAX_MISORDER:
                if seq != self._bad_seq:
                    self._bad_seq = (seq + 1) & 0xFFFF
                    return False
                self._init_seq(seq)  # two sequential packets after a jump: a restart
            # else: duplicate or reordered packet, counted but does not move max_seq
        self._received += 1
        if timing:
            self._update_jitter(timestamp, arrival)
        return True

    def reset_source(self) -> None:
        """A new SSRC: restart sequence tracking, keep the call's totals."""
        if self._initialized:
            self._carried_expected += self._expected()
            self._carried_received += self._received
        self._initialized = False
        self._received = 0
        self._transit = None

    def change_clock_rate(self, clock_rate: int) -> None:
        """The codec changed its RTP clock: rescale the jitter and restart transit."""
        self.jitter *= clock_rate / self.clock_rate
        self.clock_rate = clock_rate
        self._transit = None

    # --- A.8 -------------------------------------------------------------------------

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        transit = arrival * self.clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            if d < 0x80000000:  # ignore timestamp wraps and jumps
                self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    # --- figures ---------------------------------------------------------------------

    def _expected(self) -> int:
        if not self._initialized:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def extended_max_seq(self) -> int:
        return self._cycles + self._max_seq

    @property
    def received(self) -> int:
        return self._carried_received + self._received

    @property
    def expected(self) -> int:
        return self._carried_expected + self._expected()

    @property
    def lost(self) -> int:
        """Cumulative packets lost; duplicates can make the raw figure negative."""
        return max(0, self.expected - self.received)

    @property
    def loss_fraction(self) -> float:
        expected = self.expected
        return self.lost / expected if expected > 0 else 0.0

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    def interval_report(self) -> tuple[int, int]:
        """(fraction lost since the previous call as 0..255, cumulative lost of this
        source) for an RTCP report block (A.3)."""
        expected = self._expected()
        expected_interval = expected - self._expected_prior
        received_interval = self._received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self._received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval > 0 and lost_interval > 0:
            fraction = min(255, (lost_interval << 8) // expected_interval)
        return fraction, expected - self._received


@dataclass(slots=True)
class RtpStats:
    """A snapshot of an RtpSession's figures (RtpSession.stats)."""

    packets_received: int
    packets_lost: int
    jitter_ms: float
    packets_sent: int
    octets_sent: int
    mos: float | None
    rtt_ms: float | None
    late: int
    invalid: int
    # Beyond the contract: where the losses and drops came from.
    duplicates: int = 0
    overflow: int = 0
    concealed: int = 0
    unknown_payload_type: int = 0
    foreign_source: int = 0
    latches: int = 0
    jitter_buffer_frames: int = 0
