"""Watch UDP traffic on the loopback interface (root only): what really went over the wire.

Used to prove that RTP flows between two peers that both own their sockets (SIPp against
SIPp, the server against SIPp), where a test cannot bind the media port itself::

    with LoopbackCapture(ports={media_port}) as cap:
        ...
    rtp = cap.rtp(dst_port=media_port)

A packet sent on ``lo`` shows up twice on an AF_PACKET socket (outgoing and incoming); only
the incoming copy is kept.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import pytest

_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4


@dataclass(frozen=True)
class UdpPacket:
    time: float  # time.monotonic() at capture
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes

    @property
    def is_rtp(self) -> bool:
        """Looks like RTP version 2 (and not RTCP, payload types 72-76 with the marker bit)."""
        return (
            len(self.payload) >= 12
            and self.payload[0] >> 6 == 2
            and not 72 <= (self.payload[1] & 0x7F) <= 76
        )

    @property
    def rtp_payload_type(self) -> int:
        return self.payload[1] & 0x7F

    @property
    def rtp_marker(self) -> bool:
        return bool(self.payload[1] & 0x80)

    @property
    def rtp_seq(self) -> int:
        return int(struct.unpack_from("!H", self.payload, 2)[0])

    @property
    def rtp_timestamp(self) -> int:
        return int(struct.unpack_from("!I", self.payload, 4)[0])

    @property
    def rtp_ssrc(self) -> int:
        return int(struct.unpack_from("!I", self.payload, 8)[0])

    @property
    def rtp_body(self) -> bytes:
        """The RTP payload after the fixed header, CSRCs, extension and padding."""
        data = self.payload
        offset = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= offset + 4:
            (ext_words,) = struct.unpack_from("!H", data, offset + 2)
            offset += 4 + 4 * ext_words
        end = len(data)
        if data[0] & 0x20 and end > offset:
            end -= data[-1]
        return data[offset:end]


def can_capture() -> bool:
    return hasattr(socket, "AF_PACKET") and os.geteuid() == 0


class LoopbackCapture:
    """Records UDP/IPv4 packets on ``lo`` whose source or destination port is in ``ports``.

    ``ports=None`` records every UDP packet. Needs root (CAP_NET_RAW); use
    :func:`require_capture` to skip (or fail under CI) otherwise.
    """

    def __init__(self, ports: Iterable[int] | None = None, interface: str = "lo") -> None:
        self.ports = set(ports) if ports is not None else None
        self.interface = interface
        self.packets: list[UdpPacket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LoopbackCapture:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        sock.bind((self.interface, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="loopback-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> LoopbackCapture:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._sock is not None
        sock = self._sock
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.1)
            if not ready:
                continue
            try:
                frame, addr = sock.recvfrom(65535)
            except OSError:
                return
            if addr[2] == _PACKET_OUTGOING:
                continue
            packet = self._parse(frame)
            if packet is not None:
                with self._lock:
                    self.packets.append(packet)

    def _parse(self, frame: bytes) -> UdpPacket | None:
        if len(frame) < 14 + 20 + 8:
            return None
        (ethertype,) = struct.unpack_from("!H", frame, 12)
        if ethertype != 0x0800:
            return None
        ip = frame[14:]
        if ip[0] >> 4 != 4 or ip[9] != 17:
            return None
        ihl = (ip[0] & 0x0F) * 4
        (total_len,) = struct.unpack_from("!H", ip, 2)
        src_ip = socket.inet_ntoa(ip[12:16])
        dst_ip = socket.inet_ntoa(ip[16:20])
        src_port, dst_port, udp_len = struct.unpack_from("!HHH", ip, ihl)
        if self.ports is not None and src_port not in self.ports and dst_port not in self.ports:
            return None
        payload = ip[ihl + 8 : min(total_len, ihl + udp_len)]
        return UdpPacket(time.monotonic(), (src_ip, src_port), (dst_ip, dst_port), payload)

    def udp(self, *, src_port: int | None = None, dst_port: int | None = None) -> list[UdpPacket]:
        with self._lock:
            packets = list(self.packets)
        return [
            p
            for p in packets
            if (src_port is None or p.src[1] == src_port)
            and (dst_port is None or p.dst[1] == dst_port)
        ]

    def rtp(self, *, src_port: int | None = None, dst_port: int | None = None) -> list[UdpPacket]:
        return [p for p in self.udp(src_port=src_port, dst_port=dst_port) if p.is_rtp]


def require_capture() -> None:
    """Skip (fail under CI, where tests run as root) when packets cannot be captured."""
    if not can_capture():
        message = "capturing loopback packets needs root (AF_PACKET)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
