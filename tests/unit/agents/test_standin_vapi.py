"""The Vapi stand-in on its own, driven by httpx and a raw `websockets` client: call creation
is validated as documented, the audio socket carries raw audio both ways in the call's format
with bare JSON events, and Live Call Control, the silence timer and the failure knobs behave
as the module says."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State

from callboard.media.g711 import ulaw_decode, ulaw_encode
from tests.helpers.standins.stt_common import start_ws_standin, tone_pcm
from tests.helpers.standins.vapi import (
    DEFAULT_ASSISTANT,
    DEFAULT_KEY,
    GREETING,
    UNAUTHORIZED,
    VapiCall,
    VapiStandin,
)

SPEECH: list[tuple[float, float]] = [
    (0, 0.1),
    (440, 0.4),
    (0, 0.4),
]  # a burst of 440 Hz, then enough quiet to end it
REPLY_SECONDS = 0.3


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[VapiStandin, str]]:
    standin = VapiStandin(api_keys={DEFAULT_KEY, "second-key"})
    base_url, stop = start_ws_standin(standin)
    yield standin, base_url
    stop()


@pytest.fixture
def standin(server: tuple[VapiStandin, str]) -> Iterator[VapiStandin]:
    server[0].reset()
    server[0].knobs.reply_seconds = REPLY_SECONDS
    yield server[0]
    server[0].reset()


@pytest.fixture
def base_url(server: tuple[VapiStandin, str], standin: VapiStandin) -> str:
    return server[1]


def call_body(audio_format: str = "pcm_s16le", rate: float = 16000, **extra: Any) -> dict[str, Any]:
    audio = {"format": audio_format, "container": "raw", "sampleRate": rate}
    body = {
        "assistantId": DEFAULT_ASSISTANT,
        "transport": {"provider": "vapi.websocket", "audioFormat": audio},
    }
    return {**body, **extra}


async def post(
    url: str, body: Any, key: str | None = DEFAULT_KEY, headers: dict[str, str] | None = None
) -> httpx.Response:
    headers = dict(headers or {})
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient() as client:
        if isinstance(body, str | bytes):
            return await client.post(url, content=body, headers=headers)
        return await client.post(url, json=body, headers=headers)


async def create(base_url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await post(f"{base_url}/call", body if body is not None else call_body())
    assert response.status_code == 201, response.text
    return response.json()


def frames(pcm: bytes, audio_format: str, rate: int) -> list[bytes]:
    """20 ms binary frames of `pcm` (PCM16 at `rate`) in the call's format."""
    if audio_format == "mulaw":
        data, size = ulaw_encode(np.frombuffer(pcm, dtype="<i2")), rate // 50
    else:
        data, size = pcm, rate // 50 * 2
    return [data[i : i + size] for i in range(0, len(data), size)]


async def send_audio(ws: ClientConnection, chunks: list[bytes], real_time: bool = False) -> None:
    for chunk in chunks:
        await ws.send(chunk)
        await asyncio.sleep(0.02 if real_time else 0)


async def collect(
    ws: ClientConnection, until: Callable[[Any], bool] | None = None, timeout: float = 3.0
) -> tuple[list[Any], bytes]:
    """Text messages (parsed when JSON) and binary audio received until a text message
    satisfies `until`, the socket closes, or `timeout` s pass."""
    texts: list[Any] = []
    audio = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for frame in ws:
                if isinstance(frame, bytes):
                    audio.extend(frame)
                    continue
                try:
                    message: Any = json.loads(frame)
                except ValueError:
                    message = frame
                texts.append(message)
                if until is not None and until(message):
                    break
    except (TimeoutError, ConnectionClosed):  # an error close (1011) raises out of the loop
        pass
    return texts, bytes(audio)


def is_(kind: str, **fields: Any) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, dict) and m.get("type") == kind and fields.items() <= m.items()


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    return float(np.argmax(spectrum)) * rate / len(samples)


async def closed(call: VapiCall) -> None:
    assert await asyncio.to_thread(call.closed.wait, 3.0), "the stand-in did not end the socket"


