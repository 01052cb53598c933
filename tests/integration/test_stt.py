"""Speech-to-text end to end with the offline providers: B speaks Harvard sentences with
`local` TTS into a PCMU call, A transcribes its leg with `local` STT; the word error rate of
what A publishes must be at most 20 %. Room STT attributes each participant's words to its leg.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver

HARVARD = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
]


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower().replace("-", " ")).split()


def word_error_rate(reference: list[str], hypothesis: list[str]) -> float:
    """Levenshtein distance over words, divided by the reference's length."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1] / max(1, len(reference))


def call(a: ServerProcess, b: ServerProcess, hooks: WebhookReceiver) -> tuple[str, str]:
    """A calls B over PCMU; both leg ids once connected."""
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob"), "codecs": ["PCMU"]})
    assert response.status_code == 201, response.text
    a_leg = response.json()["id"]
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
    return a_leg, b_leg


def test_local_tts_to_local_stt_over_pcmu(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    a_leg, b_leg = call(a, b, hooks)
    started = a.api("POST", f"/legs/{a_leg}/stt", {"language": "en", "provider": "local"})
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "stt_started" and started.json()["leg_id"] == a_leg
    again = a.api("POST", f"/legs/{a_leg}/stt", {"language": "en"})
    assert again.status_code == 409, again.text
    since = hooks.mark()
    spoken = b.api("POST", f"/legs/{b_leg}/tts", {"text": " ".join(HARVARD), "provider": "local"})
    assert spoken.status_code == 200, spoken.text
    hooks.wait_for("tts.finished", timeout=40, since=since, leg_id=b_leg)
    time.sleep(2.5)  # the last utterance's pause, then its decoding
    stopped = a.api("DELETE", f"/legs/{a_leg}/stt")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stt_stopped"
    assert a.api("DELETE", f"/legs/{a_leg}/stt").status_code == 404
    texts = hooks.events("stt.text", since=since, leg_id=a_leg)
    assert texts and all(e["is_final"] for e in texts)  # no partials unless asked for
    assert all("room_id" not in e and e["text"].strip() for e in texts)
    heard = [w for e in texts for w in words(e["text"])]
    wer = word_error_rate(words(" ".join(HARVARD)), heard)
    print(f"\nlocal TTS -> PCMU -> local STT: WER {wer:.3f} over {len(texts)} utterances")
    assert wer <= 0.20, (wer, [e["text"] for e in texts])
    # Transcripts stay out of the server's log above debug.
    loud = [line for line in a.log_text().lower().splitlines() if " debug " not in line]
    assert not [line for line in loud if "birch" in line or "planks" in line]


def test_stt_needs_a_connected_leg_and_a_key(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")})
    a_leg = response.json()["id"]
    b_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    ringing = b.api("POST", f"/legs/{b_leg}/stt", {"language": "en"})
    assert ringing.status_code == 409 and "connected" in ringing.json()["error"]
    assert b.api("POST", f"/legs/{b_leg}/answer").status_code == 200
    hooks.wait_for("leg.connected", since=since, leg_id=a_leg)
    no_key = b.api("POST", f"/legs/{b_leg}/stt", {"language": "en", "provider": "deepgram"})
    assert no_key.status_code == 503 and "no deepgram API key" in no_key.json()["error"]
    assert b.api("POST", "/legs/nope/stt", {}).status_code == 404
    assert b.api("DELETE", f"/legs/{b_leg}/stt").status_code == 404
    assert b.api("POST", "/rooms/nope/stt", {}).status_code == 404
    # Hanging up frees the stream; nothing is left to stop.
    assert b.api("POST", f"/legs/{b_leg}/stt", {"language": "en"}).status_code == 200
    assert b.api("DELETE", f"/legs/{b_leg}").status_code == 200
    assert b.api("DELETE", f"/legs/{b_leg}/stt").status_code == 404


@pytest.mark.parametrize("joins_late", [False, True])
def test_room_stt_attributes_words_to_each_leg(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, joins_late: bool
) -> None:
    hooks = webhook_receiver
    a = server_factory(WEBHOOK_URL=hooks.url)
    b = server_factory(WEBHOOK_URL=hooks.url)
    first_a, first_b = call(a, b, hooks)
    second_a, second_b = call(a, b, hooks)
    assert a.api("POST", "/rooms/desk/legs", {"leg_id": first_a}).status_code == 200
    if not joins_late:
        assert a.api("POST", "/rooms/desk/legs", {"leg_id": second_a}).status_code == 200
    started = a.api("POST", "/rooms/desk/stt", {"language": "en", "provider": "local"})
    assert started.status_code == 200, started.text
    expected = [first_a] if joins_late else sorted([first_a, second_a])
    assert started.json()["leg_ids"] == expected and started.json()["room_id"] == "desk"
    if joins_late:
        assert a.api("POST", "/rooms/desk/legs", {"leg_id": second_a}).status_code == 200
    since = hooks.mark()
    b.api("POST", f"/legs/{first_b}/tts", {"text": HARVARD[1], "provider": "local"})
    hooks.wait_for("tts.finished", timeout=20, since=since, leg_id=first_b)
    b.api("POST", f"/legs/{second_b}/tts", {"text": HARVARD[4], "provider": "local"})
    hooks.wait_for("tts.finished", timeout=20, since=since, leg_id=second_b)
    time.sleep(2.5)
    assert a.api("DELETE", "/rooms/desk/stt").json()["status"] == "stt_stopped"
    by_leg: dict[str, list[str]] = {}
    for event in hooks.events("stt.text", since=since):
        assert event["room_id"] == "desk"
        by_leg.setdefault(event["leg_id"], []).extend(words(event["text"]))
    # Each leg's words are its own sentence (tiny.en gets a word or three wrong) and not the
    # other one's.
    first, second = by_leg.get(first_a, []), by_leg.get(second_a, [])
    assert word_error_rate(words(HARVARD[1]), first) <= 0.4, by_leg
    assert word_error_rate(words(HARVARD[4]), second) <= 0.4, by_leg
    assert word_error_rate(words(HARVARD[4]), first) > 0.8, by_leg
    assert word_error_rate(words(HARVARD[1]), second) > 0.8, by_leg


# -- cloud STT through the server, against stand-ins ---------------------------------------


@pytest.mark.parametrize("provider", ["deepgram", "elevenlabs", "azure"])
def test_cloud_stt_hears_what_crossed_the_call_and_reconnects_once(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver, provider: str
) -> None:
    """B speaks through the ElevenLabs TTS stand-in (voice Rachel: a 440 Hz sine); A
    transcribes through the provider's live STT stand-in, which names the tones it hears."""
    from tests.helpers.standins import start_standin
    from tests.helpers.standins.azure_stt import DEFAULT_KEY as AZURE_KEY
    from tests.helpers.standins.azure_stt import AzureSttStandin
    from tests.helpers.standins.deepgram_stt import DEFAULT_KEY as DEEPGRAM_KEY
    from tests.helpers.standins.deepgram_stt import DeepgramSttStandin
    from tests.helpers.standins.elevenlabs import DEFAULT_KEY as ELEVENLABS_KEY
    from tests.helpers.standins.elevenlabs import ElevenLabsStandin
    from tests.helpers.standins.elevenlabs_stt import ElevenLabsSttStandin
    from tests.helpers.standins.stt_common import start_ws_standin

    hooks = webhook_receiver
    tts_base, stop_tts = start_standin(ElevenLabsStandin())
    standins = {
        "deepgram": (DeepgramSttStandin, DEEPGRAM_KEY, "DEEPGRAM_BASE_URL"),
        "elevenlabs": (ElevenLabsSttStandin, ELEVENLABS_KEY, "ELEVENLABS_BASE_URL"),
        "azure": (AzureSttStandin, AZURE_KEY, "AZURE_STT_BASE_URL"),
    }
    cls, key, base_var = standins[provider]
    stt = cls()
    stt_base, stop_stt = start_ws_standin(stt)
    try:
        a = server_factory(WEBHOOK_URL=hooks.url, **{base_var: stt_base})
        b = server_factory(
            WEBHOOK_URL=hooks.url, ELEVENLABS_BASE_URL=tts_base, ELEVENLABS_API_KEY=ELEVENLABS_KEY
        )
        a_leg, b_leg = call(a, b, hooks)
        # Each of the next two provider sessions is cut after 6 s of audio (16 kHz PCM16).
        stt.knobs.drop_next(after_bytes=6 * 32000, count=2)
        body = {"language": "en", "provider": provider, "api_key": key}
        assert a.api("POST", f"/legs/{a_leg}/stt", body).status_code == 200

        def say_and_hear(text: str) -> dict[str, object]:
            since = hooks.mark()
            spoken = b.api("POST", f"/legs/{b_leg}/tts", {"text": text, "voice": "Rachel"})
            assert spoken.status_code == 200, spoken.text
            hooks.wait_for("tts.finished", timeout=20, since=since, leg_id=b_leg)
            return dict(hooks.wait_for("stt.text", timeout=10, since=since, leg_id=a_leg))

        first = say_and_hear("Hello there.")
        assert first["text"] == "tone 440" and first["is_final"] is True
        # The provider drops the connection: reconnected once, the next words still arrive.
        deadline = time.monotonic() + 10
        while stt.knobs.connection_count < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stt.knobs.connection_count == 2
        since = hooks.mark()
        assert say_and_hear("And more.")["text"] == "tone 440"
        # The second session is cut too: the stream ends with stt.error, the call goes on.
        error = hooks.wait_for("stt.error", timeout=15, since=since, leg_id=a_leg)
        assert error["error"]
        assert stt.knobs.connection_count == 2
        assert a.get_leg(a_leg)["state"] == "connected"  # type: ignore[index]
    finally:
        stop_stt()
        stop_tts()


def test_a_stuck_provider_never_holds_up_a_hang_up(
    server_factory: ServerFactory, webhook_receiver: WebhookReceiver
) -> None:
    """The provider stops reading: the leg still hangs up at once, and the stream is freed."""
    from tests.helpers.standins.deepgram_stt import DEFAULT_KEY, DeepgramSttStandin
    from tests.helpers.standins.stt_common import start_ws_standin

    hooks = webhook_receiver
    stt = DeepgramSttStandin()
    stt.knobs.stall_seconds = 60.0
    stt.knobs.stall_next(after_bytes=0, count=5)
    base, stop = start_ws_standin(stt)
    try:
        a = server_factory(WEBHOOK_URL=hooks.url, DEEPGRAM_BASE_URL=base)
        b = server_factory(WEBHOOK_URL=hooks.url)
        a_leg, _ = call(a, b, hooks)
        body = {"language": "en", "provider": "deepgram", "api_key": DEFAULT_KEY}
        assert a.api("POST", f"/legs/{a_leg}/stt", body).status_code == 200
        time.sleep(3)  # audio piles up against the stalled socket
        since = hooks.mark()
        t0 = time.monotonic()
        assert a.api("DELETE", f"/legs/{a_leg}").status_code == 200
        hooks.wait_for("leg.disconnected", timeout=5, since=since, leg_id=a_leg)
        assert time.monotonic() - t0 < 1.0
        assert a.api("GET", "/legs").json() == []
        assert a.running()
    finally:
        stt.knobs.reset()
        stop()
