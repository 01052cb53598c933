"""The clock's side of a leg's transcription: a bounded queue that drops its oldest frames,
counted, when the provider's side does not keep up (it is never waited on)."""

from __future__ import annotations

import numpy as np

from callboard.core.stt import QUEUE_FRAMES, SttTap


async def test_a_tap_nobody_reads_keeps_the_newest_frames_and_counts_the_rest() -> None:
    tap = SttTap()
    frames = [np.full(320, i, dtype=np.int16) for i in range(QUEUE_FRAMES + 25)]
    for frame in frames:
        tap.feed(frame, frame, 16000)
    assert tap.dropped == 25
    tap.close()
    heard = np.frombuffer(b"".join([chunk async for chunk in tap.audio()]), "<i2")
    assert len(heard) == QUEUE_FRAMES * 320
    assert heard[0] == 25 and heard[-1] == QUEUE_FRAMES + 24  # the oldest went first
