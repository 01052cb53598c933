"""WebRTC legs, built beside their transport: an offer read, a leg and its media transport
made, the answer returned at once (candidates trickle: `WebRtcTransport.take_local_candidates`
and `add_remote_candidate`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import unquote

import aioice

from callboard.config import Settings
from callboard.core.errors import BadRequest
from callboard.core.leg import Leg, LegHost
from callboard.core.webrtc_leg import WebRtcLeg
from callboard.events.webhooks import WebhookTarget
from callboard.rtp.ports import PortAllocator
from callboard.webrtc.dtls import certificate
from callboard.webrtc.offer import LocalParameters, OfferError, build_answer, parse_offer
from callboard.webrtc.transport import IceConfig, WebRtcRtpSession, WebRtcTransport, parse_candidate

log = logging.getLogger(__name__)

MAX_CANDIDATE_CHARS = 1024


class WebRtcLegs:
    """Creates WebRTC legs and hands each to `register` (the service's leg registry)."""

    def __init__(
        self,
        host: LegHost,
        settings: Settings,
        ports: PortAllocator,
        *,
        register: Callable[[Leg], None],
        admit: Callable[[], None] = lambda: None,
    ) -> None:
        self.host = host
        self.settings = settings
        self.ports = ports  # the SIP legs' RTP port range: host candidates are bound in it
        self.ice = ice_config(settings)
        self._register = register
        self._admit = admit  # raises when no new leg may be taken (MAX_LEGS)

    async def create(
        self,
        sdp: str,
        *,
        room_id: str | None = None,
        app_id: str | None = None,
        webhook: WebhookTarget | None = None,
    ) -> tuple[WebRtcLeg, str]:
        """A leg for the browser's offer, and our answer (no candidates: they trickle)."""
        try:
            offer = parse_offer(sdp)
        except OfferError as exc:
            raise BadRequest(str(exc)) from None
        self._admit()
        rtp = WebRtcRtpSession()
        await rtp.open()
        audio = offer.audio
        rtp.configure(
            remote=("0.0.0.0", 9),  # the nominated pair's address replaces it
            remote_rtcp=None,
            codec=audio.codec,
            payload_type=audio.payload_type,
            dtmf_payload_type=audio.dtmf_payload_type,
        )
        # (receive, send) for what the browser offered to do.
        direction = {"sendonly": (True, False), "recvonly": (False, True)}
        receive, send = direction.get(offer.direction, (offer.direction != "inactive",) * 2)
        rtp.set_direction(send=send, receive=receive)
        leg = WebRtcLeg(
            self.host,
            rtp=rtp,
            rtp_timeout=self.settings.rtp_timeout,
            webhook=webhook,
            app_id=app_id,
        )
        leg.codec = audio.codec
        leg.pending_room = room_id
        leg.mid, leg.mline_index = offer.mid, offer.audio_index
        transport = WebRtcTransport(
            offer,
            rtp,
            self.ice,
            self.ports,
            on_connected=leg.media_connected,
            on_closed=leg.release,
        )
        leg.transport = transport
        local = LocalParameters(
            ice_ufrag=transport.local_username,
            ice_pwd=transport.local_password,
            fingerprint=certificate().fingerprint,
            ssrc=rtp.ssrc,
        )
        answer = build_answer(offer, local, [])
        self._register(leg)
        transport.start()
        log.info("webrtc leg %s: offer answered with %s", leg.id, audio.codec)
        return leg, answer


def parse_candidate_init(candidate: str) -> aioice.Candidate | None:
    """ICECandidateInit's `candidate` -> aioice's Candidate; None for the browser's
    end-of-candidates (an empty string); BadRequest for anything else."""
    if len(candidate) > MAX_CANDIDATE_CHARS:
        raise BadRequest("candidate is too long")
    if not candidate.strip():
        return None
    parsed = parse_candidate(candidate)
    if parsed is None:
        raise BadRequest(f"not an ICE candidate: {candidate[:60]!r}")
    return parsed


def ice_config(settings: Settings) -> IceConfig:
    """ICE_SERVERS (stun:host[:port], turn:[user:password@]host[:port][?transport=udp]) ->
    aioice's one STUN and one TURN server: the first of each kind is used."""
    stun = turn = None
    username = password = None
    for url in settings.ice_servers:
        scheme, _, rest = url.partition(":")
        rest = rest.removeprefix("//").split("?", 1)[0]
        credentials, _, hostport = rest.rpartition("@")
        host, port = _host_port(hostport, 5349 if scheme == "turns" else 3478)
        if scheme == "stun" and stun is None:
            stun = (host, port)
        elif scheme == "turn" and turn is None:
            turn = (host, port)
            if credentials:
                user, _, secret = credentials.partition(":")
                username, password = unquote(user), unquote(secret)
        else:
            log.warning("ICE_SERVERS: %s is not used (one stun: and one turn: are)", url)
    return IceConfig(
        stun_server=stun,
        turn_server=turn,
        turn_username=username,
        turn_password=password,
        external_ips=settings.webrtc_external_ips,
        connect_timeout=settings.webrtc_ice_timeout,
    )


def _host_port(text: str, default: int) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.partition(":")
    return host, int(port) if port.isdigit() else default
