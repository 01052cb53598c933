"""Routes of capabilities that later issues deliver: an honest 501 until they land."""

from __future__ import annotations

from fastapi import APIRouter

from callboard.api.commands import NotImplementedYet

router = APIRouter(tags=["not yet available"])

# (methods, path, capability) for every documented route not served yet.
LATER_ROUTES: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("POST",), "/v1/legs/{leg_id}/tts", "text-to-speech"),
    (("POST", "DELETE"), "/v1/legs/{leg_id}/stt", "speech-to-text"),
    (("POST",), "/v1/legs/{leg_id}/agent/{provider}", "AI agents"),
    (("DELETE",), "/v1/legs/{leg_id}/agent", "AI agents"),
    (("POST",), "/v1/legs/{leg_id}/amd", "answering-machine detection"),
    (("POST",), "/v1/legs/{leg_id}/transfer", "transfer"),
    (("POST", "GET"), "/v1/legs/{leg_id}/ice-candidates", "WebRTC"),
    (("POST",), "/v1/webrtc/offer", "WebRTC"),
    (("POST",), "/v1/rooms/{room_id}/tts", "text-to-speech"),
    (("POST", "DELETE"), "/v1/rooms/{room_id}/stt", "speech-to-text"),
    (("POST",), "/v1/rooms/{room_id}/agent/{provider}", "AI agents"),
    (("DELETE",), "/v1/rooms/{room_id}/agent", "AI agents"),
)


def _make_handler(capability: str):  # type: ignore[no-untyped-def]
    async def handler() -> None:
        raise NotImplementedYet(f"{capability} is not available in this version yet")

    return handler


for methods, path, capability in LATER_ROUTES:
    router.add_api_route(
        path,
        _make_handler(capability),
        methods=list(methods),
        status_code=501,
        summary=f"{capability} (not available yet: 501)",
        include_in_schema=False,
    )