def speech(status: str, role: str, turn: int) -> dict[str, Any]:
    return {"type": "speech-update", "status": status, "role": role, "turn": turn}


def transcript(role: str, text: str) -> dict[str, Any]:
    return {"type": "transcript", "role": role, "transcriptType": "final", "transcript": text}


# --- POST /call --------------------------------------------------------------------------


async def test_create_call_answers_a_websocket_call(base_url: str, standin: VapiStandin) -> None:
    body = call_body(assistantOverrides={"variableValues": {"name": "Ada"}})
    response = await post(f"{base_url}/call", body, headers={"Host": "vapi.test:4321"})
    assert response.status_code == 201
    call = response.json()
    call_id = call["id"]
    assert call["type"] == "vapi.websocketCall"
    assert (call["status"], call["cost"]) == ("queued", 0)
    assert isinstance(call["orgId"], str) and call["orgId"]
    assert call["assistantId"] == DEFAULT_ASSISTANT
    assert call["createdAt"].endswith("Z") and call["updatedAt"] == call["createdAt"]
    assert call["transport"] == {
        "provider": "vapi.websocket",
        "websocketCallUrl": f"ws://vapi.test:4321/{call_id}/transport",
    }
    assert call["monitor"] == {
        "listenUrl": f"ws://vapi.test:4321/{call_id}/listen",
        "controlUrl": f"http://vapi.test:4321/{call_id}/control",
    }
    record = standin.call(call_id)
    assert record.request == body
    assert (record.audio_format, record.sample_rate, record.status) == (
        "pcm_s16le",
        16000,
        "queued",
    )
    assert standin.knobs.events("call_created") == [(standin.knobs.log[0][0], call_id)]
    # GET /call/<id> reports the same call.
    async with httpx.AsyncClient() as client:
        auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
        got = await client.get(f"{base_url}/call/{call_id}", headers=auth)
        missing = await client.get(f"{base_url}/call/nope", headers=auth)
    assert got.status_code == 200 and got.json()["id"] == call_id
    assert missing.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        call_body(),
        call_body("mulaw", 8000),
        call_body(rate=1),
        call_body(rate=192000),
        {**call_body(rate=16000.0), "name": "float rate is the same JSON number"},
        {
            k: v
            for k, v in call_body(assistant={"firstMessage": "Hi"}).items()
            if k != "assistantId"
        },
        call_body(assistantOverrides={"firstMessageMode": "assistant-waits-for-user"}),
    ],
)
async def test_valid_bodies_are_accepted(base_url: str, body: dict[str, Any]) -> None:
    assert (await post(f"{base_url}/call", body)).status_code == 201


@pytest.mark.parametrize(
    ("key", "refuse_keys"), [(None, False), ("wrong-key", False), (DEFAULT_KEY, True)]
)
async def test_bad_keys_are_refused(
    base_url: str, standin: VapiStandin, key: str | None, refuse_keys: bool
) -> None:
    standin.knobs.refuse_keys = refuse_keys
    response = await post(f"{base_url}/call", call_body(), key=key)
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    assert standin.calls == {} and len(standin.requests) == 1
    assert (await post(f"{base_url}/call", call_body(), key="second-key")).status_code == (
        401 if refuse_keys else 201
    )


