"""The file decoder: WAV/MP3 in any common shape to 16 kHz mono 20 ms frames, streamed."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from callboard.media.file_decoder import (
    ByteFeed,
    DecodeError,
    FrameChunker,
    RawFormat,
    decode_frames,
    raw_format_for_mime,
)
from tests.helpers.audio import band_energy_db, dominant_frequency, level_dbfs, tone, xcorr_lag
from tests.helpers.audio_files import mp3_bytes, wav_bytes

RATE = 16000


def decode_all(data: bytes, raw: RawFormat | None = None) -> np.ndarray:
    feed = ByteFeed()
    feed.write(data)
    feed.finish()
    frames: list[np.ndarray] = []

    def emit(frame: np.ndarray) -> bool:
        assert frame.dtype == np.int16 and frame.shape == (320,)
        frames.append(frame)
        return True

    count = decode_frames(feed, emit, raw=raw)
    assert count == len(frames)
    return np.concatenate(frames) if frames else np.zeros(0, np.int16)


def steady(x: np.ndarray) -> np.ndarray:
    """The middle of a decoded signal (resampler edges and MP3 padding left out)."""
    return x[RATE // 10 : -RATE // 10]


def test_wav_8k_mono_16bit() -> None:
    source = tone(1000, 1000, rate=8000, dbfs=-6)
    out = decode_all(wav_bytes(source, 8000, bits=16))
    assert len(out) == RATE  # 1 s: exactly 50 frames
    assert dominant_frequency(steady(out), RATE) == pytest.approx(1000, abs=2)
    assert level_dbfs(steady(out)) == pytest.approx(-6, abs=0.3)


def test_wav_44k1_stereo_24bit_is_downmixed() -> None:
    # Left 300 Hz, right 700 Hz, both -6 dBFS: the mono mix averages them (-12 dBFS each).
    left = tone(300, 1500, rate=44100, dbfs=-6, dtype="float")
    right = tone(700, 1500, rate=44100, dbfs=-6, dtype="float")
    out = decode_all(wav_bytes(np.stack([left, right], axis=1), 44100, bits=24))
    assert len(out) == pytest.approx(1.5 * RATE, abs=320)
    body = steady(out)
    assert band_energy_db(body, RATE, 300, 40) == pytest.approx(-12, abs=0.5)
    assert band_energy_db(body, RATE, 700, 40) == pytest.approx(-12, abs=0.5)
    assert band_energy_db(body, RATE, 1500, 400) < -60  # nothing else came out


def test_wav_44k1_stereo_16bit_same_signal_keeps_its_level_and_shape() -> None:
    rng = np.random.default_rng(3)
    # Band-limited noise (no content above 7 kHz, which 16 kHz cannot carry).
    noise = np.convolve(rng.normal(0, 0.1, 44100 * 2), np.hanning(9) / 4.5, mode="same")
    out = decode_all(wav_bytes(np.stack([noise, noise], axis=1), 44100, bits=16))
    reference = np.interp(np.arange(2 * RATE) / RATE, np.arange(noise.size) / 44100, noise)
    lag, corr = xcorr_lag(reference, out.astype(np.float64) / 32768)
    assert abs(lag) < 40
    assert corr > 0.95
    assert level_dbfs(out) == pytest.approx(level_dbfs(reference), abs=0.5)


def test_mp3() -> None:
    source = tone(440, 2000, rate=44100, dbfs=-10, dtype="float")
    out = decode_all(mp3_bytes(source, 44100))
    # LAME pads the start and end by up to a frame or two (26 ms each).
    assert len(out) / RATE == pytest.approx(2.0, abs=0.1)
    assert dominant_frequency(steady(out), RATE) == pytest.approx(440, abs=2)
    assert level_dbfs(steady(out)) == pytest.approx(-10, abs=1.0)


def test_raw_pcm_needs_the_mime_type() -> None:
    raw = raw_format_for_mime("audio/L16; rate=8000; channels=1")
    assert raw == RawFormat("s16be", 8000, 1)
    source = tone(500, 1000, rate=8000, dbfs=-6)
    out = decode_all(source.astype(">i2").tobytes(), raw)
    assert len(out) == RATE
    assert dominant_frequency(steady(out), RATE) == pytest.approx(500, abs=2)
    assert raw_format_for_mime("audio/basic") == RawFormat("mulaw", 8000, 1)
    # Containers and MP3 are recognised from their bytes: their MIME type is no format.
    for mime in ("audio/wav", "audio/mpeg", "text/html", "", None, "audio/L16;rate=abc"):
        assert raw_format_for_mime(mime) in (None, RawFormat("s16be", 8000, 1))
    assert raw_format_for_mime("audio/wav") is None


@pytest.mark.parametrize(
    "body",
    [
        b"<!doctype html><html><body>Not Found</body></html>" * 20,
        b"",
        bytes(range(256)) * 40,
        wav_bytes(tone(440, 500, rate=8000), 8000)[:30],  # truncated inside the header
    ],
    ids=["html", "empty", "binary", "truncated-header"],
)
def test_what_is_not_audio_is_a_clear_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match="not an audio file"):
        decode_all(body)


def test_a_wav_cut_short_plays_what_arrived() -> None:
    whole = wav_bytes(tone(440, 1000, rate=8000, dbfs=-6), 8000)
    out = decode_all(whole[: 44 + 8000])  # half of its data chunk
    assert len(out) == pytest.approx(RATE // 2, abs=320)
    assert dominant_frequency(steady(out), RATE) == pytest.approx(440, abs=2)


def test_decoding_starts_before_the_input_has_all_arrived() -> None:
    data = wav_bytes(tone(440, 10_000, rate=16000, dbfs=-6), 16000)  # 320 kB
    feed = ByteFeed()
    first_frame = threading.Event()
    count = 0

    def emit(frame: np.ndarray) -> bool:
        nonlocal count
        count += 1
        first_frame.set()
        return True

    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(decode_frames(feed, emit)))
    thread.start()
    written = 100_000  # under a third of the file
    feed.write(data[:written])
    assert first_frame.wait(5), "no frame decoded from the first 100 kB"
    time.sleep(0.1)
    assert 0 < count < 500
    assert thread.is_alive()  # waiting for the rest, not finished
    feed.write(data[written:])
    feed.finish()
    thread.join(5)
    assert result == [500]


def test_stop_and_abort_end_the_decoder() -> None:
    data = wav_bytes(tone(440, 5000, rate=16000), 16000)
    feed = ByteFeed()
    feed.write(data)
    feed.finish()
    emitted: list[np.ndarray] = []
    assert decode_frames(feed, lambda f: len(emitted) < 10 and not emitted.append(f)) == 10

    waiting = ByteFeed()
    waiting.write(data[:2000])  # a header and a little: the decoder blocks for more
    done = threading.Event()
    thread = threading.Thread(target=lambda: (decode_frames(waiting, lambda f: True), done.set()))
    thread.start()
    time.sleep(0.2)
    assert not done.is_set()
    waiting.abort()
    thread.join(5)
    assert not thread.is_alive()


def test_byte_feed_reads_across_chunks() -> None:
    feed = ByteFeed()
    feed.write(b"abc")
    feed.write(b"defg")
    assert feed.buffered == 7
    assert feed.read(5) == b"abcde"
    assert feed.read(100) == b"fg"
    feed.finish()
    assert feed.read(10) == b""
    feed.write(b"late")  # after finish: ignored
    assert feed.read(10) == b""


def test_chunker_cuts_and_pads() -> None:
    chunker = FrameChunker()
    frames = chunker.add(np.arange(700, dtype=np.int16))
    assert [f[0] for f in frames] == [0, 320]
    last = chunker.flush()
    assert last is not None
    assert last[59] == 699
    assert not last[60:].any()
    assert chunker.flush() is None
