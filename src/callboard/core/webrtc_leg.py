"""A leg carried by a browser's PeerConnection: WebRTC media (ICE, DTLS-SRTP) and no SIP."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callboard.core.errors import BadRequest, Conflict
from callboard.core.leg import Leg, LegHost, LegState, LegType, rtp_quality
from callboard.events.types import LegConnected, Quality
from callboard.webrtc.transport import WebRtcRtpSession, WebRtcTransport

if TYPE_CHECKING:
    from callboard.events.webhooks import WebhookTarget
    from callboard.media.engine import MediaEndpoint

log = logging.getLogger(__name__)


class WebRtcLeg(Leg):
    """Ringing until ICE and DTLS complete, then connected; ends on DELETE, on the browser's
    close (DTLS close_notify: remote_bye) or when ICE fails or consent is lost (ice_failure)."""

    def __init__(
        self,
        host: LegHost,
        *,
        rtp: WebRtcRtpSession,
        rtp_timeout: float,
        webhook: WebhookTarget | None = None,
        app_id: str | None = None,
    ) -> None:
        super().__init__(host, LegType.WEBRTC, webhook=webhook, app_id=app_id)
        self.rtp = rtp
        self.transport: WebRtcTransport | None = None
        self.codec: str | None = None
        # The offer's audio section, named on the candidates we hand out.
        self.mid: str | None = None
        self.mline_index = 0
        self._rtp_timeout = rtp_timeout

    def endpoint(self) -> MediaEndpoint | None:
        return self.rtp if self.state is not LegState.RINGING else None

    # ---- transport outcomes ----

    def media_connected(self) -> None:
        if self.ended:
            return
        self.rtp.on_dtmf = self.dtmf_received
        self.answered_at = self.host.now()
        self.set_state(LegState.CONNECTED)
        self.host.attach_media(self)
        self.publish(LegConnected(leg_type=self.type.value))
        self.host.media_ready(self)

    # ---- operations ----

    def send_dtmf(self, digits: str) -> None:
        digits = self.check_digits(digits)
        if self.state is not LegState.CONNECTED:
            raise Conflict(f"leg is {self.state.value} and has no media to send DTMF on")
        try:
            self.rtp.send_dtmf(digits)
        except ValueError:
            raise BadRequest("the browser did not offer telephone-event for DTMF") from None

    def hangup(self, reason: str = "api_hangup") -> None:
        self.release(reason)

    def release(self, reason: str) -> None:
        if self.ended:
            return
        self.host.leg_finished(self, reason)
        if self.transport is not None:
            self.transport.close()
        else:
            self.rtp.close()

    def quality(self) -> Quality | None:
        return rtp_quality(self.rtp.stats)

    def timed_out(self, now: float) -> str | None:
        if self.state is LegState.CONNECTED:
            last = self.rtp.last_rtp_time or self.answered_at
            if last is not None and now - last > self._rtp_timeout:
                log.info("leg %s: no RTP from the browser for %.0fs", self.id, now - last)
                return "rtp_timeout"
        return None
