"""The agent socket's own pieces: the client frames it writes (read back with websockets' own
parser) and the direct delivery of whole messages, against a real websockets server."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from callboard.agents.socket import client_frame, open_socket


def parse_client_frame(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=True)
    with pytest.raises(StopIteration) as done:
        next(parser)
    assert reader.at_eof() is not False  # nothing left over
    return done.value.value


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
@pytest.mark.parametrize("text", [False, True])
def test_client_frames_read_back_as_websockets_reads_them(size: int, text: bool) -> None:
    payload = bytes(i % 251 for i in range(size))
    if text:
        payload = ("é" * (size // 2) + "a" * (size % 2)).encode()
    frame = parse_client_frame(client_frame(payload, text))
    assert frame.opcode is (Opcode.TEXT if text else Opcode.BINARY)
    assert frame.fin
    assert bytes(frame.data) == payload


async def test_whole_messages_reach_the_handler_in_order_including_early_ones() -> None:
    async def greet(ws: ServerConnection) -> None:
        await ws.send("welcome")  # sent with the handshake's answer, before any handler
        await ws.send([b"frag", b"mented"])  # one message in two frames
        await ws.send(b"\x00\x01")
        await ws.send("caf\u00e9")
        await ws.wait_closed()

    async with serve(greet, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        socket = await open_socket(f"ws://127.0.0.1:{port}", "test")
        await asyncio.sleep(0.2)  # everything has arrived and waits for a handler
        got: list[str | bytes] = []
        socket.set_handler(got.append)
        assert got == ["welcome", b"fragmented", b"\x00\x01", "caf\u00e9"]
        await socket.close()
