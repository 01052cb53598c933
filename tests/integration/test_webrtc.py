"""WebRTC legs against aiortc, a real ICE/DTLS-SRTP peer: offer/answer with trickle ICE both
ways, audio both ways with a SIP phone in the same room (checked by spectrum), DTMF both ways,
hang-up from either side, ICE failure, and bad input."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tests.helpers.audio import band_energy_db
from tests.helpers.baresip import BaresipFactory
from tests.helpers.server import ServerFactory, ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.helpers.webrtc_peer import RATE, WebRtcPeer

BROWSER_HZ = 700
PHONE_HZ = 1100


@pytest.fixture
def peers() -> Iterator[Callable[..., WebRtcPeer]]:
    made: list[WebRtcPeer] = []

    def make(server: ServerProcess, **kwargs: Any) -> WebRtcPeer:
        peer = WebRtcPeer(server.http, **kwargs)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.close()


def _bands(samples: np.ndarray, rate: int) -> dict[int, float]:
    return {f: band_energy_db(samples, rate, f, 60.0) for f in (BROWSER_HZ, PHONE_HZ)}


def test_browser_and_phone_hear_each_other_in_a_room(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    baresip_factory: BaresipFactory,
    originate: Callable[..., dict[str, Any]],
    peers: Callable[..., WebRtcPeer],
) -> None:
    hooks = webhook_receiver
    phone = baresip_factory("phone", sine_hz=PHONE_HZ, codecs=["PCMU"]).start()
    sip_leg = originate(hooked_server, phone.uri, room_id="web")["id"]
    hooks.wait_for("leg.joined_room", leg_id=sip_leg, room_id="web")

    browser = peers(hooked_server, sine_hz=BROWSER_HZ)
    leg = browser.connect(room_id="web", trickle=True)
    connected = hooks.wait_for("leg.connected", leg_id=leg, timeout=20)
    assert connected["leg_type"] == "webrtc"
    hooks.wait_for("leg.joined_room", leg_id=leg, room_id="web")
    view = hooked_server.api("GET", f"/legs/{leg}").json()
    assert view["type"] == "webrtc" and view["state"] == "connected"
    assert view["room_id"] == "web"
    joined_at = time.monotonic()
    # Its host candidates are bound in the RTP port range, like a SIP leg's media.
    window = hooked_server.rtp_window
    host_ports = _host_candidate_ports(browser.server_candidates)
    assert host_ports, browser.server_candidates
    assert all(window.low <= port <= window.high for _, port in host_ports), host_ports
    time.sleep(2.5)

    heard = browser.heard(last_s=1.5)
    assert heard.size >= RATE, f"the browser heard only {heard.size / RATE:.2f} s"
    bands = _bands(heard, RATE)
    assert bands[PHONE_HZ] > -30, f"the browser does not hear the phone: {bands}"
    assert bands[PHONE_HZ] - bands[BROWSER_HZ] > 20, f"the browser hears itself: {bands}"

    answered = hooks.wait_for("leg.connected", leg_id=sip_leg).request.monotonic
    rate, piece = phone.heard_window(answered, joined_at + 0.5, 1.5)
    bands = _bands(piece, rate)
    assert bands[BROWSER_HZ] > -30, f"the phone does not hear the browser: {bands}"
    assert bands[BROWSER_HZ] - bands[PHONE_HZ] > 20, f"the phone hears itself: {bands}"

    browser.close()  # the browser closes its PeerConnection
    ended = hooks.wait_for("leg.disconnected", leg_id=leg)
    assert ended["cdr"]["reason"] == "remote_bye"
    quality = ended["quality"]
    assert quality["rtp_packets_received"] > 100
    assert quality["mos_score"] > 4.0
    assert hooked_server.api("GET", f"/legs/{leg}").status_code == 404
    hooked_server.api("DELETE", f"/legs/{sip_leg}")
    _assert_freed(host_ports)


def _host_candidate_ports(candidates: list[str]) -> list[tuple[str, int]]:
    """(address, port) of each host candidate ("candidate:f 1 udp prio ip port typ host")."""
    out = []
    for line in candidates:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == "host":
            out.append((fields[4], int(fields[5])))
    return out


def _assert_freed(ports: list[tuple[str, int]]) -> None:
    """Every socket the leg had is closed: its port can be bound again."""
    deadline = time.monotonic() + 5
    busy = ports
    while busy and time.monotonic() < deadline:
        busy = [address for address in busy if not _bindable(address)]
        time.sleep(0.1)
    assert not busy, f"still bound after the leg ended: {busy}"


def _bindable(address: tuple[str, int]) -> bool:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def test_two_browsers_on_opus_hear_each_other_through_forwarded_packets(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    peers: Callable[..., WebRtcPeer],
) -> None:
    one = peers(hooked_server, sine_hz=BROWSER_HZ)
    other = peers(hooked_server, sine_hz=PHONE_HZ)
    for peer in (one, other):
        leg = peer.connect(room_id="pair", trickle=True)
        webhook_receiver.wait_for("leg.joined_room", leg_id=leg, room_id="pair", timeout=20)
    time.sleep(2.5)
    for peer, own, far in ((one, BROWSER_HZ, PHONE_HZ), (other, PHONE_HZ, BROWSER_HZ)):
        heard = peer.heard(last_s=1.5)
        assert heard.size >= RATE
        bands = _bands(heard, RATE)
        assert bands[far] > -30, f"not heard: {bands}"
        assert bands[far] - bands[own] > 20, f"hears itself: {bands}"
    # Each was sent the other's packets as they came, not our re-encoding of them.
    metrics = hooked_server.api("GET", "/metrics").text.splitlines()
    line = next(x for x in metrics if x.startswith("callboard_media_frames_forwarded "))
    assert float(line.split()[1]) > 150, line


def test_candidates_in_the_offer_and_hang_up_from_the_api(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    peers: Callable[..., WebRtcPeer],
) -> None:
    browser = peers(hooked_server, sine_hz=BROWSER_HZ)
    leg = browser.connect(trickle=False, app_id="support-widget")
    connected = webhook_receiver.wait_for("leg.connected", leg_id=leg, timeout=20)
    assert connected["app_id"] == "support-widget"
    # A leg alone hears what is played to it.
    played = hooked_server.api("POST", f"/legs/{leg}/play", json={"tone": "us_ringback"})
    assert played.status_code == 200, played.text
    time.sleep(1.5)
    assert _dominant_band(browser.heard(last_s=0.8)) in (440, 480)
    assert hooked_server.api("POST", f"/legs/{leg}/hold").status_code == 400
    assert hooked_server.api("DELETE", f"/legs/{leg}").status_code == 200
    ended = webhook_receiver.wait_for("leg.disconnected", leg_id=leg)
    assert ended["cdr"]["reason"] == "api_hangup"
    # The browser was told (DTLS close_notify): its connection closes.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and browser.pc is not None:
        if browser.pc.connectionState == "closed":
            break
        time.sleep(0.1)
    assert browser.pc is not None and browser.pc.connectionState == "closed"


def _dominant_band(samples: np.ndarray) -> int:
    levels = {f: band_energy_db(samples, RATE, f, 30.0) for f in (350, 440, 480, 620, 1000)}
    return max(levels, key=lambda f: levels[f])


def test_dtmf_both_ways(
    hooked_server: ServerProcess,
    webhook_receiver: WebhookReceiver,
    peers: Callable[..., WebRtcPeer],
) -> None:
    browser = peers(hooked_server, dtmf=True)
    leg = browser.connect()
    webhook_receiver.wait_for("leg.connected", leg_id=leg, timeout=20)
    time.sleep(0.3)
    browser.send_dtmf("5")
    got = webhook_receiver.wait_for("dtmf.received", leg_id=leg)
    assert got["digit"] == "5"
    sent = hooked_server.api("POST", f"/legs/{leg}/dtmf", json={"digits": "7#"})
    assert sent.status_code == 200, sent.text
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ends = [event for event, end in browser.dtmf_events if end]
        if 7 in ends and 11 in ends:
            break
        time.sleep(0.1)
    ends = [event for event, end in browser.dtmf_events if end]
    assert 7 in ends and 11 in ends, browser.dtmf_events
    assert ends.index(7) < ends.index(11)


def test_a_peer_that_never_answers_checks_ends_with_ice_failure(
    server_factory: ServerFactory,
    webhook_receiver: WebhookReceiver,
    peers: Callable[..., WebRtcPeer],
) -> None:
    server = server_factory(WEBHOOK_URL=webhook_receiver.url, WEBRTC_ICE_TIMEOUT="3")
    browser = peers(server)
    started = time.monotonic()
    leg = browser.connect(answer_checks=False)
    ended = webhook_receiver.wait_for("leg.disconnected", leg_id=leg, timeout=10)
    assert ended["cdr"]["reason"] == "ice_failure"
    assert 2.5 < time.monotonic() - started < 8
    assert not webhook_receiver.events("leg.connected", leg_id=leg)
    assert server.api("GET", "/legs").json() == []


def test_bad_offers_and_candidates_get_clear_errors_and_leak_nothing(
    server: ServerProcess, peers: Callable[..., WebRtcPeer]
) -> None:
    def offer(body: Any) -> tuple[int, str]:
        response = server.api("POST", "/webrtc/offer", json=body)
        return response.status_code, response.json().get("error", "")

    assert offer({"sdp": ""}) == (400, "invalid SDP offer: empty")
    status, error = offer({"sdp": "hello, I am not SDP"})
    assert status == 400 and error.startswith("invalid SDP offer")
    video_only = (
        "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    )
    assert offer({"sdp": video_only}) == (400, "the offer has no audio stream")
    plain_rtp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    status, error = offer({"sdp": plain_rtp})
    assert status == 400 and "DTLS-SRTP" in error
    assert offer({})[0] == 400
    response = server.api("POST", "/webrtc/offer", content=b"{not json")
    assert response.status_code == 400

    assert server.api("GET", "/legs/nope/ice-candidates").status_code == 404
    response = server.api("POST", "/legs/nope/ice-candidates", json={"candidate": ""})
    assert response.status_code == 404

    sip = server.api("POST", "/legs", json={"type": "sip", "uri": "sip:nobody@127.0.0.1:9"})
    assert sip.status_code == 201, sip.text
    sip_leg = sip.json()["id"]
    for method, body in (("POST", {"candidate": ""}), ("GET", None)):
        response = server.api(method, f"/legs/{sip_leg}/ice-candidates", json=body)
        assert response.status_code == 400
        assert "not a WebRTC leg" in response.json()["error"]
    server.api("DELETE", f"/legs/{sip_leg}")

    browser = peers(server)
    leg = browser.connect()
    for junk in ("candidate:garbage", "candidate:1 1 udp x 1.2.3.4 5 typ host", "💥" * 10):
        response = server.api("POST", f"/legs/{leg}/ice-candidates", json={"candidate": junk})
        assert response.status_code == 400, response.text
        assert "not an ICE candidate" in response.json()["error"]
    response = server.api("POST", f"/legs/{leg}/ice-candidates", json={"candidate": 5})
    assert response.status_code == 400
    server.api("DELETE", f"/legs/{leg}")
    assert server.api("GET", "/legs").json() == []
