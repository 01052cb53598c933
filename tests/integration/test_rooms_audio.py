"""Rooms heard as audio: SIP legs (baresip phones playing distinct sines) and WebSocket
participants in one room; each hears exactly the others, never itself."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tests.helpers.audio import band_energy_db
from tests.helpers.baresip import Baresip, BaresipFactory
from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver

TONES = (500, 900, 1300)


def _bands(samples: np.ndarray, rate: int) -> dict[int, float]:
    return {f: band_energy_db(samples, rate, f, 60.0) for f in TONES}


def _heard_window(phone: Baresip, start_s: float, end_s: float) -> dict[int, float]:
    """Band levels of what the phone heard between two times (seconds since it answered)."""
    rate, heard = phone.heard()
    piece = heard[int(start_s * rate) : int(end_s * rate)]
    assert piece.size > rate // 2, f"{phone.user} heard only {heard.size / rate:.1f}s"
    return _bands(piece, rate)


def _room_with_phones(
    server: ServerProcess,
    hooks: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    codecs: tuple[str, ...] = ("PCMU", "PCMU", "PCMU"),
) -> tuple[list[Baresip], list[str]]:
    phones = [
        baresip_factory(f"p{f}", sine_hz=f, codecs=[codec]).start()
        for f, codec in zip(TONES, codecs, strict=True)
    ]
    legs = [
        originate(server, phone.uri, room_id="conf", codecs=[codec])["id"]
        for phone, codec in zip(phones, codecs, strict=True)
    ]
    for leg in legs:
        hooks.wait_for("leg.joined_room", leg_id=leg, room_id="conf")
    return phones, legs


def test_three_legs_each_hear_the_other_two(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
) -> None:
    hooks = webhook_receiver
    phones, legs = _room_with_phones(hooked_server, hooks, baresip_factory, originate)
    room = hooked_server.api("GET", "/rooms/conf").json()
    assert sorted(p["id"] for p in room["participants"]) == sorted(legs)
    assert all(p["room_id"] == "conf" for p in room["participants"])
    # Each phone records from its answer on: our clock for "t = 0" of its recording.
    answered = [hooks.wait_for("leg.connected", leg_id=leg).request.monotonic for leg in legs]
    complete = max(answered)  # the moment all three were in
    time.sleep(2.0)
    t_mute = time.monotonic()
    hooked_server.api("POST", f"/legs/{legs[0]}/mute")  # the 500 Hz phone
    time.sleep(1.5)
    t_deaf = time.monotonic()
    hooked_server.api("POST", f"/legs/{legs[1]}/deaf")  # the 900 Hz phone
    time.sleep(1.5)
    t_end = time.monotonic()
    hooked_server.api("DELETE", "/rooms/conf")
    for phone in phones:
        phone.wait_closed()
    for leg in legs:
        assert hooks.wait_for("leg.disconnected", leg_id=leg)["cdr"]["reason"] == "api_hangup"
    hooks.wait_for("room.deleted", room_id="conf")

    def window(i: int, start: float, end: float) -> dict[int, float]:
        margin = 0.3
        return _heard_window(phones[i], start - answered[i] + margin, end - answered[i] - margin)

    # Everyone talking: each phone hears the other two tones, never its own.
    for i, own in enumerate(TONES):
        bands = window(i, complete, t_mute)
        others = [f for f in TONES if f != own]
        for f in others:
            assert bands[f] > -40, f"phone {own} does not hear {f} Hz: {bands}"
        assert bands[own] < min(bands[f] for f in others) - 25, f"phone {own} hears itself: {bands}"
    # 500 Hz muted: the others no longer hear it; it still hears them.
    for i in (1, 2):
        bands = window(i, t_mute, t_deaf)
        assert bands[500] < -55, f"phone {TONES[i]} still hears the muted leg: {bands}"
    bands = window(0, t_mute, t_deaf)
    assert bands[900] > -40 and bands[1300] > -40
    # 900 Hz deaf as well: it hears nothing; 1300 still hears it.
    bands = window(1, t_deaf, t_end)
    assert max(bands.values()) < -55, f"the deaf leg hears {bands}"
    assert window(2, t_deaf, t_end)[900] > -40


def test_mixed_codec_room(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
) -> None:
    """PCMU (8 kHz), G.722 (16 kHz) and Opus (48 kHz) legs meet in one 16 kHz room."""
    hooks = webhook_receiver
    phones, legs = _room_with_phones(
        hooked_server, hooks, baresip_factory, originate, codecs=("PCMU", "G722", "opus")
    )
    answered = [hooks.wait_for("leg.connected", leg_id=leg).request.monotonic for leg in legs]
    complete = max(answered)
    time.sleep(3.0)
    t_end = time.monotonic()
    hooked_server.api("DELETE", "/rooms/conf")
    for phone in phones:
        phone.wait_closed()
    for i, own in enumerate(TONES):
        # Generous margins: under load the phones' recordings and our clock drift apart a bit.
        bands = _heard_window(phones[i], complete - answered[i] + 0.6, t_end - answered[i] - 0.6)
        others = [f for f in TONES if f != own]
        for f in others:
            assert bands[f] > -40, f"phone {own} does not hear {f} Hz: {bands}"
        assert bands[own] < min(bands[f] for f in others) - 25, f"phone {own} hears itself: {bands}"