def _without(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def mutate(body: dict[str, Any]) -> None:
        for part in parents:
            body = body[part]
        del body[last]

    return mutate


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def mutate(body: dict[str, Any]) -> None:
        for part in parents:
            body = body.setdefault(part, {})
        body[last] = value

    return mutate


AUDIO = "transport.audioFormat"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_without("transport"), "transport must be an object"),
        (_set("transport.provider", "vapi.sip"), "transport.provider must be one of"),
        (_without("transport.provider"), "transport.provider must be one of"),
        (_without(AUDIO), "transport.audioFormat must be an object"),
        (_set(f"{AUDIO}.format", "pcm_f32le"), f"{AUDIO}.format must be one of"),
        (_without(f"{AUDIO}.format"), f"{AUDIO}.format must be one of"),
        (_set(f"{AUDIO}.container", "wav"), f"{AUDIO}.container must be one of"),
        (_without(f"{AUDIO}.container"), f"{AUDIO}.container must be one of"),
        (_without(f"{AUDIO}.sampleRate"), f"{AUDIO}.sampleRate must be an integer number"),
        (_set(f"{AUDIO}.sampleRate", "16000"), f"{AUDIO}.sampleRate must be an integer number"),
        (_set(f"{AUDIO}.sampleRate", 16000.5), f"{AUDIO}.sampleRate must be an integer number"),
        (_set(f"{AUDIO}.sampleRate", True), f"{AUDIO}.sampleRate must be an integer number"),
        (_set(f"{AUDIO}.sampleRate", 0), f"{AUDIO}.sampleRate must not be less than 1"),
        (_set(f"{AUDIO}.sampleRate", 192001), f"{AUDIO}.sampleRate must not be greater than"),
        (_set(f"{AUDIO}.channels", 1), f"{AUDIO}.property channels should not exist"),
        (_set("transport.extra", 1), "transport.property extra should not exist"),
        (_without("assistantId"), "assistantId or assistant must be provided"),
        (_set("assistantId", 7), "assistantId must be a string"),
        (_set("assistant", "asst"), "assistant must be an object"),
        (_set("phoneNumberId", "pn_1"), "phoneNumberId is not supported"),
        (_set("phoneNumber", {"twilioPhoneNumber": "+1555"}), "phoneNumber is not supported"),
        (_set("customer", {"number": "+15550100"}), "customer is not supported"),
        (_set("assistantOverrides", []), "assistantOverrides must be an object"),
        (
            _set("assistantOverrides.variableValues", ["Ada"]),
            "assistantOverrides.variableValues must be an object",
        ),
        (
            _set("assistantOverrides.firstMessageMode", "assistant-speaks-last"),
            "assistantOverrides.firstMessageMode must be one of",
        ),
        (_set("assistantOverrides.firstMessage", 5), "assistantOverrides.firstMessage must be"),
        (
            _set("assistant", {"firstMessageMode": "whenever"}),
            "assistant.firstMessageMode must be one of",
        ),
        (_set("metadata", {"a": 1}), "property metadata should not exist"),
    ],
)
async def test_invalid_bodies_get_400_with_a_list(
    base_url: str, standin: VapiStandin, mutate: Callable[[dict[str, Any]], None], expected: str
) -> None:
    body = copy.deepcopy(call_body())
    mutate(body)
    response = await post(f"{base_url}/call", body)
    assert response.status_code == 400
    answer = response.json()
    assert (answer["error"], answer["statusCode"]) == ("Bad Request", 400)
    assert isinstance(answer["message"], list)
    assert any(m.startswith(expected) for m in answer["message"]), answer["message"]
    assert standin.calls == {}


async def test_not_json_and_unknown_assistant(base_url: str, standin: VapiStandin) -> None:
    json_type = {"Content-Type": "application/json"}
    response = await post(f"{base_url}/call", "{not json", headers=json_type)
    assert response.status_code == 400 and response.json()["message"] == [
        "body must be a JSON object"
    ]
    response = await post(f"{base_url}/call", call_body(assistantId="asst_missing"))
    assert response.status_code == 400
    assert response.json() == {  # a plain string here, as Vapi answers it
        "message": "Couldn't Get Assistant. `assistantId` asst_missing Does Not Exist.",
        "error": "Bad Request",
        "statusCode": 400,
    }
    assert standin.calls == {}


# --- The audio socket ---------------------------------------------------------------------


