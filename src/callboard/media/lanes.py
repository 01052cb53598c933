"""Participants whose transport runs at another rate than their mix rate, converted in bulk.

Every participant at one pair of rates (8 kHz G.711 in a 16 kHz room, 48 kHz Opus in an 8 kHz
one, ...) has a seat in that pair's RateLane: one row in a ResamplerBank towards the mix rate
and the same row in one back. Each tick
converts all rows of a lane in one matrix product per direction, instead of two Resampler
calls per leg; at a few hundred legs that per-call overhead was the largest single cost of the
media clock. G.711 frames are decoded and encoded in bulk the same way (one table lookup for
all legs of a law). Rows stay dense: a leaving seat's row is taken over by the last seat.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import numpy as np

from callboard.media.frames import SAMPLE_RATE
from callboard.media.g711 import G711Law
from callboard.media.resample import ResamplerBank

Owner = TypeVar("Owner")


class LaneSeat(Generic[Owner]):
    """One participant's place in a lane; `row` may change when others leave."""

    __slots__ = ("lane", "owner", "row")

    def __init__(self, lane: RateLane[Owner], owner: Owner, row: int) -> None:
        self.lane = lane
        self.owner = owner
        self.row = row


class SameRateBank:
    """A ResamplerBank's interface for a lane whose endpoints run at their rooms' rate (G.711
    in an 8 kHz room): nothing to convert, but its rows are still decoded, measured and
    encoded in bulk with the lane."""

    def __init__(self, rate: int) -> None:
        self.in_rate = self.out_rate = rate
        self.frame_in = self.frame_out = rate // 50
        self.rows = 0
        self._work = np.zeros((0, self.frame_in), dtype=np.float32)
        self._out16 = np.zeros((0, self.frame_out), dtype=np.int16)

    def resize(self, rows: int) -> None:
        if rows > len(self._work):
            capacity = max(rows, 2 * len(self._work), 8)
            work = np.zeros((capacity, self.frame_in), dtype=np.float32)
            work[: self.rows] = self._work[: self.rows]
            self._work = work
            self._out16 = np.zeros((capacity, self.frame_out), dtype=np.int16)
        self.rows = rows

    def reset(self, row: int) -> None:
        self._work[row] = 0

    def move(self, source: int, target: int) -> None:
        self._work[target] = self._work[source]

    def inputs(self) -> np.ndarray:
        return self._work[: self.rows]

    def run(self) -> np.ndarray:
        out16 = self._out16[: self.rows]
        out16[...] = self._work[: self.rows]  # int16 values in float32: exact
        return out16


class RateLane(Generic[Owner]):
    def __init__(self, rate: int, mix_rate: int = SAMPLE_RATE) -> None:
        self.rate = rate  # the endpoints'
        self.mix_rate = mix_rate  # their rooms'
        self.into_rooms: ResamplerBank | SameRateBank
        self.from_rooms: ResamplerBank | SameRateBank
        if rate == mix_rate:
            self.into_rooms, self.from_rooms = SameRateBank(rate), SameRateBank(rate)
        else:
            self.into_rooms = ResamplerBank(rate, mix_rate)
            self.from_rooms = ResamplerBank(mix_rate, rate)
        self.seats: list[LaneSeat[Owner]] = []
        # This tick's still-encoded G.711 frames, by law: rows and payloads.
        self._encoded: dict[G711Law, tuple[list[int], list[bytes]]] = {}
        # Per-tick views of the banks' input rows, valid until the next join or leave.
        self.received: np.ndarray = self.into_rooms.inputs()
        self.to_send: np.ndarray = self.from_rooms.inputs()

    def __len__(self) -> int:
        return len(self.seats)

    def join(self, owner: Owner) -> LaneSeat[Owner]:
        """A seat with fresh filter history in both directions."""
        seat = LaneSeat(self, owner, len(self.seats))
        self.seats.append(seat)
        self._resize()
        return seat

    def leave(self, seat: LaneSeat[Owner]) -> None:
        last = self.seats.pop()
        if last is not seat:
            for bank in (self.into_rooms, self.from_rooms):
                bank.move(last.row, seat.row)
            last.row = seat.row
            self.seats[seat.row] = last
        seat.row = -1
        self._resize()

    def add_encoded(self, law: G711Law, row: int, payload: bytes) -> None:
        """Row's frame this tick is a G.711 payload; decoded with the others of its law."""
        batch = self._encoded.get(law)
        if batch is None:
            batch = self._encoded[law] = ([], [])
        batch[0].append(row)
        batch[1].append(payload)

    def decode_encoded(self) -> None:
        """Decode this tick's G.711 payloads into their rows of `received`."""
        if not self._encoded:
            return
        for law, (rows, payloads) in self._encoded.items():
            self.received[rows] = law.decode_rows(payloads, self.into_rooms.frame_in)
        self._encoded.clear()

    def _resize(self) -> None:
        for bank in (self.into_rooms, self.from_rooms):
            bank.resize(len(self.seats))
        self.received = self.into_rooms.inputs()
        self.to_send = self.from_rooms.inputs()
