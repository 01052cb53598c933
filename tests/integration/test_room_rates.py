"""Rooms that mix at 8, 16 or 48 kHz, heard by real baresip phones.

A 48 kHz room carries what a 16 kHz one cannot: a 10 kHz tone sent by one Opus phone is in
the room's recording, a 48 kHz file. Two phones alone on one codec are sent each other's
packets as they came, so they hear each other's full band in a room of any rate. An 8 kHz
room of G.711 phones mixes them as they are, and records at 8 kHz.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tests.helpers.audio import band_energy_db, read_wav, to_float
from tests.helpers.baresip import Baresip, BaresipFactory
from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver

TALK_S = 2.5


def _phone_in_room(
    server: ServerProcess,
    hooks: WebhookReceiver,
    factory: BaresipFactory,
    name: str,
    sine_hz: int,
    room: str,
    codec: str,
) -> Baresip:
    phone = factory(name, sine_hz=sine_hz, codecs=[codec]).start()
    body = {"type": "sip", "uri": phone.uri, "codecs": [codec], "room_id": room}
    response = server.api("POST", "/legs", body)
    assert response.status_code == 201, response.text
    leg = str(response.json()["id"])
    hooks.wait_for("leg.joined_room", leg_id=leg, room_id=room)
    phone.wait_established()
    return phone


def _conference(
    server: ServerProcess,
    hooks: WebhookReceiver,
    factory: BaresipFactory,
    room: str,
    rate: int,
    codec: str,
    tones: tuple[int, int],
) -> tuple[tuple[int, np.ndarray], tuple[int, np.ndarray], dict[str, Any]]:
    """Two phones in a room of `rate`, each sending a sine: (what the first heard, what the
    second heard, the room recording's recording.finished)."""
    created = server.api("POST", "/rooms", {"id": room, "sample_rate": rate})
    assert created.status_code == 201, created.text
    assert created.json()["sample_rate"] == rate
    first = _phone_in_room(server, hooks, factory, f"{room}-1", tones[0], room, codec)
    second = _phone_in_room(server, hooks, factory, f"{room}-2", tones[1], room, codec)
    assert server.api("POST", f"/rooms/{room}/record", {}).status_code == 200
    time.sleep(TALK_S)
    assert server.api("DELETE", f"/rooms/{room}").status_code == 200
    finished = hooks.wait_for("recording.finished", room_id=room)
    for phone in (first, second):
        phone.wait_closed()
    return _steady(first.heard()), _steady(second.heard()), finished


def _steady(heard: tuple[int, np.ndarray]) -> tuple[int, np.ndarray]:
    """What a phone heard, less its first half second (the other phone joining) and the
    last quarter (the hang-up)."""
    rate, samples = heard
    assert samples.size > 2 * rate, "the phone's recording is too short"
    return rate, samples[rate // 2 : -rate // 4]


def _recording(finished: dict[str, Any]) -> tuple[int, np.ndarray]:
    rate, samples = read_wav(finished["file"])
    return rate, to_float(samples)[:, 0]


def test_a_48k_room_carries_what_a_16k_room_cannot(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
) -> None:
    args = (hooked_server, webhook_receiver, baresip_factory)
    (r1, heard1), (r2, heard2), done = _conference(*args, "wide", 48000, "opus", (10000, 700))
    assert r1 == r2 == 48000
    wide_high = band_energy_db(heard2, r2, 10000.0, 200.0)
    assert wide_high > -30, f"10 kHz through a 48 kHz room: {wide_high:.1f} dBFS"
    assert band_energy_db(heard1, r1, 700.0, 40.0) > -30
    # Nobody hears themselves.
    assert band_energy_db(heard1, r1, 10000.0, 200.0) < wide_high - 30
    rate, mix = _recording(done)
    assert rate == 48000
    assert band_energy_db(mix, rate, 10000.0, 200.0) > -30
    assert band_energy_db(mix, rate, 700.0, 40.0) > -30

    # The same call in a 16 kHz room: the mix (the recording) stops at 8 kHz, but the two
    # phones, alone on one codec, are sent each other's packets: nothing is lost between them.
    (_, _), (r2, heard2), done = _conference(*args, "sixteen", 16000, "opus", (10000, 700))
    assert band_energy_db(heard2, r2, 10000.0, 200.0) > -30
    rate, mix = _recording(done)
    assert rate == 16000
    assert band_energy_db(mix, rate, 700.0, 40.0) > -30
    forwarded = hooked_server.api("GET", "/metrics").text.splitlines()
    line = next(x for x in forwarded if x.startswith("callboard_media_frames_forwarded "))
    assert float(line.split()[1]) > 100, line


def test_an_8k_room_of_g711_phones(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
) -> None:
    args = (hooked_server, webhook_receiver, baresip_factory)
    (r1, heard1), (r2, heard2), done = _conference(*args, "narrow", 8000, "PCMU", (1300, 700))
    assert r1 == r2 == 8000
    assert band_energy_db(heard1, r1, 700.0, 40.0) > -30
    assert band_energy_db(heard2, r2, 1300.0, 40.0) > -30
    assert band_energy_db(heard1, r1, 1300.0, 40.0) < band_energy_db(heard1, r1, 700.0, 40.0) - 30
    rate, mix = _recording(done)
    assert rate == 8000
    assert band_energy_db(mix, rate, 700.0, 40.0) > -30
    assert band_energy_db(mix, rate, 1300.0, 40.0) > -30