async def test_socket_refuses_unknown_calls_and_a_second_open(
    base_url: str, standin: VapiStandin
) -> None:
    call = await create(base_url)
    ws_base = base_url.replace("http://", "ws://")
    with pytest.raises(InvalidStatus) as unknown:
        await connect(f"{ws_base}/00000000-0000-4000-8000-000000000000/transport")
    assert unknown.value.response.status_code == 404
    async with connect(call["transport"]["websocketCallUrl"]):
        with pytest.raises(InvalidStatus) as again:
            await connect(call["transport"]["websocketCallUrl"])
        assert again.value.response.status_code == 409
    assert [c.status for c in standin.refused] == [404, 409]


@pytest.mark.parametrize(("audio_format", "rate"), [("pcm_s16le", 16000), ("mulaw", 8000)])
async def test_conversation_in_the_calls_format(
    base_url: str, standin: VapiStandin, audio_format: str, rate: int
) -> None:
    call = await create(base_url, call_body(audio_format, rate))
    record = standin.call(call["id"])
    sent = frames(tone_pcm(SPEECH, rate), audio_format, rate)
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        assert record.status == "in-progress"
        await ws.send("not json at all")  # ignored, recorded
        await ws.send(json.dumps({"type": "client-debug"}))
        await send_audio(ws, sent)
        texts, audio = await collect(ws, is_("speech-update", status="stopped", role="assistant"))
        assert texts == [
            speech("started", "user", 0),
            speech("stopped", "user", 0),
            transcript("user", "tone 440"),
            transcript("assistant", "I heard tone 440"),
            speech("started", "assistant", 1),
            speech("stopped", "assistant", 1),
        ]
        await ws.send(json.dumps({"type": "end-call"}))
        rest, _ = await collect(ws)
        assert rest == [] and ws.close_code == 1000
    # The reply: reply_seconds of the reply tone, in the call's own format and rate.
    width = 1 if audio_format == "mulaw" else 2
    assert len(audio) == round(REPLY_SECONDS * rate) * width
    samples = ulaw_decode(audio) if audio_format == "mulaw" else np.frombuffer(audio, "<i2")
    assert abs(dominant_hz(samples, rate) - 660) < 10
    await closed(record)
    assert record.audio_in == b"".join(sent) and bytes(record.audio_out) == audio
    assert record.chunks_out == 3  # 100 ms chunks
    connection = record.connection
    assert connection is not None
    debug, end = {"type": "client-debug"}, {"type": "end-call"}
    assert connection.received == ["not json at all", debug, end]
    assert connection.audio_bytes == len(b"".join(sent))
    assert (connection.close_code, connection.closed_by) == (1000, "server")
    assert (record.status, record.ended_reason) == ("ended", "customer-ended-call")
    async with httpx.AsyncClient() as client:
        auth = {"Authorization": f"Bearer {DEFAULT_KEY}"}
        got = (await client.get(f"{base_url}/call/{call['id']}", headers=auth)).json()
    assert (got["status"], got["endedReason"]) == ("ended", "customer-ended-call")
    notes = {what for _, what, _ in standin.knobs.log}
    assert {"call_created", "connected", "audio_in", "reply", "closed"} <= notes
    assert [detail for _, detail in standin.knobs.events("closed")] == [(1000, "server")]
    assert sum(n for _, n in standin.knobs.events("audio_in")) == len(b"".join(sent))


async def test_hangup_and_a_plain_close(base_url: str, standin: VapiStandin) -> None:
    first = await create(base_url)
    async with connect(first["transport"]["websocketCallUrl"]) as ws:
        await ws.send(json.dumps({"type": "hangup"}))  # the older form
        await collect(ws)
        assert ws.close_code == 1000
    second = await create(base_url)
    async with connect(second["transport"]["websocketCallUrl"]):
        pass  # the client closes without end-call
    for call_id, reason, by in [
        (first["id"], "customer-ended-call", "server"),
        (second["id"], "customer-disconnected", "client"),
    ]:
        record = standin.call(call_id)
        await closed(record)
        assert record.ended_reason == reason
        assert record.connection is not None and record.connection.closed_by == by


