"""The offline example agent (examples/offline_agent: a real Pipecat bot with local STT, a
rule-based responder and local TTS) through a real SIP call, as the README tells a newcomer
to run it: B attaches the bot to its leg; A's leg speaks with local TTS and transcribes what
it hears with local STT. What comes back must be the bot's words."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tests.helpers.peers import free_port
from tests.helpers.pipecat_bots import BotProcess
from tests.helpers.server import ServerFactory
from tests.helpers.webhooks import WebhookEvent, WebhookReceiver
from tests.integration.flows import connect

BOT = Path(__file__).parents[2] / "examples" / "offline_agent" / "bot.py"


def heard_text(hooks: WebhookReceiver, since: int, leg_id: str) -> str:
    return " ".join(
        e["text"] for e in hooks.events("stt.text", since=since, leg_id=leg_id) if e["is_final"]
    ).lower()


def test_the_offline_agent_greets_and_tells_the_time(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    bot = BotProcess(
        [sys.executable, str(BOT), "--port", str(free_port("tcp")), "--log-level", "WARNING"],
        ready_timeout=60,
    ).start()
    try:
        a = server_factory(WEBHOOK_URL=hooks.url, TTS_LOCAL_PRELOAD="true")
        b = server_factory(WEBHOOK_URL=hooks.url)
        a_leg, b_leg = connect(a, b, hooks)
        since = hooks.mark()
        assert a.api("POST", f"/legs/{a_leg}/stt", {"provider": "local"}).status_code == 200
        response = b.api("POST", f"/legs/{b_leg}/agent/pipecat", {"websocket_url": bot.url()})
        assert response.status_code == 200, response.text
        hooks.wait_for("agent.connected", since=since, leg_id=b_leg)

        # The greeting, heard at A.
        def greeted(event: WebhookEvent) -> bool:
            return event.type == "stt.text" and "time" in heard_text(hooks, since, a_leg)

        hooks.wait_for(greeted, since=since, timeout=30)
        assert "offline" in heard_text(hooks, since, a_leg) or "agent" in heard_text(
            hooks, since, a_leg
        )

        # A asks; the bot hears it (a user transcript over RTVI) and answers with the time.
        since = hooks.mark()
        asked = a.api("POST", f"/legs/{a_leg}/tts", {"text": "What time is it?"})
        assert asked.status_code == 200, asked.text
        transcript = hooks.wait_for("agent.user_transcript", since=since, leg_id=b_leg, timeout=30)
        assert "time" in transcript["text"].lower()

        def told_the_time(event: WebhookEvent) -> bool:
            said = heard_text(hooks, since, a_leg)
            return event.type == "stt.text" and bool(re.search(r"\d", said) or "time is" in said)

        hooks.wait_for(told_the_time, since=since, timeout=30)
        assert b.api("DELETE", f"/legs/{b_leg}/agent").status_code == 200
    finally:
        bot.stop()
