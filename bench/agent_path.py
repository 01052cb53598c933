"""The agent path alone, in one process: N Pipecat sessions (the real PipecatClient, bridged
by AgentSession to an AgentAudio) fed every 20 ms by a stand-in clock, against a WebSocket
echo server in another process (on core 0) that answers every other message with it, as
often as a pipecat bot sends its 40 ms chunks. This process should run pinned to core 1,
on uvloop as the server does; its CPU over the window, per session-second, is the figure: the
tap's queue, the pump, encoding, the socket writes and reads, parsing, playing the echo.

Without the engine, the SIP call and a second server instance, it is far steadier than
`bench/agents.py --load` and isolates what a change to the agent path costs. To compare two
trees, alternate them:

    taskset -c 1 python bench/agent_path.py [--sessions 50] [--seconds 8]
    PYTHONPATH=/other/tree/src taskset -c 1 python bench/agent_path.py ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import numpy as np
import uvloop

from callboard.agents.pipecat import PipecatClient
from callboard.core.agents import AgentAudio, AgentSession

ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

async def main(port, count):
    async def echo(ws):
        n = 0
        async for message in ws:
            n += 1
            if n % 2 == 0:
                await ws.send(message)
    for i in range(count):
        await serve(echo, "127.0.0.1", port + i, compression=None)
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


async def run(sessions: int, seconds: float) -> dict[str, float]:
    port = 47000 + os.getpid() % 100 * 100
    server = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-c", ECHO_SERVER, str(port), str(sessions)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        audios = [AgentAudio() for _ in range(sessions)]
        running = [
            AgentSession(
                PipecatClient(f"ws://127.0.0.1:{port + i}"),
                audio,
                lambda event: None,
                lambda: None,
                lambda session: None,
            )
            for i, audio in enumerate(audios)
        ]
        await asyncio.sleep(1)
        loop = asyncio.get_running_loop()
        said = (np.sin(np.arange(320) * 0.15) * 8000).astype(np.int16)
        heard = np.zeros(320, np.int16)

        async def clock() -> None:
            due = loop.time()
            while True:
                for audio in audios:
                    audio.feed(said, heard, 16000)
                    audio.read_frame()
                due += 0.02
                await asyncio.sleep(max(0.0, due - loop.time()))

        ticking = asyncio.create_task(clock())
        await asyncio.sleep(2)
        start, wall = os.times(), time.monotonic()
        await asyncio.sleep(seconds)
        end, wall = os.times(), time.monotonic() - wall
        ticking.cancel()
        connected = sum(s.running for s in running)
        for session in running:
            await session.stop("stopped")
        per = sessions * wall / 1e6
        return {
            "sessions_connected": connected,
            "cpu_us_per_session_s": round(
                (end.user + end.system - start.user - start.system) / per
            ),
            "user_us": round((end.user - start.user) / per),
            "system_us": round((end.system - start.system) / per),
        }
    finally:
        server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    print(uvloop.run(run(args.sessions, args.seconds)))


if __name__ == "__main__":
    main()
