"""The seam every speech-to-text provider implements.

A provider turns a stream of audio (16 kHz mono PCM16 LE, in chunks of 20 ms or more, as an
async iterator that ends when the caller stops) into transcripts: `transcribe` yields
`Transcript`s as the provider sends them, and returns once the audio has ended and the last
final result is in. The caller feeds it from a tap off the media clock, never on it.

Errors: `SttError`, with the provider's own message. `transient=True` (the connection dropped,
a 5xx, a 429) lets the caller reconnect once, losing at most the audio in flight; anything
else ends the stream. A provider must not block: a socket write that cannot complete within
`SEND_DEADLINE` seconds raises a transient SttError rather than hanging, so a stuck provider
never holds up a hang-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

SAMPLE_RATE = 16_000
SEND_DEADLINE = 5.0


@dataclass(frozen=True, slots=True)
class SttRequest:
    language: str = "en"
    partial: bool = False  # also yield interim results
    api_key: str | None = None  # overrides the provider's configured key


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    is_final: bool


class SttError(Exception):
    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class SttProvider(Protocol):
    name: str  # as in the API: "elevenlabs", "deepgram", "azure", "local"

    def configured(self, request: SttRequest) -> bool:
        """A key is available for this request (its own, or configured)."""
        ...

    def transcribe(
        self, audio: AsyncIterator[bytes], request: SttRequest
    ) -> AsyncIterator[Transcript]:
        """Transcripts as they come; interim ones only when `request.partial`."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections, loaded models or worker threads (server shutdown)."""
        ...
