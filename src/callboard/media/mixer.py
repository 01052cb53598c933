"""Mixed-minus-self for every room at once, in one vectorised step per tick.

Every participant hears the sum of all the others in its room. All room members are stacked
into one (L x frame) int32 array, grouped room by room; `np.add.reduceat` gives each room's
total in one call, each member's output is its room's total minus its own frame, and one clip
brings everything back to int16. Sums stay in int32 until then, so loud rooms saturate
instead of wrapping around. Per-tick cost is a handful of NumPy calls whatever the number of
rooms, which matters because most rooms are small (two-party calls).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from callboard.media.frames import FRAME_SAMPLES


class BatchMixer:
    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        self.frame_samples = frame_samples  # one 20 ms frame at the rooms' rate
        self.set_layout([])

    def set_layout(self, room_sizes: Sequence[int]) -> None:
        """Room sizes in member order (each >= 1); call whenever membership changes."""
        if any(size < 1 for size in room_sizes):
            raise ValueError("every room in the layout needs at least one member")
        count = int(sum(room_sizes))
        self._starts = np.cumsum([0, *room_sizes[:-1]]).astype(np.intp)
        self._room_of = np.repeat(np.arange(len(room_sizes)), room_sizes).astype(np.intp)
        size = self.frame_samples
        self._frames = np.zeros((count, size), dtype=np.int32)
        # Reused every tick: fresh arrays this size cost page faults on each allocation.
        self._totals = np.zeros((len(room_sizes), size), dtype=np.int32)
        self._mixed = np.zeros((count, size), dtype=np.int32)
        self._out = np.zeros((count, size), dtype=np.int16)

    @property
    def totals(self) -> np.ndarray:
        """(rooms, frame_samples) int32: each room's sum of everyone (plus extras) from the
        last mix."""
        return self._totals

    def mix(
        self, inputs: Sequence[np.ndarray | None], extras: dict[int, np.ndarray] | None = None
    ) -> np.ndarray:
        """inputs[i] is member i's frame, or None when it adds nothing (muted, no media).
        extras maps a room index to audio everyone in that room hears (room playback).
        Row i of the result is what member i hears; the array is reused by the next call."""
        frames = self._frames
        if len(inputs) != len(frames):
            raise ValueError(f"expected {len(frames)} inputs, got {len(inputs)}")
        for i, frame in enumerate(inputs):
            if frame is None:
                frames[i].fill(0)
            else:
                frames[i] = frame
        totals = self._totals
        np.add.reduceat(frames, self._starts, axis=0, out=totals)
        if extras:
            for room, extra in extras.items():
                totals[room] += extra
        mixed = self._mixed
        np.take(totals, self._room_of, axis=0, out=mixed)
        mixed -= frames
        np.clip(mixed, -32768, 32767, out=mixed)
        self._out[...] = mixed
        return self._out
