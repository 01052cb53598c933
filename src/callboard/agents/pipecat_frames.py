"""Pipecat's protobuf frames (package `pipecat`, frames.proto), encoded and decoded by hand:
five small messages are not worth a protobuf runtime on the media path.

    Frame { oneof frame { TextFrame text = 1; AudioRawFrame audio = 2;
            TranscriptionFrame transcription = 3; MessageFrame message = 4;
            InterruptionFrame interruption = 5; } }

Zero and empty fields are omitted, as proto3 does; unknown fields are skipped on decoding.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

_TEXT, _AUDIO, _TRANSCRIPTION, _MESSAGE, _INTERRUPTION = 1, 2, 3, 4, 5
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class FrameError(ValueError):
    """Bytes that are not a pipecat Frame."""


@dataclass(frozen=True)
class Audio:
    audio: bytes
    sample_rate: int
    num_channels: int = 1


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Transcription:
    text: str
    user_id: str = ""
    timestamp: str = ""


@dataclass(frozen=True)
class Message:
    data: Any  # the JSON document, parsed (None when it is not JSON)


@dataclass(frozen=True)
class Interruption:
    pass


PipecatFrame = Audio | Text | Transcription | Message | Interruption


# ---- encoding ----


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, data: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(data)) + data if data else b""


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3 | _VARINT) + _varint(value) if value else b""


def _frame(kind: int, body: bytes) -> bytes:
    return _varint(kind << 3 | _LEN) + _varint(len(body)) + body


@functools.lru_cache(maxsize=64)
def _audio_framing(size: int, sample_rate: int, num_channels: int) -> tuple[bytes, bytes]:
    """What goes before and after `size` bytes of audio: the same for every 20 ms frame of a
    stream, so worked out once rather than 50 times a second."""
    tail = _field_varint(4, sample_rate) + _field_varint(5, num_channels)
    field_head = _varint(3 << 3 | _LEN) + _varint(size) if size else b""
    body_size = len(field_head) + size + len(tail)
    return _varint(_AUDIO << 3 | _LEN) + _varint(body_size) + field_head, tail


def encode_audio(audio: bytes, sample_rate: int, num_channels: int = 1) -> bytes:
    head, tail = _audio_framing(len(audio), sample_rate, num_channels)
    return head + audio + tail


def encode_text(text: str) -> bytes:
    return _frame(_TEXT, _field_bytes(3, text.encode()))


def encode_transcription(text: str, user_id: str = "", timestamp: str = "") -> bytes:
    body = (
        _field_bytes(3, text.encode())
        + _field_bytes(4, user_id.encode())
        + _field_bytes(5, timestamp.encode())
    )
    return _frame(_TRANSCRIPTION, body)


def encode_message(data: Any) -> bytes:
    return _frame(_MESSAGE, _field_bytes(1, json.dumps(data).encode()))


def encode_interruption() -> bytes:
    return _frame(_INTERRUPTION, b"")


# ---- decoding ----


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise FrameError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes, pos: int = 0) -> dict[int, int | bytes]:
    """The last value of each field number (proto3's rule for repeated scalars), reading
    `data` from `pos` to its end."""
    out: dict[int, int | bytes] = {}
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            out[number], pos = _read_varint(data, pos)
        elif wire == _LEN:
            size, pos = _read_varint(data, pos)
            if pos + size > len(data):
                raise FrameError("truncated field")
            out[number] = data[pos : pos + size]
            pos += size
        elif wire == _I64:
            pos += 8
        elif wire == _I32:
            pos += 4
        else:
            raise FrameError(f"wire type {wire} is not supported")
        if pos > len(data):
            raise FrameError("truncated field")
    return out


def _audio(fields: dict[int, int | bytes]) -> Audio:
    audio = fields.get(3, b"")
    return Audio(
        audio if isinstance(audio, bytes) else b"", _int(fields, 4), _int(fields, 5, 1) or 1
    )


def _str(fields: dict[int, int | bytes], number: int) -> str:
    value = fields.get(number, b"")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""


def _int(fields: dict[int, int | bytes], number: int, default: int = 0) -> int:
    value = fields.get(number, default)
    return value if isinstance(value, int) else default


def decode(data: bytes) -> PipecatFrame | None:
    """The frame in `data`, or None for a frame of a kind this client does not use."""
    if data[:1] == b"\x12":  # an audio frame, nearly every message: its fields read in place
        size, pos = _read_varint(data, 1)
        if pos + size == len(data):
            return _audio(_fields(data, pos))
    outer = _fields(data)
    for kind in (_AUDIO, _INTERRUPTION, _MESSAGE, _TEXT, _TRANSCRIPTION):
        body = outer.get(kind)
        if body is None:
            continue
        if not isinstance(body, bytes):
            raise FrameError("a frame field that is not a message")
        inner = _fields(body)
        if kind == _AUDIO:
            return _audio(inner)
        if kind == _INTERRUPTION:
            return Interruption()
        if kind == _MESSAGE:
            try:
                return Message(json.loads(_str(inner, 1)))
            except ValueError:
                return Message(None)
        if kind == _TEXT:
            return Text(_str(inner, 3))
        return Transcription(_str(inner, 3), _str(inner, 4), _str(inner, 5))
    return None
