"""Local stand-ins for the cloud speech providers, written from PROVIDERS-SPEECH.md.

Each is an ASGI app that speaks its provider's documented protocol (paths, auth headers, query
parameters, error bodies, chunked audio) and rejects what the real service rejects; its audio
is a deterministic sine per voice. Run one with `start_standin(app)` (or `running_standin`) and
point the production client at the base URL it returns.
"""

from tests.helpers.standins.common import Knobs, running_standin, start_standin

__all__ = ["Knobs", "running_standin", "start_standin"]
