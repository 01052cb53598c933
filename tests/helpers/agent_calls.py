"""What the agent tests share: the cloud providers' stand-ins served and configured as a user
would configure the server, and a call whose far end has a "caller" that speaks and listens.

The layout: A calls B. On A the call sits in a room with a WebSocket participant, the caller:
what it says reaches B's leg over RTP, and it hears what B's leg sends. Agents attach on B.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.helpers.audio import active_spans
from tests.helpers.room_ear import RATE, RoomEar
from tests.helpers.server import ServerProcess
from tests.helpers.standins import deepgram_agent, elevenlabs_agent, vapi
from tests.helpers.standins.agent_common import AgentKnobs
from tests.helpers.standins.common import sine
from tests.helpers.standins.stt_common import start_ws_standin
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import connect

REPLY_HZ = 660.0  # the stand-ins' and the tone bot's answer
CLOUD_PROVIDERS = ("elevenlabs", "deepgram", "vapi")


@dataclass
class CloudAgent:
    provider: str
    standin: Any
    env: dict[str, str]  # the server's configuration: base URL and key
    body: dict[str, Any]  # the attach request, without a key
    stop: Callable[[], None]  # the stand-in's server

    @property
    def knobs(self) -> AgentKnobs:
        knobs: AgentKnobs = self.standin.knobs
        return knobs


def start_cloud_agent(provider: str) -> CloudAgent:
    """`provider`'s stand-in, served on a free port, with the configuration that points a
    server at it."""
    standin: Any
    if provider == "elevenlabs":
        standin = elevenlabs_agent.ElevenLabsAgentStandin()
        base, stop = start_ws_standin(standin)
        env = {"ELEVENLABS_BASE_URL": base, "ELEVENLABS_API_KEY": elevenlabs_agent.DEFAULT_KEY}
        body: dict[str, Any] = {"agent_id": elevenlabs_agent.DEFAULT_AGENT}
        standin.knobs.ping_interval = 0.5  # pongs are checked
    elif provider == "deepgram":
        standin = deepgram_agent.DeepgramAgentStandin()
        base, stop = start_ws_standin(standin)
        env = {
            "DEEPGRAM_AGENT_URL": deepgram_agent.converse_url(base),
            "DEEPGRAM_API_KEY": deepgram_agent.DEFAULT_KEY,
        }
        body = {}
    elif provider == "vapi":
        standin = vapi.VapiStandin()
        base, stop = start_ws_standin(standin)
        env = {"VAPI_BASE_URL": base, "VAPI_API_KEY": vapi.DEFAULT_KEY}
        body = {"assistant_id": vapi.DEFAULT_ASSISTANT}
    else:
        raise ValueError(f"no stand-in for {provider}")
    standin.knobs.reply_frequency = REPLY_HZ
    return CloudAgent(provider, standin, env, body, stop)


@contextmanager
def cloud_agent(provider: str) -> Iterator[CloudAgent]:
    agent = start_cloud_agent(provider)
    try:
        yield agent
    finally:
        agent.stop()


def burst(hz: float = 440.0, seconds: float = 0.6) -> np.ndarray:
    """A tone burst and the quiet after it that ends the caller's turn."""
    tone = sine(hz, RATE, round(seconds * RATE))
    return np.concatenate([tone, np.zeros(round(0.5 * RATE), dtype=np.int16)])


def call_with_caller(
    a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver, room: str
) -> tuple[str, str, RoomEar]:
    a_leg, b_leg = connect(a, b, hooks)
    assert a.api("POST", f"/rooms/{room}/legs", {"leg_id": a_leg}).status_code == 200
    return a_leg, b_leg, RoomEar(a, room)


def reply_spans(heard: np.ndarray) -> list[tuple[float, float]]:
    """Stretches of sound longer than 100 ms in what an ear heard."""
    return [(s, e) for s, e in active_spans(heard, RATE, threshold_dbfs=-30) if e - s > 0.1]
