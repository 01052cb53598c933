"""The seam every text-to-speech provider implements.

A provider turns one `TtsRequest` into 16 kHz mono signed 16-bit little-endian PCM, streamed:
`synthesize` yields chunks of any size as they arrive (the first as early as the provider
allows), and the caller paces them at real time (media/streamed.py). A provider never touches
the media clock; a blocking synthesis (a local engine) runs in a worker thread.

Errors: `TtsError` with the provider's own message (its error body, or what failed). A
`TtsError` with `transient=True` (connection error, 429, 5xx) may be retried by the caller with
a bounded back-off; any other is final. `configured()` says whether a key or credential is
there at all (the API answers 503 `no <provider> API key provided` when not).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

SAMPLE_RATE = 16_000  # what every provider yields


@dataclass(frozen=True, slots=True)
class TtsRequest:
    text: str
    voice: str | None = None
    model_id: str | None = None
    language: str | None = None
    prompt: str | None = None
    api_key: str | None = None  # overrides the provider's configured key for this request


class TtsError(Exception):
    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class TtsProvider(Protocol):
    name: str  # as in the API: "elevenlabs", "aws", "google", "deepgram", "azure", "local"
    needs_voice: bool  # a request without `voice` is a 400

    def configured(self, request: TtsRequest) -> bool:
        """A key or credential is available for this request (its own, or configured)."""
        ...

    def synthesize(self, request: TtsRequest) -> AsyncIterator[bytes]:
        """PCM16 16 kHz mono chunks, as they come; raises TtsError."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections or loaded models (server shutdown)."""
        ...
