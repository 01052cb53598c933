"""Audio files (WAV, MP3, anything FFmpeg reads) decoded into 20 ms frames at 16 kHz mono.

Decoding runs in a worker thread and reads from a `ByteFeed` that the downloader fills as
bytes arrive, so the first frames come out long before a big file has fully arrived. The
thread hands each frame to an `emit` callback (in practice: a bounded queue the media clock
drains without blocking).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import av
import numpy as np

from callboard.media.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

log = logging.getLogger(__name__)

# Small probe sizes: FFmpeg otherwise waits for up to 5 MB of input before the first frame,
# which on a slow download is a long silence. Containers and MP3 are recognised far sooner.
_OPEN_OPTIONS = {"probesize": "32768", "analyzeduration": "500000"}


class DecodeError(Exception):
    """The input is not audio FFmpeg can decode, or stops being decodable half-way."""


class ReadableStream(Protocol):
    def read(self, size: int = -1) -> bytes: ...


class ByteFeed:
    """A pipe from the downloader (any thread) to the decoder thread.

    `read` blocks until bytes, the end of input or an abort; an abort reads as the end of
    input, so a decoder blocked in FFmpeg's read callback always wakes up.
    """

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._finished = False
        self._aborted = False
        self._cond = threading.Condition()

    @property
    def buffered(self) -> int:
        """Bytes written but not read yet (the downloader's back-pressure signal)."""
        return self._buffered

    @property
    def aborted(self) -> bool:
        return self._aborted

    def write(self, data: bytes) -> None:
        if not data:
            return
        with self._cond:
            if self._finished or self._aborted:
                return
            self._chunks.append(bytes(data))
            self._buffered += len(data)
            self._cond.notify_all()

    def finish(self) -> None:
        """No more bytes will come: reads drain what is left, then see the end of input."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def abort(self) -> None:
        """Drop what is buffered; the reader sees the end of input at once."""
        with self._cond:
            self._aborted = True
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._finished and not self._aborted:
                self._cond.wait()
            if self._aborted or not self._chunks:
                return b""
            if size < 0:
                size = self._buffered
            out = bytearray()
            while self._chunks and len(out) < size:
                chunk = self._chunks.popleft()
                take = size - len(out)
                if len(chunk) > take:
                    self._chunks.appendleft(chunk[take:])
                    chunk = chunk[:take]
                out += chunk
            self._buffered -= len(out)
            return bytes(out)


@dataclass(frozen=True, slots=True)
class RawFormat:
    """Headerless PCM, which FFmpeg cannot recognise: the MIME type must say what it is."""

    demuxer: str
    rate: int
    channels: int


def raw_format_for_mime(mime_type: str | None) -> RawFormat | None:
    """The raw PCM format a MIME type names (audio/basic, audio/PCMU, audio/L16;rate=...),
    or None for everything else: containers and MP3 are recognised from their bytes, so a
    wrong MIME type on them does no harm."""
    if not mime_type:
        return None
    main, *params = (part.strip() for part in mime_type.split(";"))
    options = {}
    for param in params:
        key, _, value = param.partition("=")
        options[key.strip().lower()] = value.strip().strip('"')
    rate = _positive_int(options.get("rate"))
    channels = _positive_int(options.get("channels")) or 1
    kind = main.lower()
    if kind in ("audio/basic", "audio/pcmu", "audio/x-mulaw", "audio/mulaw"):
        return RawFormat("mulaw", rate or 8000, channels)
    if kind in ("audio/pcma", "audio/x-alaw", "audio/alaw"):
        return RawFormat("alaw", rate or 8000, channels)
    if kind == "audio/l16":  # RFC 2586: big-endian, rate is mandatory (8 kHz if missing)
        return RawFormat("s16be", rate or 8000, channels)
    return None


def _positive_int(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    value = int(text)
    return value if 0 < value <= 384_000 else None


class FrameChunker:
    """Cuts resampled blocks of any length into FRAME_SAMPLES frames."""

    def __init__(self) -> None:
        self._pending = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        self._filled = 0

    def add(self, samples: np.ndarray) -> list[np.ndarray]:
        frames = []
        position = 0
        while position < samples.size:
            count = min(FRAME_SAMPLES - self._filled, samples.size - position)
            end = position + count
            self._pending[self._filled : self._filled + count] = samples[position:end]
            self._filled += count
            position += count
            if self._filled == FRAME_SAMPLES:
                frames.append(self._pending.copy())
                self._filled = 0
        return frames

    def flush(self) -> np.ndarray | None:
        """The last partial frame, padded with silence."""
        if self._filled == 0:
            return None
        frame = self._pending.copy()
        frame[self._filled :] = 0
        self._filled = 0
        return frame


def decode_frames(
    source: ReadableStream,
    emit: Callable[[np.ndarray], bool],
    *,
    raw: RawFormat | None = None,
    what: str = "input",
) -> int:
    """Decode `source` to 16 kHz mono int16 frames of 20 ms, calling `emit` for each.

    `emit` returns False to stop early (the playback was stopped). Blocks on `source`; run
    it in a worker thread. Returns the number of frames emitted; raises DecodeError.
    """
    options = dict(_OPEN_OPTIONS)
    if raw is not None:
        options.update({"sample_rate": str(raw.rate), "ch_layout": f"{raw.channels}c"})
    try:
        container = av.open(source, mode="r", format=raw.demuxer if raw else None, options=options)
    except av.FFmpegError as exc:
        raise DecodeError(f"not an audio file ({what}): {_reason(exc)}") from None
    try:
        stream = next(iter(container.streams.audio), None)
        if stream is None:
            kind = container.format.name if container.format else "unknown"
            raise DecodeError(f"not an audio file ({what}): {kind} data without an audio stream")
        chunker = FrameChunker()
        emitted = 0
        try:
            for samples in _resampled(container, stream):
                for out in chunker.add(samples):
                    if not emit(out):
                        return emitted
                    emitted += 1
        except av.FFmpegError as exc:
            if emitted == 0:
                raise DecodeError(f"not an audio file ({what}): {_reason(exc)}") from None
            raise DecodeError(
                f"audio data broken after {emitted * FRAME_MS} ms: {_reason(exc)}"
            ) from None
        last = chunker.flush()
        if last is not None and emit(last):
            emitted += 1
        if emitted == 0 and not getattr(source, "aborted", False):
            raise DecodeError(f"not an audio file ({what}): no audio could be decoded")
        return emitted
    finally:
        container.close()


def _resampled(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream
) -> Iterator[np.ndarray]:
    """The stream as 16 kHz mono int16 blocks of whatever length the resampler gives."""
    # The resampler downmixes to mono (averaging the channels) and converts the rate.
    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    for frame in container.decode(stream):
        for block in resampler.resample(frame):
            yield block.to_ndarray().reshape(-1)
    for block in resampler.resample(None):  # what the resampler still holds
        yield block.to_ndarray().reshape(-1)


def _reason(exc: av.FFmpegError) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).split(": '")[0]
