"""Azure Speech real-time speech-to-text: the WebSocket protocol Microsoft's Speech SDK speaks.

`wss://{region}.stt.speech.microsoft.com/speech/recognition/conversation/cognitiveservices/v1
?language=en-US&format=simple` with `Ocp-Apim-Subscription-Key: <key>` and `X-ConnectionId: <uuid,
no dashes>`. Every client message carries `Path`, `X-RequestId` (a no-dash UUID, one per turn)
and `X-Timestamp` (ISO 8601 UTC) header lines:

* text messages: header lines (CRLF), a blank line, then the body; the first is
  `Path: speech.config` with a JSON body describing the client;
* binary messages: a 2-byte big-endian header length, the header lines (US-ASCII), then the
  body; `Path: audio` + `Content-Type: audio/x-wav`, at most 8,192 body bytes each, the first
  starting with a RIFF/WAV header (16 kHz, 16-bit, mono PCM), an empty body to end the audio.

The service answers with text messages framed the same way: `turn.start`,
`speech.startDetected`, `speech.hypothesis` (interim: `Text`), `speech.phrase` (final:
`RecognitionStatus`, `DisplayText`; statuses other than `Success`, such as `NoMatch` or
`InitialSilenceTimeout`, carry no text), `speech.endDetected` and, last, `turn.end`.

Failures: the handshake is plain HTTP (401/403 for a bad key: final; 429/5xx: transient);
after it, the service closes the socket (1007/1008 for a protocol or audio problem: final;
1011 and other server trouble, or any close before the turn ended: transient). A `speech.phrase`
whose status is an error (`BadRequest`, `Forbidden`: final; `Error`, `TooManyRequests`,
`ServiceUnavailable`: transient) ends the stream too.
"""

from __future__ import annotations

import json
import logging
import platform
import struct
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from websockets.datastructures import Headers
from websockets.frames import Close
from websockets.typing import Data

from callboard.config import Settings
from callboard.speech.stt.base import SAMPLE_RATE, SEND_DEADLINE, SttError, SttRequest, Transcript
from callboard.speech.stt.ws_common import (
    END_WAIT,
    OPEN_TIMEOUT,
    TRANSIENT_CLOSE_CODES,
    SocketSession,
    close_description,
    json_body,
    open_socket,
    websocket_base,
)

log = logging.getLogger(__name__)

PATH = "/speech/recognition/conversation/cognitiveservices/v1"
MAX_AUDIO_BODY = 8192  # bytes per audio message, the WAV header included
AUDIO_PIECE = 8000  # PCM bytes per audio message (250 ms), leaving room for the WAV header
FINAL_STATUSES = frozenset({"BadRequest", "Forbidden"})
TRANSIENT_STATUSES = frozenset({"Error", "TooManyRequests", "ServiceUnavailable"})

# The locale a bare language code means (Azure only takes locales).
LOCALES = {
    "ar": "ar-SA", "ca": "ca-ES", "cs": "cs-CZ", "da": "da-DK", "de": "de-DE", "el": "el-GR",
    "en": "en-US", "es": "es-ES", "fi": "fi-FI", "fr": "fr-FR", "he": "he-IL", "hi": "hi-IN",
    "hu": "hu-HU", "id": "id-ID", "it": "it-IT", "ja": "ja-JP", "ko": "ko-KR", "nb": "nb-NO",
    "no": "nb-NO", "nl": "nl-NL", "pl": "pl-PL", "pt": "pt-BR", "ro": "ro-RO", "ru": "ru-RU",
    "sk": "sk-SK", "sv": "sv-SE", "th": "th-TH", "tr": "tr-TR", "uk": "uk-UA", "vi": "vi-VN",
    "zh": "zh-CN",
}  # fmt: skip


def locale(language: str) -> str:
    """`en` -> `en-US`; a locale (`en-GB`) is kept as it is."""
    language = (language or "en").strip()
    if len(language) == 2 and language.isalpha():
        code = language.lower()
        return LOCALES.get(code, f"{code}-{code.upper()}")
    return language


def timestamp() -> str:
    """`X-Timestamp`: UTC, ISO 8601, milliseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def no_dash_uuid() -> str:
    return uuid.uuid4().hex


def wav_header(rate: int = SAMPLE_RATE) -> bytes:
    """A RIFF/WAVE header for a PCM16 mono stream of unknown length (the sizes are 0, as a
    stream's header has no length to give)."""
    return b"".join(
        [
            b"RIFF",
            struct.pack("<I", 0),
            b"WAVE",
            b"fmt ",
            struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16),
            b"data",
            struct.pack("<I", 0),
        ]
    )


def text_message(path: str, request_id: str, body: Any) -> str:
    headers = [
        f"Path: {path}",
        f"X-RequestId: {request_id}",
        f"X-Timestamp: {timestamp()}",
        "Content-Type: application/json",
    ]
    return "\r\n".join(headers) + "\r\n\r\n" + json.dumps(body)


def audio_message(request_id: str, body: bytes) -> bytes:
    head = "\r\n".join(
        [
            "Path: audio",
            f"X-RequestId: {request_id}",
            f"X-Timestamp: {timestamp()}",
            "Content-Type: audio/x-wav",
        ]
    ).encode("ascii")
    return struct.pack(">H", len(head)) + head + body


