"""Incoming transfers we carry out (RFC 3515, RFC 3891), enabled by SIP_REFER_AUTO_DIAL=true.

An accepted REFER: 202, `leg.transfer_requested` with `declined: false`, a NOTIFY "100 Trying",
and a new outbound leg to the target (with the Replaces the Refer-To carries, for an attended
transfer). Each step of that call is reported to the referrer by NOTIFY (180/183, then 200 or
the failure) and to the application as `leg.transfer_progress` on the referred leg. When the
target answers, the new leg takes the referred leg's place (room, mute, deaf, accept_dtmf),
`leg.transfer_completed` follows and the referred leg hangs up with `transfer_completed`. The
leg we dialled ends with `transfer_originate_failed` when the target does not answer (then
`leg.transfer_failed`, and the referred call goes on), or `transfer_connect_failed` when it
answers after the place is gone (the referred leg's room deleted meanwhile).

If the referrer hangs up first (some phones do, right after the 202), the new call goes on
and takes the place the referred leg had.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from callboard.core.errors import CallboardError
from callboard.core.leg import Leg
from callboard.core.outbound import OutboundRequest
from callboard.core.rooms import Place
from callboard.events.base import LegEvent
from callboard.events.types import (
    LegTransferCompleted,
    LegTransferFailed,
    LegTransferProgress,
    LegTransferRequested,
)
from callboard.sip.message import SipRequest
from callboard.sip.reason_phrases import default_reason
from callboard.sip.refer import ReferTarget

if TYPE_CHECKING:
    from callboard.core.sip_leg import SipLeg
    from callboard.core.sip_legs import SipLegs
    from callboard.sip.ua import SipCall

log = logging.getLogger(__name__)

HandOver = Callable[[Place, Leg], None]


class SipReferrals:
    """Accepts incoming REFERs and dials their targets (one transfer per leg at a time)."""

    def __init__(
        self,
        legs: SipLegs,
        *,
        hand_over: HandOver,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        timeout: int,
    ) -> None:
        self._legs = legs
        self._hand_over = hand_over
        self._spawn = spawn
        self._timeout = timeout

    def accept(self, leg: SipLeg, call: SipCall, request: SipRequest, refer: ReferTarget) -> None:
        if leg.incoming_transfer is not None and not leg.incoming_transfer.finished:
            call.respond(request, 491)  # one at a time: the referrer may try again later
            return
        dial = self._dial_request(leg, request, refer)
        try:
            self._legs.validate_outbound(dial)
        except CallboardError as exc:
            log.info("leg %s: REFER to %s refused: %s", leg.id, refer.target_uri, exc)
            call.respond(request, 400)
            leg.publish(_requested(refer, declined=True))
            return
        call.respond(request, 202)
        transfer = IncomingTransfer(leg, refer, self._hand_over)
        leg.incoming_transfer = transfer
        log.info("leg %s: %s transfer to %s accepted", leg.id, refer.kind, refer.target_uri)
        leg.notify_referrer(100, "Trying", final=False)
        self._spawn(self._dial(transfer, dial))

    def _dial_request(
        self, leg: SipLeg, request: SipRequest, refer: ReferTarget
    ) -> OutboundRequest:
        headers: list[tuple[str, str]] = []
        if refer.replaces is not None:
            headers.append(("Replaces", refer.replaces.header_value()))
        referred_by = request.headers.get("Referred-By")
        if referred_by:
            headers.append(("Referred-By", referred_by))
        webhook = leg.webhook
        return OutboundRequest(
            uri=refer.target_uri,
            ring_timeout=self._timeout,
            headers=tuple(headers),
            webhook_url=webhook.url if webhook is not None else None,
            webhook_secret=webhook.secret if webhook is not None else None,
            app_id=leg.app_id,
        )

    async def _dial(self, transfer: IncomingTransfer, request: OutboundRequest) -> None:
        try:
            target = await self._legs.create_outbound(request, watcher=transfer)
        except CallboardError as exc:
            transfer.not_dialled(str(exc))
            return
        transfer.dialled(target)


class IncomingTransfer:
    """One accepted REFER: watches the leg dialled for it (`SipLeg.dial_watcher`)."""

    def __init__(self, referred: SipLeg, refer: ReferTarget, hand_over: HandOver) -> None:
        self.referred = referred
        self.refer = refer
        self._hand_over = hand_over
        self._place = Place.of(referred)  # where the new leg goes if the referred one ends
        self.finished = False

    # ---- the leg we dial ----

    def dialled(self, target: SipLeg) -> None:
        self._publish(_requested(self.refer, declined=False, target_leg_id=target.id))

    def not_dialled(self, error: str) -> None:
        log.warning("leg %s: could not dial the REFER's target: %s", self.referred.id, error)
        self._publish(_requested(self.refer, declined=False))
        self._failed(503, f"could not dial the transfer target: {error}")

    def progress(self, status: int, reason: str) -> None:
        if self.finished:
            return
        self.referred.notify_referrer(status, reason, final=False)
        self._publish(LegTransferProgress(status_code=status, reason=reason))

    def answered(self, target: SipLeg) -> None:
        if self.finished:
            return
        self.finished = True
        referred = self.referred
        place = self._place.now(referred)
        try:
            self._hand_over(place, target)
        except CallboardError as exc:
            log.info("leg %s: transfer target answered, but %s", referred.id, exc)
            target.hangup("transfer_connect_failed")
            referred.notify_referrer(503, "Service Unavailable", final=True)
            self._publish(LegTransferFailed(status_code=503, reason=None, error=str(exc)))
            return
        referred.notify_referrer(200, "OK", final=True)
        self._publish(LegTransferProgress(status_code=200, reason="OK"))
        self._publish(LegTransferCompleted(status_code=200, reason="OK"))
        referred.hangup("transfer_completed")

    def ended(self, target: SipLeg, reason: str) -> str:
        """The dialled leg ends with `reason`; the reason it ends with instead."""
        if self.finished:
            return reason
        status = target.call.final_status if target.call is not None else None
        if status is None:
            status = 408 if reason in ("ring_timeout", "timeout") else 503
        self._failed(status, f"transfer target did not answer: {reason}")
        return reason if reason == "api_hangup" else "transfer_originate_failed"

    # ---- outcomes ----

    def _failed(self, status: int, error: str) -> None:
        self.finished = True
        reason = default_reason(status)
        self.referred.notify_referrer(status, reason, final=True)
        self._publish(LegTransferProgress(status_code=status, reason=reason))
        self._publish(LegTransferFailed(status_code=status, reason=reason, error=error))

    def _publish(self, event: LegEvent) -> None:
        if not self.referred.ended:  # a leg's events end with its leg.disconnected
            self.referred.publish(event)


def _requested(
    refer: ReferTarget, *, declined: bool, target_leg_id: str | None = None
) -> LegTransferRequested:
    return LegTransferRequested(
        kind=refer.kind,
        target=refer.target_uri,
        replaces_call_id=refer.replaces.call_id if refer.replaces else None,
        declined=declined,
        target_leg_id=target_leg_id,
    )
