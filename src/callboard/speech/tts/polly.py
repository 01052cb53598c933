"""AWS Polly SynthesizeSpeech as a TTS provider (botocore, SigV4, raw PCM at 16 kHz).

boto3 clients are blocking, so client creation and the call run in a worker thread that pushes
the `AudioStream` chunks into a small bounded asyncio queue: the event loop never waits on the
network, and a slow consumer holds the worker back rather than buffering the whole answer.

Credentials: the request's `api_key` as `ACCESS:SECRET` (or `ACCESS:SECRET:SESSION_TOKEN`),
else botocore's default chain. `configured()` is always True (API-NOTES: aws never answers
503); a missing credential is a final `TtsError` at synthesis. Region from `AWS_REGION` /
`AWS_DEFAULT_REGION` (default us-east-1); the endpoint from botocore's own
`AWS_ENDPOINT_URL_POLLY`, which botocore reads when the client is created.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
from collections.abc import AsyncIterator
from typing import Any

from callboard.config import Settings
from callboard.speech.tts.base import SAMPLE_RATE, TtsError, TtsRequest
from callboard.speech.tts.cloud_http import HttpTimeouts

log = logging.getLogger(__name__)

ENGINES = ("standard", "neural", "long-form", "generative")
DEFAULT_ENGINE = "neural"
READ_BYTES = 4096  # per AudioStream read: 128 ms of audio
QUEUE_CHUNKS = 16  # worker read-ahead before it waits for the consumer
_TRANSIENT_CODES = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ServiceFailureException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalFailure",
}
_END = object()  # the worker's last queue item after the final chunk


def engine_for(model_id: str | None) -> str:
    """Polly's engine: the model_id when it names one, else neural (as VoiceBlender did)."""
    engine = (model_id or "").strip().lower()
    return engine if engine in ENGINES else DEFAULT_ENGINE


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _split_key(api_key: str) -> tuple[str, str, str | None]:
    parts = api_key.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise TtsError("aws: api_key must be ACCESS_KEY_ID:SECRET_ACCESS_KEY")
    return parts[0], parts[1], parts[2] if len(parts) == 3 and parts[2] else None


def _map_error(exc: BaseException) -> TtsError:
    """A botocore failure as a TtsError with the service's message; transient where retrying
    may help (throttling, 5xx, connection and read failures)."""
    if isinstance(exc, TtsError):
        return exc
    mapped = _map_botocore(exc)
    mapped.__cause__ = exc
    return mapped


def _map_botocore(exc: BaseException) -> TtsError:
    from botocore import exceptions as bx

    if isinstance(exc, bx.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or "Unknown"
        message = err.get("Message") or str(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        transient = status == 429 or status >= 500 or code in _TRANSIENT_CODES
        return TtsError(f"aws polly: {code}: {message}", transient=transient)
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError | bx.IncompleteReadError):
        return TtsError(f"aws polly: connection failed: {exc}", transient=True)
    if isinstance(exc, bx.BotoCoreError):  # no credentials, bad parameters, bad endpoint...
        return TtsError(f"aws polly: {exc}")
    return TtsError(f"aws polly: {type(exc).__name__}: {exc}")


class PollyTts:
    name = "aws"
    needs_voice = True

    def __init__(self, settings: Settings, *, timeouts: HttpTimeouts | None = None) -> None:
        self._timeouts = timeouts or HttpTimeouts()
        self._clients: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()  # boto3 session creation is not thread-safe

    def configured(self, request: TtsRequest) -> bool:
        return True

    async def aclose(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _client(self, api_key: str | None) -> Any:
        """A cached client per credentials, region and endpoint (runs in the worker thread)."""
        import boto3
        from botocore.config import Config

        creds = _split_key(api_key) if api_key else (None, None, None)
        cache_key = (*creds, region(), os.environ.get("AWS_ENDPOINT_URL_POLLY"))
        with self._lock:
            client = self._clients.get(cache_key)
            if client is None:
                session = boto3.session.Session(
                    aws_access_key_id=creds[0],
                    aws_secret_access_key=creds[1],
                    aws_session_token=creds[2],
                    region_name=cache_key[3],
                )
                client = session.client(
                    "polly",
                    config=Config(
                        connect_timeout=self._timeouts.connect,
                        # A socket-level backstop; the deadlines proper are enforced on the
                        # queue, so an abandoned worker ends within this much.
                        read_timeout=max(self._timeouts.first_byte, self._timeouts.between_chunks),
                        # The TTS job retries with its own back-off; botocore's would stack.
                        retries={"total_max_attempts": 1},
                    ),
                )
                if len(self._clients) >= 16:  # per-request keys: keep the cache bounded
                    # Dropped, not closed: another synthesis may still be using it.
                    self._clients.pop(next(iter(self._clients)))
                self._clients[cache_key] = client
            return client

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[bytes]:
        if not request.voice:
            raise TtsError("aws polly: a voice is required")
        params: dict[str, Any] = {
            "Text": request.text,
            "TextType": "text",
            "VoiceId": request.voice,
            "Engine": engine_for(request.model_id),
            "OutputFormat": "pcm",
            "SampleRate": str(SAMPLE_RATE),
        }
        if request.language:
            params["LanguageCode"] = request.language
        log.debug(
            "polly: voice %s engine %s, %d chars",
            request.voice,
            params["Engine"],
            len(request.text),
        )
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_CHUNKS)
        stop = threading.Event()

        def put(item: Any) -> bool:
            """Hand an item to the loop, waiting while the queue is full; False once stopped."""
            try:
                fut = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
            except RuntimeError:  # the loop is closed
                return False
            while True:
                try:
                    fut.result(timeout=0.25)
                    return True
                except concurrent.futures.TimeoutError:
                    if stop.is_set():
                        fut.cancel()
                        return False
                except concurrent.futures.CancelledError:
                    return False

        def work() -> None:
            try:
                answer = self._client(request.api_key).synthesize_speech(**params)
                stream = answer["AudioStream"]
                try:
                    for chunk in stream.iter_chunks(READ_BYTES):
                        if stop.is_set() or not put(chunk):
                            return
                finally:
                    stream.close()
                put(_END)
            except Exception as exc:  # handed to the consumer, which raises it
                put(_map_error(exc))

        worker = asyncio.ensure_future(asyncio.to_thread(work))
        # The worker may outlive an abandoned synthesis (blocked in a read until botocore's
        # timeout); collect its outcome so it is never reported as unretrieved.
        worker.add_done_callback(lambda t: t.cancelled() or t.exception())
        first = True
        odd = b""  # a read may split a sample: carry its odd byte over
        try:
            while True:
                timeout = self._timeouts.first_byte if first else self._timeouts.between_chunks
                try:
                    async with asyncio.timeout(timeout):
                        item = await queue.get()
                except TimeoutError:
                    raise TtsError(
                        f"aws polly: no audio within {timeout:g} s"
                        if first
                        else f"aws polly: the audio stream stalled for {timeout:g} s",
                        transient=True,
                    ) from None
                if item is _END:
                    if first:  # as cloud_http.stream_pcm: nothing to play is a failure
                        raise TtsError("aws polly: the answer held no audio")
                    return
                if isinstance(item, TtsError):
                    raise item
                first = False
                item, odd = odd + item, b""
                if len(item) % 2:
                    item, odd = item[:-1], item[-1:]
                if item:
                    yield item
        finally:
            stop.set()
            # Free a worker blocked on a full queue.
            while not queue.empty():
                queue.get_nowait()
