"""DTLS-SRTP (RFC 5764) without I/O: a handshake driven by datagrams in and out, the peer's
certificate checked against the fingerprint its SDP announced, and the SRTP sessions keyed
from the handshake.

OpenSSL runs on memory BIOs: `receive` takes one datagram and gives back the datagrams to
send; `handle_timeout` is called when `timeout()` says a retransmission is due. The asyncio
side (webrtc.transport) owns the socket and the timer.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
from dataclasses import dataclass
from functools import cache

import pylibsrtp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

# (OpenSSL's name, libsrtp's profile, key bytes, salt bytes), best first: what browsers offer.
_PROFILES = (
    (b"SRTP_AEAD_AES_128_GCM", pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM, 16, 12),
    (b"SRTP_AES128_CM_SHA1_80", pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80, 16, 14),
)
_MAX_DATAGRAM = 1200  # what we let a flight's datagram grow to (a path MTU that always fits)


class DtlsError(Exception):
    """The handshake failed or the peer is not who its SDP said."""


@dataclass(frozen=True)
class Certificate:
    """Our self-signed certificate: WebRTC authenticates it by the SDP fingerprint alone."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    fingerprint: str  # sha-256, colon-separated upper-case hex, as a=fingerprint wants


@cache
def certificate() -> Certificate:
    """One ECDSA P-256 certificate for the process (as browsers make one per connection set)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "callboard")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    return Certificate(
        key=key,
        cert=cert,
        fingerprint=_fingerprint(der),
    )


def _fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


@dataclass
class SrtpContexts:
    profile: str
    outbound: pylibsrtp.Session  # protect / protect_rtcp what we send
    inbound: pylibsrtp.Session  # unprotect / unprotect_rtcp what arrives


class DtlsEndpoint:
    """One side of a DTLS-SRTP handshake. `server` is ours when we answered setup:passive."""

    def __init__(self, local: Certificate, remote_fingerprint: str, *, server: bool) -> None:
        ctx = SSL.Context(SSL.DTLS_METHOD)
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda *_: True)
        ctx.use_certificate(local.cert)
        ctx.use_privatekey(local.key)
        ctx.set_cipher_list(b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384")
        ctx.set_tlsext_use_srtp(b":".join(p[0] for p in _PROFILES))
        self._ssl = SSL.Connection(ctx, None)
        self._ssl.set_ciphertext_mtu(_MAX_DATAGRAM)
        if server:
            self._ssl.set_accept_state()
        else:
            self._ssl.set_connect_state()
        self.server = server
        self._remote_fingerprint = remote_fingerprint.upper()
        self.connected = False
        self.closed_by_peer = False
        self.srtp: SrtpContexts | None = None

    def start(self) -> list[bytes]:
        """The client's first flight (nothing for a server, which waits for ClientHello)."""
        return [] if self.server else self._advance()

    def receive(self, datagram: bytes) -> list[bytes]:
        """One DTLS datagram from the peer -> the datagrams to send back. DtlsError when the
        handshake fails; after it, application data and alerts (close_notify) are read."""
        self._ssl.bio_write(datagram)
        if not self.connected:
            return self._advance()
        try:
            self._ssl.recv(1500)  # WebRTC audio sends no DTLS application data; drain it
        except SSL.ZeroReturnError:
            self.closed_by_peer = True
        except SSL.WantReadError:
            pass
        except SSL.Error:
            pass  # a damaged record after the handshake: DTLS drops it
        return self._pending()

    def timeout(self) -> float | None:
        """Seconds until a retransmission is due, or None when none is pending."""
        if self.connected:
            return None
        return self._ssl.DTLSv1_get_timeout()

    def handle_timeout(self) -> list[bytes]:
        """Retransmit the last flight if it is due."""
        if not self.connected:
            self._ssl.DTLSv1_handle_timeout()
        return self._pending()

    def close(self) -> list[bytes]:
        """close_notify for the peer (nothing before the handshake finished)."""
        if not self.connected:
            return []
        with contextlib.suppress(SSL.Error):
            self._ssl.shutdown()
        return self._pending()

    def _advance(self) -> list[bytes]:
        try:
            self._ssl.do_handshake()
        except SSL.WantReadError:
            return self._pending()
        except SSL.Error as exc:
            raise DtlsError(f"DTLS handshake failed: {exc}") from None
        out = self._pending()
        self._check_peer()
        self.srtp = self._srtp()
        self.connected = True
        return out

    def _check_peer(self) -> None:
        peer = self._ssl.get_peer_certificate()
        if peer is None:
            raise DtlsError("the peer sent no DTLS certificate")
        der = peer.to_cryptography().public_bytes(serialization.Encoding.DER)
        if _fingerprint(der) != self._remote_fingerprint:
            raise DtlsError("the peer's DTLS certificate does not match its SDP fingerprint")

    def _srtp(self) -> SrtpContexts:
        selected = self._ssl.get_selected_srtp_profile()
        agreed = [p for p in _PROFILES if p[0] == selected]
        if not agreed:
            raise DtlsError("no SRTP protection profile was agreed")
        _, profile, key_len, salt_len = agreed[0]
        material = self._ssl.export_keying_material(
            b"EXTRACTOR-dtls_srtp", 2 * (key_len + salt_len)
        )
        # RFC 5764 4.2: client key, server key, client salt, server salt.
        keys = (material[:key_len], material[key_len : 2 * key_len])
        salts = (
            material[2 * key_len : 2 * key_len + salt_len],
            material[2 * key_len + salt_len :],
        )
        ours, theirs = (1, 0) if self.server else (0, 1)
        outbound = pylibsrtp.Policy(
            key=keys[ours] + salts[ours],
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=profile,
        )
        inbound = pylibsrtp.Policy(
            key=keys[theirs] + salts[theirs],
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=profile,
        )
        return SrtpContexts(
            selected.decode(), pylibsrtp.Session(outbound), pylibsrtp.Session(inbound)
        )

    def _pending(self) -> list[bytes]:
        # A memory BIO keeps no datagram boundaries: what is pending is whole records, sent
        # as one datagram (several records per datagram is legal DTLS; a flight with our
        # P-256 certificate stays well under an MTU).
        chunks = []
        while True:
            try:
                chunks.append(self._ssl.bio_read(65536))
            except SSL.WantReadError:
                break
        return [b"".join(chunks)] if chunks else []
