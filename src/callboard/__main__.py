"""`callboard`: start the server with configuration from the environment."""

from __future__ import annotations

import logging
import sys

from callboard.memory import use_system_allocator


def main() -> None:
    use_system_allocator()  # (exec: returns only when already on the allocator we want)
    # Imported after that exec, so that the process that is replaced does not load them.
    import uvloop

    from callboard.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"callboard: invalid configuration: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if settings.log_level != "debug":
        # httpx logs every request at info: one line per webhook delivered. Ours say what
        # failed; the successes are for debugging.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        # aioice logs every connectivity check's state change at info; our WebRTC leg logs
        # the outcome.
        logging.getLogger("aioice").setLevel(logging.WARNING)
    from callboard.server import Callboard

    server = Callboard(settings)
    try:
        uvloop.run(server.run())
    except OSError as exc:
        print(f"callboard: cannot start: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
