"""What every AI-agent provider client is and what it talks to.

A client (`AgentClient`) holds one provider session: it opens the provider's socket, sends
what the call hears (handed to it frame by frame), and turns what the provider sends into
calls on its `AgentLink`: audio to play, a flush on barge-in, transcripts, the conversation
id. It knows nothing of legs, rooms or the media clock; core/agents.py gives it a link and
runs it as a task.

The audio a link gives is 16 kHz PCM in 20 ms frames whatever the leg's codec or the room's
rate; the audio a client plays may be at any rate and in chunks of any size and speed (the
link resamples it and paces it at real time).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

SAMPLE_RATE = 16000  # what a link hears and the rate most providers are asked for
SEND_DEADLINE = 5.0  # seconds one write to a provider socket may take before the session fails
OPEN_TIMEOUT = 10.0  # seconds for TCP, TLS and the WebSocket handshake
CLOSE_TIMEOUT = 2.0  # seconds for a closing handshake before the socket is dropped


class AgentError(Exception):
    """The session failed; the message is the provider's own where it gave one."""


class InjectionUnsupported(AgentError):
    """This provider (or this session) cannot take a message."""


class AgentLink(Protocol):
    """The call's side of a session."""

    def listen(
        self,
        consumer: Callable[[np.ndarray], None] | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Call `consumer` with what the agent hears, 16 kHz int16 frames of 20 ms, as they
        come (at real time), right after the media tick that produced them; it must not block.
        An exception it raises goes to `on_error` and stops the listening; None stops it."""
        ...

    def play(self, pcm: np.ndarray, rate: int) -> None:
        """Agent speech (int16 mono at `rate`), queued behind what is still playing."""
        ...

    def interrupt(self) -> None:
        """Barge-in: drop the agent speech queued and not yet played, at once."""
        ...

    def connected(self, conversation_id: str | None) -> None: ...

    def user_transcript(self, text: str) -> None: ...

    def agent_response(self, text: str) -> None: ...


class AgentClient(Protocol):
    provider: str

    async def run(self, link: AgentLink) -> None:
        """Connect and bridge until the provider ends the session (returns) or it fails
        (AgentError). Cancelled when the call side ends it."""
        ...

    async def inject(self, message: str) -> None:
        """Hand the running session a message (InjectionUnsupported when it cannot)."""
        ...

    async def goodbye(self) -> None:
        """Tell the provider the call side is ending the session (best effort, bounded)."""
        ...


def pcm_bytes(pcm: np.ndarray) -> bytes:
    return pcm.astype("<i2", copy=False).tobytes()


def pcm_array(data: bytes) -> np.ndarray:
    """s16le bytes (an odd trailing byte dropped) as int16 samples: a read-only view of
    `data` where the machine is little-endian (whoever keeps the samples copies them)."""
    return np.frombuffer(data, dtype="<i2", count=len(data) // 2).astype(np.int16, copy=False)


def json_or_none(text: str) -> Any:
    """A provider's answer parsed, or None when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None
