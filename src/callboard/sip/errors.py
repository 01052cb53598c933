"""Errors raised by the SIP stack."""

from __future__ import annotations


class SipParseError(ValueError):
    """Malformed SIP text.

    `status` is the response a UAS should answer with when the offending message is a request
    it can still reply to (400 by default, 416 for an unsupported Request-URI scheme, 513 for
    an oversize message).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
