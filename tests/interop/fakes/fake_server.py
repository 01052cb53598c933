"""A stand-in for ``python -m callboard`` used to test the ServerProcess helper itself.

Reads HTTP_ADDR like the real server, answers GET /v1/legs with [] and GET /v1/legs/<id>
with a leg whose state walks ringing -> connected, and exits 0 on SIGTERM. FAKE_MODE=crash
exits 3 at once; FAKE_MODE=hang ignores SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START = time.monotonic()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/v1/legs":
            self._reply(200, [])
        elif self.path.startswith("/v1/legs/"):
            leg_id = self.path.rsplit("/", 1)[1]
            if leg_id == "gone":
                self._reply(404, {"error": "not found"})
                return
            state = "connected" if time.monotonic() - START > 0.5 else "ringing"
            self._reply(200, {"id": leg_id, "state": state, "env": dict(os.environ)})
        else:
            self._reply(404, {"error": "no route"})

    def _reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        print("fake:", format % args, flush=True)


def main() -> None:
    mode = os.environ.get("FAKE_MODE", "")
    print(f"fake server starting, mode={mode!r}", flush=True)
    if mode == "crash":
        print("fake server: simulated start-up failure", flush=True)
        sys.exit(3)
    host, port = os.environ["HTTP_ADDR"].rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    if mode == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    print("fake server: clean exit", flush=True)


if __name__ == "__main__":
    main()
