"""Routes that later VoiceBlender versions (and their SDKs) have and this version does not.

A client written for them gets a 501 that names the missing capability instead of a bare 404
or 405. They are left out of the OpenAPI document: they are not part of this API.
"""

from __future__ import annotations

from fastapi import APIRouter

from callboard.api.later import unavailable_handler

router = APIRouter()

# (methods, path, what the capability is called in the 501 message)
VOICEBLENDER_LATER_ROUTES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("POST",), "/v1/legs/moq", "Media over QUIC legs"),
    (("POST",), "/v1/legs/{leg_id}/ring", "sending 180 Ringing on request"),
    (("POST",), "/v1/legs/{leg_id}/challenge", "digest-challenging inbound calls"),
    (("POST",), "/v1/legs/{leg_id}/transfer/{step}", "app-driven inbound transfers"),
    (("POST",), "/v1/legs/{leg_id}/rtt", "real-time text"),
    (("POST",), "/v1/legs/{leg_id}/rtt/{choice}", "real-time text"),
    (("POST",), "/v1/legs/{leg_id}/tts/preflight", "staged text-to-speech"),
    (("POST",), "/v1/legs/{leg_id}/tts/{tts_id}/commit", "staged text-to-speech"),
    (("DELETE",), "/v1/legs/{leg_id}/tts/{tts_id}", "staged text-to-speech"),
    (("POST",), "/v1/legs/{leg_id}/stt/finalize", "finalising speech-to-text"),
    (("GET", "POST"), "/v1/legs/{leg_id}/siprec", "SIPREC"),
    (("GET", "POST"), "/v1/legs/{leg_id}/streams", "multi-stream calls"),
    (("GET", "PATCH", "DELETE"), "/v1/legs/{leg_id}/streams/{stream_id}", "multi-stream calls"),
    (("POST", "DELETE"), "/v1/legs/{leg_id}/streams/{stream_id}/room", "multi-stream calls"),
    (("PATCH",), "/v1/legs/{leg_id}/role", "routing roles"),
    (("PUT",), "/v1/legs/{leg_id}/filters", "audio filters"),
    (("PUT", "DELETE"), "/v1/legs/{leg_id}/custom-data", "custom data"),
    (("POST",), "/v1/legs/{leg_id}/ice-restart", "WebRTC ICE restarts"),
    (("GET", "POST"), "/v1/rooms/{room_id}/bridges", "room bridges"),
    (("GET", "PATCH", "DELETE"), "/v1/rooms/{room_id}/bridges/{bridge_id}", "room bridges"),
    (("GET", "PUT", "PATCH"), "/v1/rooms/{room_id}/routing", "routing matrices"),
    (("POST",), "/v1/rooms/{room_id}/siprec", "SIPREC"),
    (("GET", "POST"), "/v1/sip/trunks", "SIP trunks"),
    (("GET", "DELETE"), "/v1/sip/trunks/{trunk_id}", "SIP trunks"),
    (("GET",), "/v1/sip/registrations", "the SIP registrar"),
    (("DELETE",), "/v1/sip/registrations/{aor:path}", "the SIP registrar"),
    (("POST",), "/v1/sip/registrations/attempts/{attempt_id}/{action}", "the SIP registrar"),
)


for methods, path, capability in VOICEBLENDER_LATER_ROUTES:
    router.add_api_route(
        path,
        unavailable_handler(f"{capability}: not available in this version"),
        methods=list(methods),
        name="voiceblender_later",
        status_code=501,
        include_in_schema=False,
    )
