"""WebRTC routes: a browser's offer becomes a `webrtc` leg; ICE candidates trickle both ways."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from callboard.api.commands import Commands
from callboard.api.schemas import (
    ICECandidateInit,
    ICECandidatesResponse,
    StatusResponse,
    WebRTCOfferRequest,
    WebRTCOfferResponse,
    errors,
)
from callboard.core.errors import BadRequest
from callboard.core.webrtc_leg import WebRtcLeg
from callboard.core.webrtc_legs import parse_candidate_init
from callboard.events.webhooks import WebhookTarget

router = APIRouter(tags=["webrtc"])
NO_LEG = (404, "Leg not found")
NOT_WEBRTC = (400, "Invalid JSON, a bad candidate, or not a WebRTC leg")


def commands(request: Request) -> Commands:
    cmds: Commands = request.app.state.commands
    return cmds


def _webrtc_leg(cmds: Commands, leg_id: str) -> WebRtcLeg:
    leg = cmds.service.get_leg(leg_id)
    if not isinstance(leg, WebRtcLeg):
        raise BadRequest(f"leg {leg_id} is a {leg.type.value} leg, not a WebRTC leg")
    return leg


@router.post(
    "/v1/webrtc/offer",
    response_model=WebRTCOfferResponse,
    response_model_exclude_none=True,
    responses=errors((400, "Invalid JSON, invalid SDP offer, or an offer without audio")),
)
async def offer(body: WebRTCOfferRequest, request: Request) -> dict[str, Any]:
    """Answer a browser's offer at once with a new `webrtc` leg (ICE gathering goes on: poll
    GET /v1/legs/{id}/ice-candidates). The leg is connected when ICE and DTLS complete."""
    cmds = commands(request)
    if body.room_id is not None and not body.room_id:
        raise BadRequest("room_id must not be empty")
    webhook = None
    if body.webhook_url is not None:
        if not body.webhook_url.startswith(("http://", "https://")):
            raise BadRequest("webhook_url must be an http:// or https:// URL")
        webhook = WebhookTarget(body.webhook_url, body.webhook_secret)
    leg, answer = await cmds.service.webrtc.create(
        body.sdp, room_id=body.room_id, app_id=body.app_id, webhook=webhook
    )
    return {"instance_id": cmds.instance_id, "leg_id": leg.id, "sdp": answer}


@router.post(
    "/v1/legs/{leg_id}/ice-candidates",
    response_model=StatusResponse,
    responses=errors(NOT_WEBRTC, NO_LEG),
)
async def add_candidate(leg_id: str, body: ICECandidateInit, request: Request) -> dict[str, Any]:
    """Add one of the browser's trickled candidates ("" signals end-of-candidates)."""
    cmds = commands(request)
    leg = _webrtc_leg(cmds, leg_id)
    candidate = parse_candidate_init(body.candidate)  # None: end-of-candidates
    if leg.transport is not None and not leg.ended:
        await leg.transport.add_remote_candidate(candidate)
    return cmds.status("added")


@router.get(
    "/v1/legs/{leg_id}/ice-candidates",
    response_model=ICECandidatesResponse,
    response_model_exclude_none=True,
    responses=errors((400, "Not a WebRTC leg"), NO_LEG),
)
async def take_candidates(leg_id: str, request: Request) -> dict[str, Any]:
    """The server's candidates gathered since the last poll; `done` once gathering ended."""
    cmds = commands(request)
    leg = _webrtc_leg(cmds, leg_id)
    candidates: list[str] = []
    done = True
    if leg.transport is not None:
        candidates, done = leg.transport.take_local_candidates()
    return {
        "instance_id": cmds.instance_id,
        "candidates": [
            {"candidate": c, "sdpMid": leg.mid, "sdpMLineIndex": leg.mline_index}
            for c in candidates
        ],
        "done": done,
    }