async def test_barge_in_drops_the_rest_of_the_reply(base_url: str, standin: VapiStandin) -> None:
    standin.knobs.reply_seconds = 1.0  # 10 chunks...
    standin.knobs.chunk_interval = 0.05  # ...over 0.5 s
    call = await create(base_url)
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        await send_audio(ws, frames(tone_pcm(SPEECH), "pcm_s16le", 16000))
        await collect(ws, is_("speech-update", status="started", role="assistant"))
        _, before = await collect(ws, timeout=0.12)
        assert 0 < len(before) < 10 * 3200
        # The caller talks over the reply.
        await send_audio(ws, frames(tone_pcm([(880, 0.3), (0, 0.4)]), "pcm_s16le", 16000))
        texts, after = await collect(ws, is_("transcript", role="assistant"))
    interrupted = next(m for m in texts if m["type"] == "user-interrupted")
    assert isinstance(interrupted["turnId"], str) and interrupted["turnId"]
    assert set(interrupted) == {"type", "turnId"}
    assert texts.index(speech("started", "user", 2)) < texts.index(interrupted)
    assert speech("stopped", "assistant", 1) in texts
    assert transcript("user", "tone 880") in texts
    assert texts[-1] == transcript("assistant", "I heard tone 880")
    assert len(before) + len(after) < 10 * 3200  # the first reply was cut short
    assert len(standin.knobs.events("interrupt")) == 1


@pytest.mark.parametrize(
    ("overrides", "greeting", "expected"),
    [
        (
            {
                "firstMessage": "Hi {{name}}, your slot is {{ slot }}{{missing}}.",
                "variableValues": {"name": "Ada", "slot": "3 pm"},
            },
            False,
            "Hi Ada, your slot is 3 pm.",
        ),
        (
            {"firstMessage": "Hi.", "firstMessageMode": "assistant-speaks-first"},
            False,
            "Hi.",
        ),
        (
            {"firstMessageMode": "assistant-speaks-first-with-model-generated-message"},
            False,
            GREETING,
        ),
        ({}, True, GREETING),
        ({}, False, None),
        ({"firstMessage": "Hi.", "firstMessageMode": "assistant-waits-for-user"}, False, None),
        ({"firstMessageMode": "assistant-waits-for-user"}, True, None),
    ],
)
async def test_first_message(
    base_url: str,
    standin: VapiStandin,
    overrides: dict[str, Any],
    greeting: bool,
    expected: str | None,
) -> None:
    standin.knobs.greeting = greeting
    call = await create(base_url, call_body(assistantOverrides=overrides))
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        stopped = is_("speech-update", status="stopped", role="assistant")
        texts, audio = await collect(ws, stopped, timeout=2.0 if expected else 0.4)
    if expected is None:
        assert (texts, audio) == ([], b"")
    else:
        assert texts == [
            transcript("assistant", expected),
            speech("started", "assistant", 0),
            speech("stopped", "assistant", 0),
        ]
        assert len(audio) == round(REPLY_SECONDS * 16000) * 2


async def test_inline_assistant_first_message(base_url: str, standin: VapiStandin) -> None:
    assistant = {"firstMessage": "Welcome {{who}}.", "variableValues": {"who": "back"}}
    body = call_body(assistant=assistant)
    del body["assistantId"]
    call = await create(base_url, body)
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        texts, _ = await collect(ws, is_("transcript"))
    assert texts == [transcript("assistant", "Welcome back.")]


# --- Live Call Control ----------------------------------------------------------------------


