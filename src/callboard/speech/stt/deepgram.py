"""Deepgram live speech-to-text: the `/v1/listen` WebSocket, fed 16 kHz PCM16.

`wss://{base}/v1/listen?model=nova-3&encoding=linear16&sample_rate=16000&channels=1&language=..
&interim_results=..&punctuate=true` with `Authorization: Token <key>`. Audio goes as binary
frames, `{"type":"KeepAlive"}` while none flows (the server gives up after 10 s of nothing),
and `{"type":"CloseStream"}` at the end, after which the server sends its last `Results` and
`Metadata` and closes 1000. `Results` carry `channel.alternatives[0].transcript` and
`is_final`; interim ones are asked for (and passed on) only with `partial`.

Failures: the handshake is plain HTTP (401 bad key, 400 bad parameter, 402/403, 429) with a
`dg-error` header and a JSON body `{"err_code", "err_msg"}`; after it, errors come only as a
close frame whose reason is a code: `NET-0000`/`NET-0001` (1011, timeouts: transient) or
`DATA-0000` (undecodable audio: final).
"""

from __future__ import annotations

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
from callboard.speech.tts.deepgram import read_error as read_error_body

log = logging.getLogger(__name__)

MODEL = "nova-3"
KEEPALIVE_INTERVAL = 4.0  # Deepgram: every 3-5 s while no audio flows
KEEPALIVE = json.dumps({"type": "KeepAlive"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})


class DeepgramStt:
    name = "deepgram"

    def __init__(
        self,
        settings: Settings,
        *,
        send_deadline: float = SEND_DEADLINE,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        end_wait: float = END_WAIT,
        open_timeout: float = OPEN_TIMEOUT,
    ) -> None:
        self._base = websocket_base(settings.deepgram_base_url)
        self._key = settings.deepgram_api_key
        self._send_deadline = send_deadline
        self._keepalive_interval = keepalive_interval
        self._end_wait = end_wait
        self._open_timeout = open_timeout

    def configured(self, request: SttRequest) -> bool:
        return bool(request.api_key or self._key)

    def url(self, request: SttRequest) -> str:
        query = {
            "model": MODEL,
            "encoding": "linear16",
            "sample_rate": str(SAMPLE_RATE),
            "channels": "1",
            "language": request.language or "en",
            "interim_results": "true" if request.partial else "false",
            "punctuate": "true",
        }
        return f"{self._base}/v1/listen?{urlencode(query)}"

    async def transcribe(
        self, audio: AsyncIterator[bytes], request: SttRequest
    ) -> AsyncIterator[Transcript]:
        key = request.api_key or self._key
        if not key:
            raise SttError("no deepgram API key provided")
        socket = await open_socket(
            self.url(request),
            # `Token` is how Deepgram documents the scheme for API keys.
            {"Authorization": f"Token {key}"},
            provider=self.name,
            read_error=read_error,
            open_timeout=self._open_timeout,
        )
        if socket.response is not None:
            log.debug("deepgram: stream open (%s)", socket.response.headers.get("dg-request-id"))
        session = SocketSession(
            socket, provider=self.name, send_deadline=self._send_deadline, end_wait=self._end_wait
        )
        session.start(
            audio,
            encode=lambda chunk: chunk,
            end_messages=[CLOSE_STREAM],
            keepalive=(self._keepalive_interval, KEEPALIVE),
        )
        try:
            async for message in session.messages(closed_error):
                transcript = parse(message, request.partial)
                if transcript is not None:
                    yield transcript
        finally:
            await session.close()

    async def aclose(self) -> None:
        """Nothing pooled: each stream has its own socket."""


def parse(message: Data, partial: bool) -> Transcript | None:
    """The transcript a server message carries, if it is one to pass on."""
    if not isinstance(message, str):
        return None  # the API sends JSON text only
    data = json_body(message)
    if not isinstance(data, dict):
        log.debug("deepgram: ignoring a message that is not a JSON object")
        return None
    kind = data.get("type")
    if kind == "Results":
        channel = data.get("channel")
        alternatives = channel.get("alternatives") if isinstance(channel, dict) else None
        first = alternatives[0] if isinstance(alternatives, list) and alternatives else None
        text = first.get("transcript") if isinstance(first, dict) else None
        if not isinstance(text, str) or not text.strip():
            return None  # empty transcripts are normal (silence)
        is_final = data.get("is_final") is True
        if not is_final and not partial:
            return None
        log.debug("deepgram: %s %r", "final" if is_final else "interim", text)
        return Transcript(text.strip(), is_final)
    if kind == "Error":
        # Not part of v1 (errors are close frames), but older servers sent it: stop cleanly.
        detail = data.get("description") or data.get("message") or "error"
        raise SttError(f"deepgram: {detail}")
    log.debug("deepgram: %s message", kind)  # Metadata, UtteranceEnd, SpeechStarted
    return None


def read_error(status: int, headers: Headers, body: bytes) -> str | None:
    """The handshake's error message: the JSON body, else the `dg-error` header (which
    carries the same body, or plain text)."""
    message = read_error_body(json_body(body))
    if message:
        return message
    header = headers.get("dg-error")
    if header:
        return read_error_body(json_body(header)) or header
    return body.decode("utf-8", "replace").strip()[:200] or None


def closed_error(frame: Close | None) -> SttError:
    """A close the client did not ask for. `NET-*` reasons are timeouts on either side."""
    description = close_description(frame)
    if frame is None:
        return SttError(f"deepgram: {description}", transient=True)
    transient = not frame.reason.startswith("DATA-") and (
        frame.code in TRANSIENT_CLOSE_CODES
        or frame.code == 1000  # the server ended a stream we had not ended
        or frame.reason.startswith("NET-")
    )
    return SttError(f"deepgram: {description}", transient=transient)