def speech_config() -> dict[str, Any]:
    return {
        "context": {
            "system": {
                "name": "callboard",
                "version": "1.0.0",
                "build": "Python",
                "lang": "Python",
            },
            "os": {
                "platform": platform.system() or "Linux",
                "name": platform.system() or "Linux",
                "version": platform.release() or "unknown",
            },
            "device": {"manufacturer": "callboard", "model": "callboard", "version": "1.0.0"},
        },
        "recognition": "conversation",
    }


def split_message(message: str) -> tuple[dict[str, str], str]:
    """A service text message: its header lines (lower-cased names) and its body."""
    normal = message.replace("\r\n", "\n")
    head, _, body = normal.partition("\n\n")
    headers: dict[str, str] = {}
    for line in head.split("\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers, body


class AzureStt:
    name = "azure"

    def __init__(
        self,
        settings: Settings,
        *,
        send_deadline: float = SEND_DEADLINE,
        end_wait: float = END_WAIT,
        open_timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self._key = settings.azure_speech_key
        self._region = settings.azure_speech_region
        self._base = settings.azure_stt_base_url
        self._send_deadline = send_deadline
        self._end_wait = end_wait
        self._open_timeout = open_timeout

    def base(self) -> str | None:
        if self._base:
            return websocket_base(self._base)
        if self._region:
            return f"wss://{self._region}.stt.speech.microsoft.com"
        return None

    def configured(self, request: SttRequest) -> bool:
        return bool(request.api_key or self._key) and self.base() is not None

    def url(self, request: SttRequest) -> str | None:
        base = self.base()
        if base is None:
            return None
        query = {"language": locale(request.language), "format": "simple"}
        return f"{base}{PATH}?{urlencode(query)}"

    async def transcribe(
        self, audio: AsyncIterator[bytes], request: SttRequest
    ) -> AsyncIterator[Transcript]:
        key, url = request.api_key or self._key, self.url(request)
        if not key or url is None:
            raise SttError("azure: needs AZURE_SPEECH_KEY (or api_key) and AZURE_SPEECH_REGION")
        connection_id = no_dash_uuid()
        socket = await open_socket(
            url,
            {"Ocp-Apim-Subscription-Key": key, "X-ConnectionId": connection_id},
            provider=self.name,
            read_error=read_error,
            open_timeout=self._open_timeout,
        )
        log.debug("azure: stream open (connection %s)", connection_id)
        request_id = no_dash_uuid()
        session = SocketSession(
            socket, provider=self.name, send_deadline=self._send_deadline, end_wait=self._end_wait
        )
        first = True

        def encode(piece: bytes) -> Data:
            nonlocal first
            body = wav_header() + piece if first else piece
            first = False
            return audio_message(request_id, body)

        try:
            await session.send(text_message("speech.config", request_id, speech_config()))
            session.start(
                pieces(audio), encode=encode, end_messages=[audio_message(request_id, b"")]
            )
            async for message in session.messages(closed_error):
                if not isinstance(message, str):
                    continue  # the service sends only text messages for recognition
                path, transcript = parse(message, request.partial)
                if transcript is not None:
                    yield transcript
                if path == "turn.end":
                    if not session.ended:
                        raise SttError("azure: the service ended the turn early", transient=True)
                    session.finished = True  # the last message of the turn: done
        finally:
            await session.close()

    async def aclose(self) -> None:
        """Nothing pooled: each stream has its own socket."""


async def pieces(audio: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The audio in pieces an audio message can carry (even sizes, so no sample is split)."""
    async for chunk in audio:
        for start in range(0, len(chunk), AUDIO_PIECE):
            yield chunk[start : start + AUDIO_PIECE]


def parse(message: str, partial: bool) -> tuple[str, Transcript | None]:
    """A service message's path, and the transcript it carries if it is one to pass on."""
    headers, body = split_message(message)
    path = headers.get("path", "")
    if path == "speech.hypothesis":
        data = json_body(body)
        text = data.get("Text") if isinstance(data, dict) else None
        if partial and isinstance(text, str) and text.strip():
            log.debug("azure: interim %r", text)
            return path, Transcript(text.strip(), False)
    elif path == "speech.phrase":
        data = json_body(body)
        if not isinstance(data, dict):
            return path, None
        status = str(data.get("RecognitionStatus", ""))
        if status == "Success":
            text = data.get("DisplayText")
            if isinstance(text, str) and text.strip():
                log.debug("azure: final %r", text)
                return path, Transcript(text.strip(), True)
        elif status in FINAL_STATUSES or status in TRANSIENT_STATUSES:
            raise SttError(
                f"azure: recognition failed: {status}", transient=status in TRANSIENT_STATUSES
            )
        else:
            log.debug("azure: phrase %s", status)  # NoMatch, InitialSilenceTimeout, ...
    else:
        log.debug("azure: %s message", path)  # turn.start, speech.startDetected, ...
    return path, None


def read_error(status: int, headers: Headers, body: bytes) -> str | None:
    """The handshake's error: the gateway's JSON `{"error": {"message"}}`, else the body."""
    data = json_body(body) if body else None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if data.get("message"):
            return str(data["message"])
    return body.decode("utf-8", "replace").strip()[:200] or None


def closed_error(frame: Close | None) -> SttError:
    """A close before the turn ended. 1007/1008 (bad framing, bad audio, policy) are final."""
    description = close_description(frame)
    if frame is None:
        return SttError(f"azure: {description}", transient=True)
    transient = frame.code in TRANSIENT_CLOSE_CODES or frame.code == 1000
    return SttError(f"azure: {description}", transient=transient)
