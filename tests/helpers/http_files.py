"""A local HTTP server for playback tests: serves byte strings on paths, with a chosen status
and content type, optionally trickled slowly; counts requests and finished bodies."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Served:
    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    # Trickle: `chunk` bytes every `interval` seconds (0 = all at once).
    chunk: int = 0
    interval: float = 0.0


class FileServer:
    def __init__(self) -> None:
        self.routes: dict[str, Served] = {}
        self.hits: dict[str, int] = {}
        self.completed: dict[str, float] = {}  # path -> monotonic time its body was all sent
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def add(self, path: str, served: Served) -> str:
        self.routes[path] = served
        return self.base + path

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?", 1)[0]
        with self._lock:
            self.hits[path] = self.hits.get(path, 0) + 1
        served = self.routes.get(path)
        if served is None:
            served = Served(b"<html>not found</html>", 404, "text/html")
        handler.send_response(served.status)
        handler.send_header("Content-Type", served.content_type)
        handler.send_header("Content-Length", str(len(served.body)))
        handler.end_headers()
        try:
            if not served.chunk:
                handler.wfile.write(served.body)
            else:
                for start in range(0, len(served.body), served.chunk):
                    handler.wfile.write(served.body[start : start + served.chunk])
                    handler.wfile.flush()
                    time.sleep(served.interval)
            with self._lock:
                self.completed[path] = time.monotonic()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
