"""What the AI-agent stand-ins share: a "tone agent" that hears bursts of a sine in the audio
it is sent and answers each with a sine of its own, the knobs a test turns, and a log.

The agent is sans-IO: `feed()` takes the caller's audio and returns what the provider would
do about it, `speak()` makes a reply; the stand-in's socket code sends them in its own
protocol's framing. A test proves the audio flowed both ways: the caller plays a burst of a
tone, the agent reports `tone <Hz>` as the user's transcript, answers with a text and
`reply_seconds` of a `reply_frequency` sine (sent in `chunk_ms` chunks, `chunk_interval` s
apart: faster than real time by default, as real providers send). A new burst heard while
the previous reply would still be playing at real time is a barge-in: the agent interrupts.

    agent = ToneAgent(in_rate=16000, knobs=knobs)
    for action in agent.feed(samples):   # UserTranscript, AgentText, Reply, Interrupt
        ...
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.helpers.standins.common import sine
from tests.helpers.standins.stt_common import ToneRecogniser


@dataclass(frozen=True)
class UserTranscript:
    text: str  # "tone 440"


@dataclass(frozen=True)
class AgentText:
    text: str  # the agent's reply, as text


@dataclass(frozen=True)
class Reply:
    """The reply's audio at the agent's output rate, already cut into chunks."""

    chunks: list[bytes]
    seconds: float


@dataclass(frozen=True)
class Interrupt:
    """The caller spoke over the reply: drop what is queued."""


AgentAction = UserTranscript | AgentText | Reply | Interrupt


@dataclass
class AgentKnobs:
    """Test controls, safe to turn from the test's thread while the stand-in runs."""

    reply_frequency: float = 660.0
    reply_seconds: float = 1.0
    chunk_ms: int = 100  # of reply audio per message
    chunk_interval: float = 0.0  # seconds between reply messages (0: as fast as possible)
    greeting: bool = False  # speak first, once connected (the first message / greeting)
    end_silence: float = 0.3  # seconds of quiet that end a caller's burst
    ping_interval: float | None = None  # providers that ping: seconds between pings
    pong_timeout: float = 5.0  # an unanswered ping closes the session after this
    silent: bool = False  # stop answering anything (a stuck provider): no replies, no pings
    refuse_keys: bool = False  # refuse every key (a revoked key)
    close_after_chunks: int | None = None  # close the socket mid-reply after N chunks
    garbage_after_connect: bool = False  # send a frame that is not the protocol's
    connections: int = 0
    injected: list[Any] = field(default_factory=list)  # messages injected by the client
    log: list[tuple[float, str, Any]] = field(default_factory=list)  # (time, what, detail)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, what: str, detail: Any = None) -> None:
        with self._lock:
            self.log.append((time.monotonic(), what, detail))

    def events(self, what: str) -> list[tuple[float, Any]]:
        with self._lock:
            return [(t, d) for t, w, d in self.log if w == what]


class ToneAgent:
    """One conversation's behaviour; not thread-safe (one socket task drives it)."""

    def __init__(self, in_rate: int, out_rate: int, knobs: AgentKnobs) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.knobs = knobs
        self._recogniser = ToneRecogniser(in_rate, end_silence=knobs.end_silence)
        self._in_burst = False
        self.playing_until = 0.0  # monotonic time the last reply would end at real time

    def feed(self, samples: np.ndarray) -> list[AgentAction]:
        actions: list[AgentAction] = []
        for heard in self._recogniser.feed(samples):
            if not heard.final:
                continue
            actions.append(UserTranscript(heard.text))
            actions.append(AgentText(f"I heard {heard.text}"))
            actions.append(self.speak())
        started = self._recogniser.in_burst and not self._in_burst
        self._in_burst = self._recogniser.in_burst
        if started and time.monotonic() < self.playing_until:
            self.playing_until = 0.0
            actions.insert(0, Interrupt())
            self.knobs.note("interrupt")
        return actions

    def speak(self, seconds: float | None = None) -> Reply:
        """A reply of the configured tone (the greeting, an answer, an injected line)."""
        seconds = self.knobs.reply_seconds if seconds is None else seconds
        pcm = sine(self.knobs.reply_frequency, self.out_rate, round(seconds * self.out_rate))
        data = pcm.astype("<i2").tobytes()
        size = max(2, self.out_rate * self.knobs.chunk_ms // 1000 * 2)
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        self.playing_until = max(time.monotonic(), self.playing_until) + seconds
        self.knobs.note("reply", seconds)
        return Reply(chunks, seconds)
