"""Domain errors; the API maps each class to one HTTP status in one place."""


class CallboardError(Exception):
    status = 500


class BadRequest(CallboardError):
    status = 400


class NotFound(CallboardError):
    status = 404


class Conflict(CallboardError):
    status = 409


class Unavailable(CallboardError):
    """A resource the request needs is exhausted (RTP ports, capacity)."""

    status = 503


class NotSupported(CallboardError):
    """A capability this version does not have (a VoiceBlender feature not implemented)."""

    status = 501
