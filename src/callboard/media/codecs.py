"""Audio codecs for RTP legs: G.711 via lookup tables, Opus via libopus, G.722 via PyAV.

One stateful Codec instance serves one leg in both directions (its encoder and decoder are
independent). Every method works on int16 mono NumPy arrays at `sample_rate`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import av
import numpy as np
from av.audio.frame import AudioFrame

from callboard.media import g711
from callboard.media.g711 import ALAW, ULAW, G711Law
from callboard.media.opus import RATES, OpusCoder, libopus

SUPPORTED_CODECS: tuple[str, ...] = ("PCMU", "PCMA", "G722", "opus")
_BY_LOWER = {name.lower(): name for name in SUPPORTED_CODECS}

# Concealment fades the last good frame to silence over this many 20 ms frames.
_FADE_FRAMES = 3

# What we send as Opus (bench/opus_settings.py; figures in docs/PERFORMANCE.md): CELT alone at
# complexity 1 and 48 kbit/s VBR scores the wideband PESQ that VoIP mode (SILK) at complexity 5
# and 32 kbit/s did, for a fifth of the encode cost per frame.
OPUS_BITRATE = 48000
OPUS_COMPLEXITY = 1
# The PyAV fallback keeps libopus's VoIP (SILK) mode, with in-band FEC, at 48 kHz.
OPUS_FALLBACK_BITRATE = 32000
OPUS_FALLBACK_COMPLEXITY = 5
OPUS_EXPECTED_LOSS_PERCENT = 10  # libopus only adds in-band FEC when it expects loss


def normalize_codec_name(name: str) -> str:
    """Canonical spelling of a supported codec name ("pcmu" -> "PCMU", "OPUS" -> "opus")."""
    try:
        return _BY_LOWER[name.lower()]
    except KeyError:
        raise ValueError(f"unknown codec: {name}") from None


class Codec(ABC):
    """A stateful encoder/decoder pair for one leg."""

    name: str
    rtp_clock_rate: int
    sample_rate: int
    static_payload_type: int | None
    sdp_channels: int = 1
    # Algorithmic delay (encoder lookahead + decoder), for latency budgets and MOS.
    delay_ms: float = 0.0
    # Set for G.711: the media engine then codes whole 20 ms frames of many legs at once.
    law: G711Law | None = None
    # The rates this codec can code at (its audio side; the RTP clock never changes). With
    # more than one, set_rate moves it to the rate its leg is mixed at.
    rates: tuple[int, ...] = ()

    def __init__(self) -> None:
        self._last_payload: bytes | None = None  # a frame decoded elsewhere (see remember)
        self._misses = 0
        self._frame_sized()

    def _frame_sized(self) -> None:
        self._frame_samples = self.sample_rate // 50
        self._last = np.zeros(self._frame_samples, dtype=np.int16)
        # Linear gain ramps for the successive concealment frames, built once.
        steps = np.linspace(1.0, 0.0, _FADE_FRAMES * self._frame_samples + 1, dtype=np.float32)
        self._fades = [
            steps[i * self._frame_samples : (i + 1) * self._frame_samples]
            for i in range(_FADE_FRAMES)
        ]

    def set_rate(self, rate: int) -> None:
        """Code at `rate` (one of `rates`) from the next frame on."""
        raise ValueError(f"{self.name} codes at {self.sample_rate} Hz only")

    def reset_encoder(self) -> None:
        """The encoder resumes after the far end was sent another encoder's packets (see
        RtpSession.forward): a stateful codec starts afresh rather than from old history."""
        return  # G.711 and G.722's FFmpeg encoder keep nothing worth forgetting

    @abstractmethod
    def encode(self, pcm: np.ndarray) -> bytes:
        """Encode one 20 ms frame of int16 mono at sample_rate."""

    def decode(self, payload: bytes) -> np.ndarray:
        """Decode one RTP payload (any ptime it carries) to int16 mono at sample_rate."""
        pcm = self._decode(payload)
        self._misses = 0
        self._last_payload = None
        if len(pcm) >= self._frame_samples:
            self._last = pcm[len(pcm) - self._frame_samples :]
        return pcm

    def remember(self, payload: bytes) -> None:
        """Note a one-frame payload that was decoded elsewhere, for concealment; decoded
        here only if a loss follows it."""
        self._misses = 0
        self._last_payload = payload

    @abstractmethod
    def _decode(self, payload: bytes) -> np.ndarray: ...

    def conceal(self) -> np.ndarray:
        """20 ms standing in for a lost packet: the last frame fading out, then silence."""
        if self._last_payload is not None:
            self._last = self._decode(self._last_payload)
            self._last_payload = None
        index = self._misses
        self._misses += 1
        if index >= _FADE_FRAMES:
            return np.zeros(self._frame_samples, dtype=np.int16)
        return (self._last * self._fades[index]).astype(np.int16)

    def timestamp_step(self, ms: int = 20) -> int:
        """RTP timestamp increment for `ms` of audio."""
        return self.rtp_clock_rate * ms // 1000


class PcmuCodec(Codec):
    name = "PCMU"
    rtp_clock_rate = 8000
    sample_rate = 8000
    static_payload_type = 0
    law = ULAW

    def encode(self, pcm: np.ndarray) -> bytes:
        return g711.ulaw_encode(pcm)

    def _decode(self, payload: bytes) -> np.ndarray:
        return g711.ulaw_decode(payload)


class PcmaCodec(Codec):
    name = "PCMA"
    rtp_clock_rate = 8000
    sample_rate = 8000
    static_payload_type = 8
    law = ALAW

    def encode(self, pcm: np.ndarray) -> bytes:
        return g711.alaw_encode(pcm)

    def _decode(self, payload: bytes) -> np.ndarray:
        return g711.alaw_decode(payload)


class _PyAvCodec(Codec):
    """Shared plumbing for FFmpeg codecs: one reusable input frame, packets to bytes."""

    _encoder_name: str
    _decoder_name: str

    def __init__(self) -> None:
        super().__init__()
        self._encoder = self._open_encoder()
        self._decoder = self._open_decoder()
        self._pts = 0
        # Reused input frame: the encoders used here consume the samples during the call.
        self._frame = AudioFrame(format="s16", layout="mono", samples=self._frame_samples)
        self._frame.sample_rate = self.sample_rate
        # A NumPy view onto the frame's sample buffer, so a frame is one array copy.
        plane = memoryview(self._frame.planes[0])
        self._frame_samples_view = np.frombuffer(plane, dtype=np.int16)[: self._frame_samples]

    def _open_encoder(self) -> av.AudioCodecContext:
        ctx = av.CodecContext.create(self._encoder_name, "w")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = self.sample_rate
        ctx.format = "s16"
        ctx.layout = "mono"
        self._configure_encoder(ctx)
        ctx.open()
        return ctx

    def _configure_encoder(self, ctx: av.AudioCodecContext) -> None:
        """Hook for codec-specific encoder options."""

    def _open_decoder(self) -> av.AudioCodecContext:
        ctx = av.CodecContext.create(self._decoder_name, "r")
        assert isinstance(ctx, av.AudioCodecContext)
        ctx.sample_rate = self.sample_rate
        ctx.layout = "mono"
        ctx.format = "s16"
        ctx.open()
        return ctx

    def encode(self, pcm: np.ndarray) -> bytes:
        if len(pcm) == self._frame_samples:
            frame = self._frame
            self._frame_samples_view[:] = pcm
        else:
            frame = AudioFrame.from_ndarray(
                np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1),
                format="s16",
                layout="mono",
            )
            frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += len(pcm)
        packets = self._encoder.encode(frame)
        if len(packets) == 1:
            return bytes(packets[0])
        return b"".join(bytes(p) for p in packets)

    def _decode(self, payload: bytes) -> np.ndarray:
        frames = self._decoder.decode(av.Packet(payload))
        if len(frames) == 1:
            return _samples(frames[0])
        if not frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([_samples(f) for f in frames])


def _samples(frame: AudioFrame) -> np.ndarray:
    """int16 samples of a mono s16 or float decoded frame, as a new array."""
    if frame.format.name == "s16":
        plane = memoryview(frame.planes[0])
        return np.frombuffer(plane, dtype=np.int16, count=frame.samples).copy()
    data = frame.to_ndarray().reshape(-1)
    return np.clip(np.rint(data * 32768.0), -32768, 32767).astype(np.int16)


class G722Codec(_PyAvCodec):
    """G.722 at 64 kbit/s: 16 kHz audio, but an 8000 Hz RTP clock (RFC 3551 section 4.5.2)."""

    name = "G722"
    rtp_clock_rate = 8000
    sample_rate = 16000
    static_payload_type = 9
    delay_ms = 1.5  # QMF analysis + synthesis (~23 samples at 16 kHz)
    _encoder_name = "g722"
    _decoder_name = "g722"


class _OpusFormat(Codec):
    """What both Opus codecs are on the wire (RFC 7587): a 48 kHz clock, 20 ms frames."""

    name = "opus"
    rtp_clock_rate = 48000
    sample_rate = 48000
    static_payload_type = None
    sdp_channels = 2
    delay_ms = 6.5  # encoder lookahead (312 samples at 48 kHz)

    def _one_frame(self, pcm: np.ndarray) -> np.ndarray:
        """A concealment of another length, cut or padded to one frame."""
        if len(pcm) == self._frame_samples:
            return pcm
        fitted = np.zeros(self._frame_samples, dtype=np.int16)
        fitted[: min(len(pcm), self._frame_samples)] = pcm[: self._frame_samples]
        return fitted


class PyAvOpusCodec(_OpusFormat, _PyAvCodec):
    """Opus through FFmpeg: the fallback when libopus itself cannot be loaded."""

    _encoder_name = "libopus"
    _decoder_name = "libopus"

    def __init__(self) -> None:
        super().__init__()
        self._last_toc: int | None = None

    def _configure_encoder(self, ctx: av.AudioCodecContext) -> None:
        ctx.bit_rate = OPUS_FALLBACK_BITRATE
        ctx.options = {
            "application": "voip",
            "frame_duration": "20",
            "fec": "1",
            "packet_loss": str(OPUS_EXPECTED_LOSS_PERCENT),
            "compression_level": str(OPUS_FALLBACK_COMPLEXITY),
        }

    def _decode(self, payload: bytes) -> np.ndarray:
        pcm = super()._decode(payload)
        if payload:
            self._last_toc = payload[0]
        return pcm

    def conceal(self) -> np.ndarray:
        # A packet holding only a TOC byte (code 0: one frame, of no bytes) makes libopus
        # run its packet-loss concealment for the frame size that TOC announces
        # (RFC 6716 section 3.2.1); FFmpeg offers no other way to reach it.
        if self._last_toc is None:
            return super().conceal()
        try:
            pcm = super()._decode(bytes([self._last_toc & 0xFC]))
        except (av.FFmpegError, ValueError):
            return super().conceal()
        self._misses += 1
        return self._one_frame(pcm)


class OpusCodec(_OpusFormat):
    """Opus straight through libopus (media/opus.py), CELT only, at the rate its leg is
    mixed at: libopus converts to and from 48 kHz itself, so the engine resamples nothing.
    Starts at 16 kHz, the default mixing rate."""

    rates = RATES
    sample_rate = 16000
    delay_ms = 2.5  # CELT's lookahead in restricted low-delay mode

    def __init__(self) -> None:
        super().__init__()
        self._coder = self._new_coder()
        self._heard_any = False

    def _new_coder(self) -> OpusCoder:
        return OpusCoder(
            self.sample_rate, bitrate=OPUS_BITRATE, complexity=OPUS_COMPLEXITY, celt_only=True
        )

    def set_rate(self, rate: int) -> None:
        if rate not in self.rates:
            raise ValueError(f"Opus cannot code at {rate} Hz")
        if rate == self.sample_rate:
            return
        # A new encoder and decoder: a leg changes rate only when it moves between rooms of
        # different rates, and the far end's decoder bridges the seam.
        self.sample_rate = rate
        self._frame_sized()
        self._coder = self._new_coder()
        self._heard_any = False
        self._last_payload = None
        self._misses = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        return self._coder.encode(pcm)

    def reset_encoder(self) -> None:
        self._coder.reset_encoder()

    def _decode(self, payload: bytes) -> np.ndarray:
        pcm = self._coder.decode(payload)
        self._heard_any = True
        return pcm

    def conceal(self) -> np.ndarray:
        if not self._heard_any:
            return super().conceal()  # silence: nothing to extrapolate from
        if self._last_payload is not None:  # decoded elsewhere so far: bring the decoder up
            self._coder.decode(self._last_payload)
            self._last_payload = None
        self._misses += 1
        return self._one_frame(self._coder.decode(None))


_CODEC_CLASSES: dict[str, type[Codec]] = {
    "PCMU": PcmuCodec,
    "PCMA": PcmaCodec,
    "G722": G722Codec,
    "opus": OpusCodec,
}


def create_codec(name: str) -> Codec:
    """A new codec instance by name (case-insensitive)."""
    cls = _CODEC_CLASSES[normalize_codec_name(name)]
    if cls is OpusCodec and libopus() is None:
        cls = PyAvOpusCodec
    return cls()
