"""An outgoing transfer of a SIP leg (RFC 3515): our REFER, the transferee's NOTIFYs, and the
events they become. Blind, or attended with the Replaces of another of our legs' dialogs.

`leg.transfer_initiated` first; a REFER refused outright, a NOTIFY with a failure, or no final
NOTIFY within TRANSFER_TIMEOUT seconds give `leg.transfer_failed`; each NOTIFY gives
`leg.transfer_progress`; a final 2xx gives `leg.transfer_completed`, after which our leg (and
the replaced one) hang up with reason `transfer_completed`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from callboard.events.types import (
    LegTransferCompleted,
    LegTransferFailed,
    LegTransferInitiated,
    LegTransferProgress,
)
from callboard.sip.errors import SipParseError
from callboard.sip.message import SipRequest, SipResponse
from callboard.sip.refer import Replaces, read_sipfrag, refer_to

if TYPE_CHECKING:
    from callboard.core.sip_leg import SipLeg

log = logging.getLogger(__name__)


class OutgoingTransfer:
    def __init__(
        self,
        leg: SipLeg,
        target: str,
        replaced: SipLeg | None,
        timeout: float,
    ) -> None:
        self.leg = leg
        self.target = target
        self.replaced = replaced
        self.timeout = timeout  # for the transferee's final NOTIFY
        self._tx_key: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.finished = False

    @property
    def kind(self) -> str:
        return "attended" if self.replaced is not None else "blind"

    def start(self, referred_by: str) -> None:
        leg, call = self.leg, self.leg.call
        assert call is not None
        replaces = None
        if self.replaced is not None:
            other = self.replaced.call
            assert other is not None and other.session.dialog is not None
            dialog = other.session.dialog
            # The target is the far end of the replaced dialog: its tag is the to-tag.
            replaces = Replaces(dialog.call_id, dialog.remote_tag, dialog.local_tag)
        leg.publish(
            LegTransferInitiated(
                kind=self.kind,
                target=self.target,
                replaces_leg_id=self.replaced.id if self.replaced is not None else None,
            )
        )
        headers = [("Refer-To", refer_to(self.target, replaces)), ("Referred-By", referred_by)]
        try:
            self._tx_key = call.send_request("REFER", headers=headers)
        except Exception as exc:  # the call ended between the API's check and now
            self._fail(None, None, f"REFER could not be sent: {exc}")
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.timeout, self._timed_out)

    # ---- what the leg hands over ----

    def owns(self, tx_key: str) -> bool:
        return tx_key == self._tx_key

    def refer_answered(self, response: SipResponse) -> None:
        if response.status >= 300:
            reason = f"{response.status} {response.reason}".strip()
            self._fail(response.status, response.reason, f"REFER rejected: {reason}")
        # A 2xx: the transferee took it on; NOTIFYs follow.

    def refer_failed(self) -> None:
        self._fail(None, None, "REFER got no answer")

    def notify(self, request: SipRequest, respond: Callable[[int], None]) -> None:
        """A NOTIFY in our leg's dialog: answered first (the BYE of a completed transfer
        must not overtake the 200), then reported."""
        if self.finished:
            respond(481)  # the subscription is over
            return
        try:
            status, reason = read_sipfrag(request.body)
        except SipParseError as exc:
            log.info("leg %s: NOTIFY without a sipfrag status: %s", self.leg.id, exc)
            respond(400)
            return
        respond(200)
        self.leg.publish(LegTransferProgress(status_code=status, reason=reason))
        if 200 <= status < 300:
            self._complete(status, reason)
        elif status >= 300:
            self._fail(status, reason, f"transfer target answered {status} {reason}".strip())

    # ---- outcomes ----

    def _complete(self, status: int, reason: str) -> None:
        self._finish()
        self.leg.publish(LegTransferCompleted(status_code=status, reason=reason))
        self.leg.hangup("transfer_completed")
        if self.replaced is not None:
            self.replaced.hangup("transfer_completed")

    def _timed_out(self) -> None:
        self._timer = None
        self._fail(None, None, f"no final NOTIFY within {self.timeout:.0f} s")

    def _fail(self, status: int | None, reason: str | None, error: str) -> None:
        if self.finished:
            return
        self._finish()
        log.info("leg %s: transfer failed: %s", self.leg.id, error)
        self.leg.publish(LegTransferFailed(status_code=status, reason=reason, error=error))

    def _finish(self) -> None:
        self.finished = True  # the leg keeps it: late NOTIFYs get their 481
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def cancel(self) -> None:
        """The leg ended first: nothing more is reported."""
        if not self.finished:
            self._finish()
