"""A browser-like WebRTC peer for the tests: aiortc (a real DTLS-SRTP/ICE stack) on its own
event loop thread, driven synchronously like the other peers.

It sends a sine (or silence) and records what it hears; it can strip the candidates from its
offer and trickle them through the API the way browsers do (aiortc gathers before it makes an
offer: TEST-PEERS.md), add telephone-event to its offer, send RFC 4733 events itself (aiortc
has no DTMF sender) and note the events it receives, and play dead to connectivity checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import re
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtpPacket
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame

RATE = 48000
FRAME = 960  # 20 ms at 48 kHz
DTMF_PT = 110
T = TypeVar("T")


class ToneTrack(MediaStreamTrack):
    """20 ms frames of a sine at real-time pace (silence for sine_hz 0)."""

    kind = "audio"

    def __init__(self, sine_hz: float, dbfs: float = -12.0) -> None:
        super().__init__()
        self.sine_hz = sine_hz
        self.amplitude = 32767 * 10 ** (dbfs / 20)
        self._pts = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._pts / RATE
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (self._pts + np.arange(FRAME)) / RATE
        samples = (self.amplitude * np.sin(2 * np.pi * self.sine_hz * t)).astype(np.int16)
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME)
        frame.planes[0].update(samples.tobytes())
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


class WebRtcPeer:
    def __init__(
        self, base_url: str, sine_hz: float = 0.0, dtmf: bool = False, codec: str = "opus"
    ) -> None:
        self.base_url = base_url
        self.codec = codec
        self.sine_hz = sine_hz
        self.dtmf = dtmf
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.pc: RTCPeerConnection | None = None
        self.leg_id: str | None = None
        self.answer_sdp: str | None = None
        self.server_candidates: list[str] = []  # as the server trickled them
        self._heard: list[npt.NDArray[np.int16]] = []
        self._heard_lock = threading.Lock()
        self.first_heard_at: float | None = None
        self.dtmf_events: list[tuple[int, bool]] = []  # (event, end bit) as they arrive
        self._reader: asyncio.Task[None] | None = None
        self._seq = 1000

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ---- call set-up ----

    def connect(
        self,
        *,
        trickle: bool = True,
        room_id: str | None = None,
        answer_checks: bool = True,
        **body: Any,
    ) -> str:
        """Offer, get the answer, exchange candidates; returns the leg id (media comes up in
        the background: wait for leg.connected)."""
        return self.run(self._connect(trickle, room_id, answer_checks, body))

    async def _connect(
        self, trickle: bool, room_id: str | None, answer_checks: bool, body: dict[str, Any]
    ) -> str:
        pc = RTCPeerConnection()
        self.pc = pc
        pc.addTrack(ToneTrack(self.sine_hz))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._reader = asyncio.ensure_future(self._read(track))

        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        sdp = pc.localDescription.sdp
        if self.codec != "opus":
            sdp = only_codec(sdp, self.codec)
        if self.dtmf:
            sdp = add_telephone_event(sdp)
            self._watch_dtmf()
            self._share_sequence()
        own_candidates = [line[2:] for line in sdp.splitlines() if line.startswith("a=candidate:")]
        if trickle:
            sdp = "".join(
                line + "\r\n"
                for line in sdp.splitlines()
                if not line.startswith(("a=candidate:", "a=end-of-candidates"))
            )
        request = {"sdp": sdp, **body}
        if room_id is not None:
            request["room_id"] = room_id
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as client:
            response = await client.post("/v1/webrtc/offer", json=request)
            assert response.status_code == 200, response.text
            self.leg_id = response.json()["leg_id"]
            self.answer_sdp = response.json()["sdp"]
            if not answer_checks:
                self._play_dead(pc)
            await pc.setRemoteDescription(RTCSessionDescription(self.answer_sdp, "answer"))
            if trickle:
                for candidate in own_candidates:
                    posted = await client.post(
                        f"/v1/legs/{self.leg_id}/ice-candidates",
                        json={"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0},
                    )
                    assert posted.status_code == 200, posted.text
                await client.post(f"/v1/legs/{self.leg_id}/ice-candidates", json={"candidate": ""})
            await self._take_server_candidates(client)
        assert self.leg_id is not None
        return self.leg_id

    async def _take_server_candidates(self, client: httpx.AsyncClient) -> None:
        assert self.pc is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            polled = (await client.get(f"/v1/legs/{self.leg_id}/ice-candidates")).json()
            for init in polled["candidates"]:
                self.server_candidates.append(init["candidate"])
                candidate = candidate_from_sdp(init["candidate"].split(":", 1)[1])
                candidate.sdpMid = init.get("sdpMid")
                candidate.sdpMLineIndex = init.get("sdpMLineIndex")
                await self.pc.addIceCandidate(candidate)
            if polled["done"]:
                await self.pc.addIceCandidate(None)
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the server never finished gathering candidates")

    @staticmethod
    def _play_dead(pc: RTCPeerConnection) -> None:
        """Never answer (nor send) connectivity checks: every STUN message is dropped."""
        for transceiver in pc.getTransceivers():
            connection = transceiver.receiver.transport.transport._connection
            connection.request_received = lambda *args, **kwargs: None
            connection.check_start = _never

    # ---- media ----

    async def _read(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            data = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0]
            if frame.sample_rate != RATE:  # G.711: heard() keeps one rate, repeat to 48 kHz
                data = np.repeat(data, RATE // frame.sample_rate)
            with self._heard_lock:
                if self.first_heard_at is None:
                    self.first_heard_at = time.monotonic()
                self._heard.append(data.astype(np.int16))

    def heard(self, last_s: float | None = None) -> npt.NDArray[np.float64]:
        """What the peer heard (48 kHz, float -1..1), or its last `last_s` seconds."""
        with self._heard_lock:
            pcm = np.concatenate(self._heard) if self._heard else np.zeros(0, np.int16)
        if last_s is not None:
            pcm = pcm[-int(last_s * RATE) :]
        return pcm.astype(np.float64) / 32768.0

    def clear_heard(self) -> None:
        with self._heard_lock:
            self._heard.clear()

    # ---- DTMF (RFC 4733) ----

    def _watch_dtmf(self) -> None:
        """Note the telephone-event packets that arrive (aiortc would discard them: its
        router knows no payload type it has no codec for)."""
        original = RTCDtlsTransport._handle_rtp_data
        peer = self

        async def handle(transport: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
            if len(data) >= 16 and data[1] & 0x7F == DTMF_PT:
                packet = RtpPacket.parse(data)
                if len(packet.payload) >= 4:
                    peer.dtmf_events.append((packet.payload[0], bool(packet.payload[1] & 0x80)))
                return
            await original(transport, data, arrival_time_ms)

        RTCDtlsTransport._handle_rtp_data = handle  # type: ignore[method-assign]

    def _share_sequence(self) -> None:
        """Number every packet this peer sends from one counter, audio and events alike, as
        one RTP stream must be (aiortc's audio sequence is out of reach)."""
        assert self.pc is not None
        transport = self.pc.getSenders()[0].transport
        original = transport._send_rtp

        async def renumbered(data: bytes) -> None:
            self._seq = (self._seq + 1) % 65536
            await original(data[:2] + struct.pack("!H", self._seq) + data[4:])

        transport._send_rtp = renumbered

    def send_dtmf(self, digit: str, duration_ms: int = 120) -> None:
        self.run(self._send_dtmf(digit, duration_ms))

    async def _send_dtmf(self, digit: str, duration_ms: int) -> None:
        """RFC 4733 packets on the audio sender's SSRC, sequence and clock, as a browser's
        RTCDTMFSender sends them, then the usual three end packets."""
        assert self.pc is not None
        sender = self.pc.getSenders()[0]
        event = "0123456789*#ABCD".index(digit)
        start_ts = sender._RTCRtpSender__rtp_timestamp + FRAME  # type: ignore[attr-defined]
        steps = max(1, duration_ms // 20)
        for step in range(steps + 3):
            end = step >= steps
            duration = min(step + 1, steps) * FRAME
            payload = struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)
            header = struct.pack(
                "!BBHII",
                0x80,
                (0x80 if step == 0 else 0) | DTMF_PT,
                0,  # numbered by _share_sequence
                start_ts & 0xFFFFFFFF,
                sender._ssrc,
            )
            await sender.transport._send_rtp(header + payload)
            await asyncio.sleep(0.02)

    # ---- teardown ----

    def close(self) -> None:
        """Close the PeerConnection (DTLS close_notify, as a browser does) and the loop."""
        if self.pc is not None:
            with contextlib.suppress(Exception):
                self.run(self.pc.close(), timeout=10)
            self.pc = None
        if self.loop.is_running():
            with contextlib.suppress(Exception):
                self.run(_cancel_others(), timeout=5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


async def _cancel_others() -> None:
    """End the tasks aiortc and the reader leave behind, before the loop stops."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _never(*args: Any, **kwargs: Any) -> None:
    await asyncio.sleep(3600)


def add_telephone_event(sdp: str) -> str:
    """Offer telephone-event/48000 beside opus (aiortc does not)."""
    out = []
    for line in sdp.splitlines():
        match = re.match(r"m=audio (\d+) (\S+) (.*)", line)
        if match:
            line = f"m=audio {match[1]} {match[2]} {match[3]} {DTMF_PT}"
        out.append(line)
        if line.startswith("a=rtpmap:") and "opus/48000" in line:
            out += [f"a=rtpmap:{DTMF_PT} telephone-event/48000", f"a=fmtp:{DTMF_PT} 0-15"]
    return "\r\n".join(out) + "\r\n"


def only_codec(sdp: str, name: str) -> str:
    """The audio section offering `name` alone (e.g. "pcmu"), as a browser limited to it."""
    wanted = {m[1] for m in re.finditer(r"a=rtpmap:(\d+) ([\w-]+)/", sdp) if m[2].lower() == name}
    out = []
    for line in sdp.splitlines():
        match = re.match(r"m=audio (\d+) (\S+) (.*)", line)
        if match:
            kept = [pt for pt in match[3].split() if pt in wanted]
            line = f"m=audio {match[1]} {match[2]} {' '.join(kept)}"
        pt = re.match(r"a=(?:rtpmap|fmtp|rtcp-fb):(\d+)", line)
        if pt and pt[1] not in wanted:
            continue
        out.append(line)
    return "\r\n".join(out) + "\r\n"
