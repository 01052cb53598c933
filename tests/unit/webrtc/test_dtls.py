"""DTLS-SRTP without I/O (webrtc.dtls): two endpoints handshake through lists of datagrams."""

from __future__ import annotations

import pytest

from callboard.webrtc import dtls
from callboard.webrtc.dtls import Certificate, DtlsEndpoint, DtlsError

RTP = bytes([0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7]) + bytes(range(160))


def _two_certificates() -> tuple[Certificate, Certificate]:
    ours = dtls.certificate()
    dtls.certificate.cache_clear()
    theirs = dtls.certificate()
    dtls.certificate.cache_clear()
    return ours, theirs


def _run(server: DtlsEndpoint, client: DtlsEndpoint) -> None:
    flights = client.start()
    for _ in range(8):
        answers = [out for datagram in flights for out in server.receive(datagram)]
        flights = [out for datagram in answers for out in client.receive(datagram)]
        if server.connected and client.connected:
            return


def test_handshake_keys_srtp_both_ways_and_close_notify() -> None:
    ours, theirs = _two_certificates()
    server = DtlsEndpoint(ours, theirs.fingerprint, server=True)
    client = DtlsEndpoint(theirs, ours.fingerprint, server=False)
    assert server.start() == []  # a server waits for the ClientHello
    _run(server, client)
    assert server.connected and client.connected
    assert server.srtp is not None and client.srtp is not None
    assert server.srtp.profile == client.srtp.profile == "SRTP_AEAD_AES_128_GCM"
    sealed = server.srtp.outbound.protect(RTP)
    assert sealed != RTP and client.srtp.inbound.unprotect(sealed) == RTP
    back = client.srtp.outbound.protect(RTP)
    assert server.srtp.inbound.unprotect(back) == RTP
    for datagram in client.close():
        server.receive(datagram)
    assert server.closed_by_peer


def test_a_certificate_that_does_not_match_the_sdp_fingerprint_fails() -> None:
    ours, theirs = _two_certificates()
    server = DtlsEndpoint(ours, ours.fingerprint, server=True)  # expects the wrong one
    client = DtlsEndpoint(theirs, ours.fingerprint, server=False)
    with pytest.raises(DtlsError, match="does not match"):
        _run(server, client)
    assert server.srtp is None


def test_garbage_fails_the_handshake_cleanly() -> None:
    ours, theirs = _two_certificates()
    server = DtlsEndpoint(ours, theirs.fingerprint, server=True)
    try:
        out = server.receive(b"\x16\xfe\xfd" + b"\x00" * 60)
    except DtlsError:
        out = []
    assert not server.connected and out == []
