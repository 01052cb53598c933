"""Opus through libopus directly (ctypes): one C call per 20 ms frame each way, into buffers
allocated once, with libopus's own packet-loss concealment.

PyAV's path wraps every frame in FFmpeg frame and packet objects and copies it twice; this
one hands libopus the NumPy frame's memory and reads the packet out of a fixed buffer. Both
sides run at the caller's rate (8-48 kHz): libopus converts to and from the wire's 48 kHz
itself, more cheaply than a resampler of ours would.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

import numpy as np

_APPLICATION_VOIP = 2048
_APPLICATION_RESTRICTED_LOWDELAY = 2051  # CELT only
_SET_BITRATE = 4002
_SET_VBR = 4006
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_SIGNAL = 4024
_RESET_STATE = 4028
_SIGNAL_VOICE = 3001
_MAX_PACKET = 1500
_MAX_FRAME_MS = 120  # the longest packet Opus can carry


class OpusError(RuntimeError):
    pass


@cache
def libopus() -> ctypes.CDLL | None:
    """The system's libopus (Debian libopus0), or None when it is not installed."""
    name = ctypes.util.find_library("opus")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    c_void_p, c_int, c_int32 = ctypes.c_void_p, ctypes.c_int, ctypes.c_int32
    lib.opus_encoder_create.restype = c_void_p
    lib.opus_encoder_create.argtypes = [c_int32, c_int, c_int, ctypes.POINTER(c_int)]
    lib.opus_decoder_create.restype = c_void_p
    lib.opus_decoder_create.argtypes = [c_int32, c_int, ctypes.POINTER(c_int)]
    lib.opus_encode.restype = c_int32
    lib.opus_encode.argtypes = [c_void_p, c_void_p, c_int, c_void_p, c_int32]
    lib.opus_decode.restype = c_int
    lib.opus_decode.argtypes = [c_void_p, c_void_p, c_int32, c_void_p, c_int, c_int]
    lib.opus_encoder_destroy.argtypes = [c_void_p]
    lib.opus_decoder_destroy.argtypes = [c_void_p]
    lib.opus_encoder_ctl.restype = c_int  # variadic: each call passes (request, c_int)
    return lib


RATES = (8000, 12000, 16000, 24000, 48000)  # what libopus codes at


class OpusCoder:
    """An encoder and a decoder for one mono stream at `rate` (one of RATES).

    With `celt_only` the encoder uses CELT alone (libopus's restricted low-delay mode): a
    fifth of SILK's cost per frame here, 2.5 ms of lookahead instead of 6.5, and at 48 kbit/s
    the wideband PESQ of SILK at 32 (docs/PERFORMANCE.md); it carries no in-band FEC.
    """

    def __init__(
        self,
        rate: int,
        *,
        bitrate: int,
        complexity: int,
        expected_loss_percent: int = 0,
        celt_only: bool = False,
    ) -> None:
        lib = libopus()
        if lib is None:
            raise OpusError("libopus is not installed")
        self._lib = lib
        self.rate = rate
        self.frame_samples = rate // 50
        error = ctypes.c_int(0)
        application = _APPLICATION_RESTRICTED_LOWDELAY if celt_only else _APPLICATION_VOIP
        self._encoder = lib.opus_encoder_create(rate, 1, application, ctypes.byref(error))
        if not self._encoder or error.value != 0:
            raise OpusError(f"opus_encoder_create failed ({error.value})")
        self._decoder = lib.opus_decoder_create(rate, 1, ctypes.byref(error))
        if not self._decoder or error.value != 0:
            lib.opus_encoder_destroy(self._encoder)
            raise OpusError(f"opus_decoder_create failed ({error.value})")
        for request, value in (
            (_SET_BITRATE, bitrate),
            (_SET_VBR, 1),
            (_SET_COMPLEXITY, complexity),
            (_SET_INBAND_FEC, 0 if celt_only else 1),
            (_SET_PACKET_LOSS_PERC, expected_loss_percent),
            (_SET_SIGNAL, _SIGNAL_VOICE),
        ):
            lib.opus_encoder_ctl(ctypes.c_void_p(self._encoder), request, ctypes.c_int(value))
        self._packet = ctypes.create_string_buffer(_MAX_PACKET)
        self._pcm = np.zeros(rate * _MAX_FRAME_MS // 1000, dtype=np.int16)
        self._pcm_pointer = self._pcm.ctypes.data

    def encode(self, pcm: np.ndarray) -> bytes:
        """One frame (2.5-60 ms of int16 at `rate`) -> one Opus packet."""
        if pcm.dtype != np.int16 or not pcm.flags.c_contiguous:
            pcm = np.ascontiguousarray(pcm, dtype=np.int16)
        size = self._lib.opus_encode(
            self._encoder, pcm.ctypes.data, len(pcm), self._packet, _MAX_PACKET
        )
        if size < 0:
            raise OpusError(f"opus_encode failed ({size})")
        return ctypes.string_at(self._packet, size)  # one copy of the packet alone

    def reset_encoder(self) -> None:
        """Forget the encoder's history (the next packet starts afresh)."""
        self._lib.opus_encoder_ctl(ctypes.c_void_p(self._encoder), _RESET_STATE)

    def decode(self, payload: bytes | None) -> np.ndarray:
        """One packet -> int16 at `rate` (a copy); None conceals one frame (libopus PLC)."""
        if payload is None:
            count = self._lib.opus_decode(
                self._decoder, None, 0, self._pcm_pointer, self.frame_samples, 0
            )
        else:
            count = self._lib.opus_decode(
                self._decoder, payload, len(payload), self._pcm_pointer, len(self._pcm), 0
            )
        if count < 0:
            raise ValueError(f"not an Opus packet (opus_decode: {count})")
        return self._pcm[:count].copy()

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if getattr(self, "_encoder", None):
            lib.opus_encoder_destroy(self._encoder)
            self._encoder = None
        if getattr(self, "_decoder", None):
            lib.opus_decoder_destroy(self._decoder)
            self._decoder = None
