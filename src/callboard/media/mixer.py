"""Mixed-minus-self for one room, in one vectorised step per tick.

Every participant hears the sum of all the others: stack the P frames (P x 320), take the
total once, and subtract each participant's own frame from it. Sums are kept in int32 and
clipped to int16 at the end, so loud rooms saturate instead of wrapping around.
"""

from __future__ import annotations

import numpy as np

from callboard.media.frames import FRAME_SAMPLES


class RoomMixer:
    def __init__(self) -> None:
        self._frames = np.zeros((0, FRAME_SAMPLES), dtype=np.int32)
        self._out = np.zeros((0, FRAME_SAMPLES), dtype=np.int16)

    def _ensure(self, count: int) -> None:
        if self._frames.shape[0] != count:
            self._frames = np.zeros((count, FRAME_SAMPLES), dtype=np.int32)
            self._out = np.zeros((count, FRAME_SAMPLES), dtype=np.int16)

    def mix(self, inputs: list[np.ndarray | None], extra: np.ndarray | None = None) -> np.ndarray:
        """inputs[i] is participant i's frame, or None when it contributes nothing (muted,
        silent, no media yet). Row i of the result is what participant i hears; `extra` (room
        playback) is heard by everyone. The result is reused by the next call."""
        count = len(inputs)
        self._ensure(count)
        frames = self._frames
        for i, frame in enumerate(inputs):
            if frame is None:
                frames[i].fill(0)
            else:
                frames[i] = frame
        total = frames.sum(axis=0)
        if extra is not None:
            total += extra
        mixed = total[np.newaxis, :] - frames
        np.clip(mixed, -32768, 32767, out=mixed)
        self._out[...] = mixed
        return self._out