async def test_live_call_control(base_url: str, standin: VapiStandin) -> None:
    call = await create(base_url)
    control = call["monitor"]["controlUrl"]
    record = standin.call(call["id"])
    # Not connected yet: nothing to control.
    assert (await post(control, {"type": "say", "content": "early"}, key=None)).status_code == 404
    unknown = control.replace(call["id"], "00000000-0000-4000-8000-000000000000")
    assert (await post(unknown, {"type": "end-call"}, key=None)).status_code == 404
    stopped = is_("speech-update", status="stopped", role="assistant")
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        say = {"type": "say", "content": "Your table is ready.", "endCallAfterSpoken": False}
        response = await post(control, say, key=None)
        assert (response.status_code, response.json()) == (200, {})
        texts, audio = await collect(ws, stopped)
        assert texts == [
            transcript("assistant", "Your table is ready."),
            speech("started", "assistant", 0),
            speech("stopped", "assistant", 0),
        ]
        assert len(audio) == round(REPLY_SECONDS * 16000) * 2
        # add-message answers as a turn by default...
        message = {"role": "user", "content": "I am a VIP"}
        response = await post(control, {"type": "add-message", "message": message}, key=None)
        assert response.status_code == 200
        texts, _ = await collect(ws, stopped)
        assert texts[0] == transcript("assistant", "you said I am a VIP")
        # ...and silently with triggerResponseEnabled false; control and transfer are recorded.
        quiet = [
            {"type": "add-message", "message": {"role": "system", "content": "Caller is VIP."},
             "triggerResponseEnabled": False},
            {"type": "control", "control": "mute-assistant"},
            {"type": "transfer", "destination": {"type": "number", "number": "+15550100"},
             "content": "Transferring you now."},
            {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:a@b.test"}},
        ]  # fmt: skip
        for body in quiet:
            assert (await post(control, body, key=None)).status_code == 200
        invalid: list[Any] = [
            "not json",
            [],
            {"type": "shout", "content": "x"},
            {"type": "say"},
            {"type": "say", "content": ""},
            {"type": "say", "content": "x", "endCallAfterSpoken": "yes"},
            {"type": "add-message", "message": "hello"},
            {"type": "add-message", "message": {"role": "boss", "content": "x"}},
            {"type": "add-message", "message": {"role": "user"}},
            {"type": "add-message", "message": {"role": "user", "content": "x"},
             "triggerResponseEnabled": "no"},
            {"type": "control", "control": "explode"},
            {"type": "transfer", "destination": {"type": "number"}},
            {"type": "transfer"},
        ]  # fmt: skip
        for body in invalid:
            response = await post(control, body, key=None)
            assert response.status_code == 400, body
            assert isinstance(response.json()["message"], list)
        texts, audio = await collect(ws, timeout=0.3)
        assert (texts, audio) == ([], b"")
        # end-call: the status update, then close 1000.
        assert (await post(control, {"type": "end-call"}, key=None)).status_code == 200
        texts, _ = await collect(ws)
        assert texts == [
            {"type": "status-update", "status": "ended", "endedReason": "assistant-ended-call"}
        ]
        assert ws.close_code == 1000
    await closed(record)
    assert (await post(control, {"type": "say", "content": "late"}, key=None)).status_code == 404
    statuses = [404, 200, 200, *[200] * len(quiet), *[400] * len(invalid), 200, 404]
    assert [p.status for p in record.controls] == statuses
    assert record.controls[1].body == say
    assert record.ended_reason == "assistant-ended-call"
    assert standin.knobs.injected == [say, {"type": "add-message", "message": message}, quiet[0]]
    assert len(standin.knobs.events("control")) == len(record.controls)
    assert len(standin.knobs.events("injected")) == 3


async def test_say_can_end_the_call(base_url: str, standin: VapiStandin) -> None:
    call = await create(base_url)
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        say = {"type": "say", "content": "Goodbye.", "endCallAfterSpoken": True}
        assert (await post(call["monitor"]["controlUrl"], say, key=None)).status_code == 200
        texts, audio = await collect(ws)
        assert ws.close_code == 1000
    assert texts[0] == transcript("assistant", "Goodbye.") and len(audio) > 0
    assert texts[-1] == {
        "type": "status-update",
        "status": "ended",
        "endedReason": "assistant-ended-call-after-message-spoken",
    }


@pytest.mark.parametrize("by", ["knob", "monitorPlan"])
async def test_control_authentication(base_url: str, standin: VapiStandin, by: str) -> None:
    if by == "knob":
        standin.knobs.control_auth = True
        body = call_body()
    else:
        body = call_body(assistantOverrides={"monitorPlan": {"controlAuthenticationEnabled": True}})
    call = await create(base_url, body)
    control = call["monitor"]["controlUrl"]
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        for key in (None, "wrong-key"):
            response = await post(control, {"type": "control", "control": "mute-customer"}, key)
            assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
        ok = await post(control, {"type": "control", "control": "mute-customer"}, DEFAULT_KEY)
        assert ok.status_code == 200
        await ws.send(json.dumps({"type": "end-call"}))
    assert [p.status for p in standin.call(call["id"]).controls] == [401, 401, 200]


# --- Timers and failure knobs ---------------------------------------------------------------


async def test_silence_timeout_counts_only_audio(base_url: str, standin: VapiStandin) -> None:
    standin.knobs.silence_timeout = 0.4
    call = await create(base_url)
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        # 0.8 s of digital silence, in real time, keeps the call up...
        await send_audio(ws, frames(bytes(640 * 40), "pcm_s16le", 16000), real_time=True)
        await ws.send(json.dumps({"type": "client-debug"}))  # text does not count
        last_audio = time.monotonic()
        assert ws.state is State.OPEN
        # ...then nothing: the call ends.
        texts, _ = await collect(ws)
        waited = time.monotonic() - last_audio
        assert ws.close_code == 1000
    assert texts == [
        {"type": "status-update", "status": "ended", "endedReason": "silence-timed-out"}
    ]
    assert 0.3 < waited < 1.5
    record = standin.call(call["id"])
    await closed(record)
    assert record.ended_reason == "silence-timed-out"


async def test_silent_provider_sends_nothing_but_keeps_reading(
    base_url: str, standin: VapiStandin
) -> None:
    standin.knobs.silent = True
    standin.knobs.silence_timeout = 0.2  # a stuck provider does not even time out
    call = await create(base_url, call_body(assistantOverrides={"firstMessage": "Hi"}))
    sent = frames(tone_pcm(SPEECH), "pcm_s16le", 16000)
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        await send_audio(ws, sent)
        assert (
            await post(call["monitor"]["controlUrl"], {"type": "end-call"}, key=None)
        ).status_code == 200
        texts, audio = await collect(ws, timeout=0.6)
        assert (texts, audio, ws.state) == ([], b"", State.OPEN)
    record = standin.call(call["id"])
    await closed(record)
    assert record.connection is not None
    assert record.connection.audio_bytes == len(b"".join(sent))
    assert (record.connection.closed_by, record.connection.close_code) == ("client", 1000)


async def test_close_after_chunks(base_url: str, standin: VapiStandin) -> None:
    standin.knobs.close_after_chunks = 2
    call = await create(base_url)
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        # The stand-in may close while the caller is still sending (a loaded machine).
        with contextlib.suppress(ConnectionClosed):
            await send_audio(ws, frames(tone_pcm(SPEECH), "pcm_s16le", 16000))
        texts, audio = await collect(ws)
        assert ws.close_code == 1011
    assert len(audio) == 2 * 3200
    assert texts[-1] == speech("started", "assistant", 1)
    record = standin.call(call["id"])
    await closed(record)
    assert record.connection is not None
    assert (record.connection.close_code, record.connection.closed_by) == (1011, "server")


async def test_garbage_after_connect(base_url: str, standin: VapiStandin) -> None:
    standin.knobs.garbage_after_connect = True
    call = await create(base_url)
    async with connect(call["transport"]["websocketCallUrl"]) as ws:
        first = await ws.recv()
        second = json.loads(await ws.recv())
        await send_audio(ws, frames(tone_pcm(SPEECH), "pcm_s16le", 16000))
        texts, _ = await collect(ws, is_("transcript", role="user"))
        await ws.send(json.dumps({"type": "end-call"}))
    assert isinstance(first, str)
    with pytest.raises(ValueError):
        json.loads(first)
    assert isinstance(second, dict) and second["type"] not in (
        "transcript",
        "speech-update",
        "user-interrupted",
        "status-update",
    )
    assert texts[-1] == transcript("user", "tone 440")
