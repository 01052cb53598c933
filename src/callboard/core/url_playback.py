"""Playback of an audio file from an http(s) URL.

A task downloads the file into a ByteFeed while a decoder thread turns it into 16 kHz frames
in a bounded queue; the media clock takes one frame per tick without waiting (silence while
the queue is still filling). A file short enough is kept decoded in memory, so repeats play
from there; a longer one is downloaded again for every round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from callboard.core.downloads import (
    DownloadError,
    DownloadLimits,
    download,
    shown_url,
)
from callboard.core.playback import Playback, Publish
from callboard.events.types import PlaybackStarted
from callboard.media.file_decoder import ByteFeed, DecodeError, decode_frames, raw_format_for_mime
from callboard.media.frames import FRAME_MS, silence

log = logging.getLogger(__name__)

QUEUE_FRAMES = 100  # decoded ahead of the clock: 2 s
PRIME_FRAMES = 5  # queued before (re)starting, so a slow download stutters less
CACHE_FRAMES = 10 * 60 * 1000 // FRAME_MS  # up to 10 minutes kept for repeats (19 MB)
_REFILL_WAIT = 0.1  # a decoder facing a full queue looks again after this (5 frames out)

Decoded = list[np.ndarray] | None


class UrlPlayback(Playback):
    def __init__(
        self,
        publish: Publish,
        url: str,
        mime_type: str | None,
        *,
        repeat: int = 0,
        volume: int = 0,
        limits: DownloadLimits | None = None,
    ) -> None:
        super().__init__(publish, volume)
        self.url = url
        self.limits = limits
        self._raw = raw_format_for_mime(mime_type)
        self._rounds: int | None = None if repeat < 0 else max(repeat, 1)  # None: forever
        self._queue: queue.Queue[np.ndarray] = queue.Queue(QUEUE_FRAMES)
        self._halt = threading.Event()  # tells decoder threads to give up
        self._streaming = True  # more frames may still come through the queue
        self._replay: list[np.ndarray] = []
        self._replay_rounds: int | None = 0  # rounds left to play from memory; None: forever
        self._replay_at = 0
        self._started = False
        self._primed = False
        self._task: asyncio.Task[None] | None = None
        self._on_error: Callable[[Playback, str], None] | None = None

    # ---- life cycle (event loop) ----

    def begin(self, on_error: Callable[[Playback, str], None]) -> None:
        self._on_error = on_error
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"playback {self.id}")

    def close(self) -> None:
        self.stopped = True
        self._halt.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        try:
            played = 0
            while self._rounds is None or played < self._rounds:
                # Only a first round worth repeating is kept in memory.
                keep = played == 0 and (self._rounds is None or self._rounds > 1)
                kept = await self._stream_round(keep)
                played += 1
                if kept:
                    self._replay = kept
                    self._replay_rounds = None if self._rounds is None else self._rounds - played
                    break
            self._streaming = False
        except (DownloadError, DecodeError) as exc:
            log.info("playback %s of %s failed: %s", self.id, shown_url(self.url), exc)
            self._fail(str(exc))
        except Exception:
            log.exception("playback %s failed", self.id)
            self._fail("internal error while playing the file")

    def _fail(self, error: str) -> None:
        if self._on_error is not None and not self.stopped:
            self._on_error(self, error)

    async def _stream_round(self, keep: bool) -> Decoded:
        """One pass over the file: download and decode side by side, frames into the queue.
        Returns the decoded frames when `keep` and they fit in the cache."""
        loop = asyncio.get_running_loop()
        feed = ByteFeed()
        decoded: asyncio.Future[Decoded] = loop.create_future()
        thread = threading.Thread(
            target=self._decode,
            args=(feed, keep, loop, decoded),
            name=f"decode {self.id[:11]}",
            daemon=True,
        )
        thread.start()
        fetch = asyncio.create_task(download(self.url, feed, self.limits))
        fetch.add_done_callback(_retrieve)
        try:
            await asyncio.wait((fetch, decoded), return_when=asyncio.FIRST_COMPLETED)
            if fetch.done():
                fetch.result()  # a failed download is the real cause of what follows
            return await decoded
        finally:
            feed.abort()  # wakes the decoder if it still waits for bytes
            fetch.cancel()
            decoded.add_done_callback(_retrieve)  # settled later if we were stopped

    # ---- the decoder thread ----

    def _decode(
        self,
        feed: ByteFeed,
        keep: bool,
        loop: asyncio.AbstractEventLoop,
        decoded: asyncio.Future[Decoded],
    ) -> None:
        kept: list[np.ndarray] | None = [] if keep else None

        def emit(frame: np.ndarray) -> bool:
            nonlocal kept
            if kept is not None:
                kept = kept if len(kept) < CACHE_FRAMES else None
                if kept is not None:
                    kept.append(frame)
            # Sleep while the queue is full rather than wake for every slot the clock frees:
            # a few wake-ups a second per playback instead of fifty.
            while self._queue.full():
                if self._halt.wait(_REFILL_WAIT):
                    return False
            if self._halt.is_set():
                return False
            self._queue.put_nowait(frame)  # the only producer: there is room
            return True

        result: Decoded = None
        error: BaseException | None = None
        try:
            decode_frames(feed, emit, raw=self._raw, what=shown_url(self.url))
            result = kept
        except DecodeError as exc:
            error = exc
        except Exception as exc:  # a decoder bug must still end the playback
            log.exception("decoder of playback %s failed", self.id)
            error = DecodeError(f"decoder failed: {type(exc).__name__}")
        finally:
            feed.abort()  # stops the download if the decoder finished first
        with contextlib.suppress(RuntimeError):  # the loop is gone: shutting down
            loop.call_soon_threadsafe(_settle, decoded, result, error)

    # ---- the media clock ----

    def next_frame(self) -> np.ndarray | None:
        if self.stopped:
            return None
        streaming = self._streaming  # read first: a frame put before it ended is in the queue
        if streaming and not self._primed:
            if self._queue.qsize() < PRIME_FRAMES:
                return silence()  # still buffering: keep the slot, do not end
            self._primed = True
        try:
            frame = self._queue.get_nowait()
        except queue.Empty:
            if streaming:
                self._primed = False  # ran dry: buffer a little again before going on
                return silence()
            replayed = self._from_memory()
            if replayed is None:
                return None
            frame = replayed
        if not self._started:
            self._started = True
            self.publish(PlaybackStarted(playback_id=self.id))
        return self.scaled(frame)

    def _from_memory(self) -> np.ndarray | None:
        if not self._replay or self._replay_rounds == 0:
            return None
        frame = self._replay[self._replay_at]
        self._replay_at += 1
        if self._replay_at == len(self._replay):
            self._replay_at = 0
            if self._replay_rounds is not None:
                self._replay_rounds -= 1
        return frame


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark an outcome as seen: a download or decoder may end unawaited after a stop, and
    asyncio would log its exception as never retrieved."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Decoded], result: Decoded, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
