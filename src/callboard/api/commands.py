"""The operations behind both the REST routes and the VSI commands, so their answers agree."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from callboard.agents.deepgram import DeepgramAgentClient
from callboard.agents.elevenlabs import ElevenLabsClient, ElevenLabsOptions
from callboard.agents.pipecat import PipecatClient
from callboard.agents.vapi import VapiClient
from callboard.api.schemas import (
    AddLegRequest,
    AgentMessageRequest,
    AMDParams,
    CreateLegRequest,
    DeepgramAgentRequest,
    DeleteLegRequest,
    DTMFRequest,
    ElevenLabsAgentRequest,
    PipecatAgentRequest,
    PlaybackRequest,
    RecordingRequest,
    RecordingStorage,
    RoomCreateRequest,
    STTRequest,
    TransferRequest,
    TTSRequest,
    VAPIAgentRequest,
    VolumeRequest,
)
from callboard.api.views import leg_view, room_view
from callboard.config import Settings
from callboard.core import playback_requests, tts
from callboard.core.agents import ClientFactory
from callboard.core.errors import BadRequest, Conflict, NotFound
from callboard.core.leg import LegState, LegType
from callboard.core.outbound import OutboundRequest
from callboard.core.service import CallService
from callboard.core.sip_leg import SipLeg
from callboard.core.speech_choice import no_key
from callboard.media.amd import AmdParams
from callboard.sip.call_model import failure_reason
from callboard.sip.errors import SipParseError
from callboard.sip.uri import SipUri
from callboard.speech.tts.base import TtsProvider, TtsRequest
from callboard.storage.s3 import S3Target, resolve_s3_target

# DELETE /v1/legs/{id} `reason` -> the final response that rejects an unanswered inbound call
# (VoiceBlender's mapping).
REJECT_STATUS = {
    "busy": 486,
    "declined": 603,
    "rejected": 603,
    "unavailable": 480,
    "not_found": 404,
    "forbidden": 403,
    "server_error": 500,
}


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _playback_spec(body: PlaybackRequest) -> playback_requests.PlaybackSpec:
    return playback_requests.PlaybackSpec(
        url=body.url,
        tone=body.tone,
        mime_type=body.mime_type,
        repeat=body.repeat,
        volume=body.volume,
    )


AgentBody = ElevenLabsAgentRequest | VAPIAgentRequest | PipecatAgentRequest | DeepgramAgentRequest


def agent_client_factory(settings: Settings, body: AgentBody) -> ClientFactory:
    """What makes the session's provider client: called once the leg or room checks passed,
    so that a missing key (503) comes after them."""

    def key(provider: str, given: str | None, configured: str | None) -> str:
        chosen = given or configured
        if not chosen:
            raise no_key(provider)
        return chosen

    if isinstance(body, PipecatAgentRequest):
        return lambda: PipecatClient(body.websocket_url)
    if isinstance(body, ElevenLabsAgentRequest):
        options = ElevenLabsOptions(
            body.agent_id, body.first_message, body.language, dict(body.dynamic_variables or {})
        )
        return lambda: ElevenLabsClient(
            settings.elevenlabs_base_url,
            key("elevenlabs", body.api_key, settings.elevenlabs_api_key),
            options,
        )
    if isinstance(body, VAPIAgentRequest):
        return lambda: VapiClient(
            settings.vapi_base_url,
            key("vapi", body.api_key, settings.vapi_api_key),
            body.assistant_id,
            body.first_message,
            body.variable_values,
        )
    return lambda: DeepgramAgentClient(
        settings.deepgram_agent_url,
        key("deepgram", body.api_key, settings.deepgram_api_key),
        body.settings,
        body.greeting,
        body.language,
    )


class Commands:
    def __init__(self, service: CallService) -> None:
        self.service = service
        self.instance_id = service.settings.instance_id

    def leg_view(self, leg_id: str) -> dict[str, Any]:
        return leg_view(self.service.get_leg(leg_id), self.instance_id)

    def status(self, word: str, **extra: Any) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "status": word, **extra}

    # ---- legs ----

    def list_legs(self) -> list[dict[str, Any]]:
        return [leg_view(leg, self.instance_id) for leg in self.service.list_legs()]

    def get_leg(self, leg_id: str) -> dict[str, Any]:
        return self.leg_view(leg_id)

    async def create_leg(self, body: CreateLegRequest) -> dict[str, Any]:
        amd = amd_params(body.amd) if body.amd is not None else None
        request = OutboundRequest(
            uri=body.uri,
            from_user=body.from_,
            privacy=body.privacy,
            ring_timeout=body.ring_timeout,
            max_duration=body.max_duration,
            codecs=tuple(c.value for c in body.codecs) if body.codecs is not None else None,
            headers=tuple((body.headers or {}).items()),
            auth_username=body.auth.username if body.auth else None,
            auth_password=body.auth.password if body.auth else None,
            webhook_url=body.webhook_url,
            webhook_secret=body.webhook_secret,
            accept_dtmf=body.accept_dtmf,
            app_id=body.app_id,
            room_id=body.room_id,
        )
        if body.room_id is not None and not body.room_id:
            raise BadRequest("room_id must not be empty")
        if body.codecs is not None and not body.codecs:
            raise BadRequest("codecs must not be empty")
        if body.webhook_url is not None and not body.webhook_url.startswith(
            ("http://", "https://")
        ):
            raise BadRequest("webhook_url must be an http:// or https:// URL")
        if body.room_id:
            self.service.rooms.check_room_capacity(body.room_id)
        leg = await self.service.sip.create_outbound(request)
        if amd is not None:  # before the INVITE goes out: the task that sends it has not run
            self.service.amd.arm(leg, amd)
        return leg_view(leg, self.instance_id)

    def delete_leg(self, leg_id: str, reason: str | None = None) -> dict[str, Any]:
        leg = self.service.get_leg(leg_id)
        if reason is None or not (
            leg.type is LegType.SIP_INBOUND
            and leg.state in (LegState.RINGING, LegState.EARLY_MEDIA)
        ):
            leg.hangup("api_hangup")  # as VoiceBlender: a reason only matters before answer
            return self.status("hung_up")
        status = REJECT_STATUS.get(reason)
        if status is None:
            known = ", ".join(REJECT_STATUS)
            raise BadRequest(f"unknown reason {reason[:40]!r} (known: {known})")
        leg.reject(status, failure_reason(status))  # busy, declined, ... as API-NOTES lists
        return self.status("hung_up")

    async def answer_leg(self, leg_id: str) -> dict[str, Any]:
        await self.service.get_leg(leg_id).answer()
        return self.status("answered")

    async def early_media_leg(self, leg_id: str) -> dict[str, Any]:
        await self.service.get_leg(leg_id).early_media()
        return self.status("early_media")

    def mute_leg(self, leg_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).set_muted(True)
        return self.status("muted")

    def unmute_leg(self, leg_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).set_muted(False)
        return self.status("unmuted")

    def deaf_leg(self, leg_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).set_deaf(True)
        return self.status("deaf")

    def undeaf_leg(self, leg_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).set_deaf(False)
        return self.status("undeaf")

    def hold_leg(self, leg_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).hold(True)
        return self.status("held")

    def unhold_leg(self, leg_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).hold(False)
        return self.status("resumed")

    def send_leg_dtmf(self, leg_id: str, body: DTMFRequest) -> dict[str, Any]:
        self.service.get_leg(leg_id).send_dtmf(body.digits)
        return self.status("sent")

    def transfer_leg(self, leg_id: str, body: TransferRequest) -> dict[str, Any]:
        try:
            target = SipUri.parse(body.target.strip())
        except SipParseError:
            target = None
        if target is None or not target.host:
            raise BadRequest(f"target is not a SIP URI: {body.target[:80]!r}")
        leg = self.service.get_leg(leg_id)
        _connected_sip_leg(leg, "leg")
        replaced: SipLeg | None = None
        if body.replaces_leg_id is not None:
            other = self.service.legs.get(body.replaces_leg_id)
            if other is None or other is leg:
                raise Conflict(f"replaces_leg_id {body.replaces_leg_id!r} is not another leg")
            replaced = _connected_sip_leg(other, "replaces_leg_id")
        _connected_sip_leg(leg, "leg").start_transfer(str(target), replaced)
        return self.status("transfer_initiated")

    def start_amd(self, leg_id: str, body: AMDParams) -> dict[str, Any]:
        leg = self.service.get_leg(leg_id)
        if not isinstance(leg, SipLeg):
            raise BadRequest("answering-machine detection runs on SIP legs only")
        params = amd_params(body)
        if leg.state is not LegState.CONNECTED or self.service.engine.get(leg.id) is None:
            raise Conflict(f"leg is {leg.state.value}, not connected")
        self.service.amd.start(leg, params)
        return self.status("started")

    def accept_leg_dtmf(self, leg_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).accept_dtmf = True
        return self.status("accepted")

    def reject_leg_dtmf(self, leg_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).accept_dtmf = False
        return self.status("rejected")

    def play_on_leg(self, leg_id: str, body: PlaybackRequest) -> dict[str, Any]:
        leg = self.service.get_leg(leg_id)
        playback = playback_requests.play_on_leg(self.service.engine, leg, _playback_spec(body))
        return {"instance_id": self.instance_id, "playback_id": playback.id, "status": "playing"}

    def set_playback_volume(
        self, leg_id: str, playback_id: str, body: VolumeRequest
    ) -> dict[str, Any]:
        self.service.get_leg(leg_id).playbacks.get(playback_id).set_volume(body.volume)
        return self.status("updated")

    def stop_playback(self, leg_id: str, playback_id: str) -> dict[str, Any]:
        self.service.get_leg(leg_id).playbacks.stop(playback_id)
        return self.status("stopped")

    def _tts_request(self, body: TTSRequest) -> tuple[TtsProvider, TtsRequest]:
        return tts.prepare_tts(
            self.service.tts,
            provider=body.provider,
            text=body.text,
            voice=body.voice,
            model_id=body.model_id,
            language=body.language,
            prompt=body.prompt,
            volume=body.volume,
            api_key=body.api_key,
        )

    def tts_on_leg(self, leg_id: str, body: TTSRequest) -> dict[str, Any]:
        leg = self.service.get_leg(leg_id)
        provider, request = self._tts_request(body)
        job = tts.speak_on_leg(
            self.service.engine, self.service.tts, leg, provider, request, body.volume
        )
        return {"instance_id": self.instance_id, "tts_id": job.id, "status": "playing"}

    def tts_in_room(self, room_id: str, body: TTSRequest) -> dict[str, Any]:
        room = self.service.rooms.get(room_id)
        provider, request = self._tts_request(body)
        job = tts.speak_in_room(
            self.service.rooms, self.service.tts, room, provider, request, body.volume
        )
        return {"instance_id": self.instance_id, "tts_id": job.id, "status": "playing"}

    def agent_on_leg(self, leg_id: str, body: AgentBody) -> dict[str, Any]:
        self.service.agents.start_leg(leg_id, agent_client_factory(self.service.settings, body))
        return self.status("agent_started", leg_id=leg_id)

    def agent_in_room(self, room_id: str, body: AgentBody) -> dict[str, Any]:
        self.service.agents.start_room(room_id, agent_client_factory(self.service.settings, body))
        return self.status("agent_started", room_id=room_id)

    async def agent_message_on_leg(self, leg_id: str, body: AgentMessageRequest) -> dict[str, Any]:
        await self.service.agents.leg_session(leg_id).inject(body.message)
        return self.status("message_sent")

    async def agent_message_in_room(
        self, room_id: str, body: AgentMessageRequest
    ) -> dict[str, Any]:
        await self.service.agents.room_session(room_id).inject(body.message)
        return self.status("message_sent")

    async def stop_agent_on_leg(self, leg_id: str) -> dict[str, Any]:
        await self.service.agents.stop_leg(leg_id)
        return self.status("agent_stopped")

    async def stop_agent_in_room(self, room_id: str) -> dict[str, Any]:
        await self.service.agents.stop_room(room_id)
        return self.status("agent_stopped")

    def stt_on_leg(self, leg_id: str, body: STTRequest) -> dict[str, Any]:
        self.service.stt.start_leg(
            leg_id,
            provider=body.provider,
            language=body.language,
            partial=body.partial,
            api_key=body.api_key,
        )
        return self.status("stt_started", leg_id=leg_id)

    async def stop_stt_on_leg(self, leg_id: str) -> dict[str, Any]:
        await self.service.stt.stop_leg(leg_id)
        return self.status("stt_stopped")

    def stt_in_room(self, room_id: str, body: STTRequest) -> dict[str, Any]:
        leg_ids = self.service.stt.start_room(
            room_id,
            provider=body.provider,
            language=body.language,
            partial=body.partial,
            api_key=body.api_key,
        )
        return self.status("stt_started", room_id=room_id, leg_ids=leg_ids)

    async def stop_stt_in_room(self, room_id: str) -> dict[str, Any]:
        await self.service.stt.stop_room(room_id)
        return self.status("stt_stopped")

    def play_in_room(self, room_id: str, body: PlaybackRequest) -> dict[str, Any]:
        rooms = self.service.rooms
        playback = playback_requests.play_in_room(rooms, rooms.get(room_id), _playback_spec(body))
        return {"instance_id": self.instance_id, "playback_id": playback.id, "status": "playing"}

    def set_room_playback_volume(
        self, room_id: str, playback_id: str, body: VolumeRequest
    ) -> dict[str, Any]:
        self.service.rooms.get(room_id).playbacks.get(playback_id).set_volume(body.volume)
        return self.status("updated")

    def stop_room_playback(self, room_id: str, playback_id: str) -> dict[str, Any]:
        self.service.rooms.get(room_id).playbacks.stop(playback_id)
        return self.status("stopped")

    def stop_room_playbacks(self, room_id: str) -> dict[str, Any]:
        """Stop every playback of the room (404 when none plays)."""
        if not self.service.rooms.get(room_id).playbacks.stop_all():
            raise NotFound(f"no playback in progress in room {room_id}")
        return self.status("stopped")

    # ---- rooms ----

    def list_rooms(self) -> list[dict[str, Any]]:
        return [room_view(room, self.instance_id) for room in self.service.rooms.list()]

    def get_room(self, room_id: str) -> dict[str, Any]:
        return room_view(self.service.rooms.get(room_id), self.instance_id)

    def create_room(self, body: RoomCreateRequest) -> dict[str, Any]:
        room = self.service.rooms.create(
            body.id,
            webhook_url=body.webhook_url,
            webhook_secret=body.webhook_secret,
            app_id=body.app_id,
            sample_rate=body.sample_rate,
        )
        return room_view(room, self.instance_id)

    def delete_room(self, room_id: str) -> dict[str, Any]:
        self.service.rooms.delete(room_id)
        return self.status("deleted")

    async def add_leg_to_room(self, room_id: str, body: AddLegRequest) -> dict[str, Any]:
        joined = await self.service.rooms.add_leg(
            room_id, body.leg_id, mute=body.mute, deaf=body.deaf, accept_dtmf=body.accept_dtmf
        )
        if joined.moved_from:
            return self.status("moved", **{"from": joined.moved_from, "to": joined.room_id})
        return self.status("added")

    def remove_leg_from_room(self, room_id: str, leg_id: str) -> dict[str, Any]:
        self.service.rooms.remove_leg(room_id, leg_id)
        return self.status("removed")

    # ---- recording (kind: "leg" or "room") ----

    def _check_target(self, kind: str, target_id: str) -> None:
        if kind == "leg":
            self.service.get_leg(target_id)
        else:
            self.service.rooms.get(target_id)

    def _s3_target(self, body: RecordingRequest) -> S3Target | None:
        if body.storage is not RecordingStorage.s3:
            return None
        return resolve_s3_target(
            bucket=body.s3_bucket,
            region=body.s3_region,
            endpoint=body.s3_endpoint,
            prefix=body.s3_prefix,
            access_key=body.s3_access_key,
            secret_key=body.s3_secret_key,
            config=self.service.settings,
        )

    async def start_recording(
        self, kind: str, target_id: str, body: RecordingRequest
    ) -> dict[str, Any]:
        self._check_target(kind, target_id)  # 404 before 400
        s3 = self._s3_target(body)
        recordings = self.service.recordings
        if kind == "leg":
            recording = await recordings.start_leg(target_id, s3)
        else:
            recording = await recordings.start_room(target_id, s3, body.multi_channel)
        return self.status("recording", file=recording.file)

    async def stop_recording(self, kind: str, target_id: str) -> dict[str, Any]:
        recordings = self.service.recordings
        recording = await recordings.stop(kind, target_id)
        return self.status("stopped", **recordings.answer_fields(recording))

    def pause_recording(self, kind: str, target_id: str) -> dict[str, Any]:
        return self.status(self.service.recordings.set_paused(kind, target_id, True))

    def resume_recording(self, kind: str, target_id: str) -> dict[str, Any]:
        return self.status(self.service.recordings.set_paused(kind, target_id, False))

    # ---- VSI command table ----

    def vsi_table(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any] | Any]]:
        def leg_id(payload: dict[str, Any]) -> str:
            value = payload.get("leg_id") or payload.get("id")
            if not isinstance(value, str) or not value:
                raise BadRequest("payload.leg_id is required")
            return value

        def dtmf(payload: dict[str, Any]) -> dict[str, Any]:
            try:
                body = DTMFRequest.model_validate(payload)
            except ValidationError as exc:
                raise BadRequest(validation_message(exc)) from None
            return self.send_leg_dtmf(leg_id(payload), body)

        def room_id(payload: dict[str, Any]) -> str:
            value = payload.get("room_id") or payload.get("id")
            if not isinstance(value, str) or not value:
                raise BadRequest("payload.room_id is required")
            return value

        def parse(model: type[Any], payload: dict[str, Any]) -> Any:
            try:
                return model.model_validate(payload)
            except ValidationError as exc:
                raise BadRequest(validation_message(exc)) from None

        def create_room(payload: dict[str, Any]) -> dict[str, Any]:
            return self.create_room(parse(RoomCreateRequest, payload))

        def add_leg(payload: dict[str, Any]) -> Any:
            body = parse(AddLegRequest, {k: v for k, v in payload.items() if k != "room_id"})
            return self.add_leg_to_room(room_id(payload), body)

        table: dict[str, Callable[[dict[str, Any]], Any]] = {
            "list_legs": lambda p: self.list_legs(),
            "get_leg": lambda p: self.get_leg(leg_id(p)),
            "delete_leg": lambda p: self.delete_leg(
                leg_id(p), parse(DeleteLegRequest, {"reason": p.get("reason")}).reason
            ),
            "answer_leg": lambda p: self.answer_leg(leg_id(p)),
            "mute_leg": lambda p: self.mute_leg(leg_id(p)),
            "unmute_leg": lambda p: self.unmute_leg(leg_id(p)),
            "deaf_leg": lambda p: self.deaf_leg(leg_id(p)),
            "undeaf_leg": lambda p: self.undeaf_leg(leg_id(p)),
            "hold_leg": lambda p: self.hold_leg(leg_id(p)),
            "unhold_leg": lambda p: self.unhold_leg(leg_id(p)),
            "send_leg_dtmf": dtmf,
            "accept_leg_dtmf": lambda p: self.accept_leg_dtmf(leg_id(p)),
            "reject_leg_dtmf": lambda p: self.reject_leg_dtmf(leg_id(p)),
        }
        table.update(
            {
                "list_rooms": lambda p: self.list_rooms(),
                "get_room": lambda p: self.get_room(room_id(p)),
                "create_room": create_room,
                "delete_room": lambda p: self.delete_room(room_id(p)),
                "add_leg_to_room": add_leg,
                "remove_leg_from_room": lambda p: self.remove_leg_from_room(room_id(p), leg_id(p)),
            }
        )
        return table


__all__ = ["Commands", "NotFound", "validation_message"]


def amd_params(body: AMDParams) -> AmdParams:
    """The request's AMDParams: zero or negative means the default; the analysis window
    must hold the initial silence."""
    given = body.model_dump()
    defaults = AmdParams()
    params = AmdParams(
        **{
            name: given[name] if given[name] > 0 else getattr(defaults, name)
            for name in given
            if name != "beep_timeout"
        },
        beep_timeout=max(body.beep_timeout, 0),  # 0 or less: no beep detection
    )
    if params.total_analysis_time < params.initial_silence_timeout:
        raise BadRequest("total_analysis_time must not be shorter than initial_silence_timeout")
    return params


def _connected_sip_leg(leg: Any, what: str) -> SipLeg:
    """`leg` as a connected, unheld SipLeg; Conflict otherwise (a transfer's rule)."""
    if not isinstance(leg, SipLeg):
        raise Conflict(f"{what} is not a SIP leg")
    if leg.state is not LegState.CONNECTED or leg.held:
        state = "held" if leg.held else leg.state.value
        raise Conflict(f"{what} is {state}, not connected")
    return leg
