"""ElevenLabs realtime speech-to-text: the Scribe v2 Realtime WebSocket, fed 16 kHz PCM16.

`wss://{base}/v1/speech-to-text/realtime?model_id=scribe_v2_realtime&audio_format=pcm_16000
&commit_strategy=vad&language_code=..` with the `xi-api-key` header. The server opens with
`session_started`; audio goes as JSON text frames `{"message_type":"input_audio_chunk",
"audio_base_64":..,"commit":false,"sample_rate":16000}`; the server commits a segment on
silence (VAD) and answers `partial_transcript` (interim, passed on only with `partial`) and
`committed_transcript` (final). There is no end-of-stream message: at the end we commit
(`"commit":true` with no audio), wait for the committed transcript that answers it (a short
linger tells it from a VAD commit that crossed ours), and close 1000.

Failures: after the handshake, errors come as `{"message_type": <type>, "error": ..}` and
then the server closes (1008, reason = the type); overload, rate and time limits are
transient, the rest (bad key, bad request, quota) final. A handshake refused over HTTP
carries ElevenLabs' usual `{"detail": ..}` body.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
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
from callboard.speech.tts.elevenlabs import read_error as read_error_body

log = logging.getLogger(__name__)

MODEL = "scribe_v2_realtime"
AUDIO_FORMAT = f"pcm_{SAMPLE_RATE}"
# After the end, a committed transcript may be a VAD commit that crossed our final commit:
# wait this long for more before closing.
END_LINGER = 0.5
COMMITTED = ("committed_transcript", "committed_transcript_with_timestamps")
# Error message types after which a new session may well succeed; the others (auth_error,
# quota_exceeded, unaccepted_terms, input_error, invalid_request, chunk_size_exceeded, ...)
# would fail the same way again.
TRANSIENT_ERRORS = frozenset(
    {
        "error",
        "rate_limited",
        "queue_overflow",
        "resource_exhausted",
        "session_time_limit_exceeded",
        "transcriber_error",
        "commit_throttled",
        "insufficient_audio_activity",
    }
)
FINAL_COMMIT = json.dumps(
    {
        "message_type": "input_audio_chunk",
        "audio_base_64": "",
        "commit": True,
        "sample_rate": SAMPLE_RATE,
    }
)


class ElevenLabsStt:
    name = "elevenlabs"

    def __init__(
        self,
        settings: Settings,
        *,
        send_deadline: float = SEND_DEADLINE,
        end_wait: float = END_WAIT,
        end_linger: float = END_LINGER,
        open_timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self._base = websocket_base(settings.elevenlabs_base_url)
        self._key = settings.elevenlabs_api_key
        self._send_deadline = send_deadline
        self._end_wait = end_wait
        self._end_linger = end_linger
        self._open_timeout = open_timeout

    def configured(self, request: SttRequest) -> bool:
        return bool(request.api_key or self._key)

    def url(self, request: SttRequest) -> str:
        query = {"model_id": MODEL, "audio_format": AUDIO_FORMAT, "commit_strategy": "vad"}
        language = iso_639_1(request.language or "en")
        if language:
            query["language_code"] = language
        return f"{self._base}/v1/speech-to-text/realtime?{urlencode(query)}"

    async def transcribe(
        self, audio: AsyncIterator[bytes], request: SttRequest
    ) -> AsyncIterator[Transcript]:
        key = request.api_key or self._key
        if not key:
            raise SttError("no elevenlabs API key provided")
        socket = await open_socket(
            self.url(request),
            {"xi-api-key": key},
            provider=self.name,
            read_error=read_error,
            open_timeout=self._open_timeout,
        )
        session = SocketSession(
            socket, provider=self.name, send_deadline=self._send_deadline, end_wait=self._end_wait
        )
        session.start(audio, encode=AudioEncoder(), end_messages=[FINAL_COMMIT])
        reader = Reader(request.partial)
        try:
            async for message in session.messages(closed_error):
                transcript = reader.read(message)
                if reader.committed and session.ended:
                    # The answer to our final commit, or a VAD commit that crossed it, in
                    # which case the answer follows at once: end when nothing more comes.
                    session.linger = self._end_linger
                if transcript is not None:
                    yield transcript
        finally:
            await session.close()

    async def aclose(self) -> None:
        """Nothing pooled: each stream has its own socket."""


class AudioEncoder:
    """PCM chunks as `input_audio_chunk` messages; an odd byte waits for the next chunk so
    that no message splits a sample."""

    def __init__(self) -> None:
        self._carry = b""

    def __call__(self, chunk: bytes) -> str | None:
        data = self._carry + chunk
        whole = len(data) - len(data) % 2
        self._carry = data[whole:]
        if not whole:
            return None
        return json.dumps(
            {
                "message_type": "input_audio_chunk",
                "audio_base_64": base64.b64encode(data[:whole]).decode("ascii"),
                "commit": False,
                "sample_rate": SAMPLE_RATE,
            }
        )


class Reader:
    """Server messages to transcripts: partials (only when asked for), committed segments
    (once each, though with timestamps one may come in two shapes), errors raised."""

    def __init__(self, partial: bool) -> None:
        self.partial = partial
        self.committed = False  # the last message read was a committed transcript
        self._last_commit: tuple[str, str] | None = None  # (message type, text)

    def read(self, message: Data) -> Transcript | None:
        self.committed = False
        if not isinstance(message, str):
            return None  # the API sends JSON text only
        data = json_body(message)
        if not isinstance(data, dict):
            log.debug("elevenlabs: ignoring a message that is not a JSON object")
            return None
        kind = str(data.get("message_type") or "")
        text = data.get("text")
        text = text.strip() if isinstance(text, str) else ""
        if kind == "partial_transcript":
            if not self.partial or not text:
                return None
            log.debug("elevenlabs: interim %r", text)
            return Transcript(text, False)
        if kind in COMMITTED:
            self.committed = True
            last, self._last_commit = self._last_commit, (kind, text)
            if last is not None and last[0] != kind and last[1] == text:
                self._last_commit = None  # the same commit in its other shape
                return None
            if not text:
                return None
            log.debug("elevenlabs: final %r", text)
            return Transcript(text, True)
        if "error" in data or kind in TRANSIENT_ERRORS:
            detail = data.get("error") or kind
            raise SttError(f"elevenlabs {kind}: {detail}", transient=kind in TRANSIENT_ERRORS)
        log.debug("elevenlabs: %s message", kind)  # session_started, entities, ...
        return None


def read_error(status: int, headers: Headers, body: bytes) -> str | None:
    """A handshake refused over HTTP: ElevenLabs' `{"detail": ..}` body, else its text."""
    message = read_error_body(json_body(body))
    return message or body.decode("utf-8", "replace").strip()[:200] or None


def closed_error(frame: Close | None) -> SttError:
    """A close with no error message before it (those raise in `Reader`)."""
    description = close_description(frame)
    transient = (
        frame is None
        or frame.code in TRANSIENT_CLOSE_CODES
        or frame.code == 1000  # the server ended a session we had not ended
        or frame.reason in TRANSIENT_ERRORS
    )
    return SttError(f"elevenlabs: {description}", transient=transient)


def iso_639_1(language: str) -> str:
    """`en-US` -> `en`: the realtime API takes an ISO 639-1 (or 639-3) code alone."""
    return language.replace("_", "-").split("-", 1)[0].strip().lower()
