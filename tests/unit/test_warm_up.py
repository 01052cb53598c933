"""warm_up() must leave nothing for the first webhook request to import on the event loop."""

import subprocess
import sys

PROBE = """
import asyncio, socket, sys
import httpx, uvloop
from callboard.server import warm_up

warm_up()
before = set(sys.modules)
free = socket.socket()
free.bind(("127.0.0.1", 0))
port = free.getsockname()[1]
free.close()  # nothing listens there: the request fails at connect, after the lazy imports

async def first_request():
    async with httpx.AsyncClient() as client:
        try:
            await client.post(f"http://127.0.0.1:{port}/hook", content=b"{}")
        except httpx.TransportError:
            pass

uvloop.run(first_request())
late = sorted(m for m in set(sys.modules) - before if m.startswith(("anyio", "httpcore", "h11")))
print(",".join(late))
"""


def test_the_first_webhook_request_imports_nothing_after_warm_up() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"imported on the first request: {result.stdout}"
