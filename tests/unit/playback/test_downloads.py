"""Streaming downloads: status errors, size limits, bytes handed on as they arrive."""

from __future__ import annotations

import httpx
import pytest

from callboard.core.downloads import (
    DownloadError,
    DownloadLimits,
    check_url,
    download,
    shown_url,
)
from callboard.core.errors import BadRequest


class Sink:
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.finished = False
        self.aborted = False

    @property
    def buffered(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.chunks.append(data)

    def finish(self) -> None:
        self.finished = True


def serving(status_code: int = 200, content: object = b"") -> httpx.MockTransport:
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status_code, content=content)  # type: ignore[arg-type]

    return httpx.MockTransport(respond)


async def test_streams_the_body_and_finishes() -> None:
    body = bytes(range(256)) * 1000

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(body), 10_000):
            yield body[start : start + 10_000]

    sink = Sink()
    transport = serving(status_code=200, content=chunks())
    assert await download("http://files.test/a.wav", sink, transport=transport) == len(body)
    assert b"".join(sink.chunks) == body
    assert len(sink.chunks) > 1  # handed on piece by piece
    assert sink.finished


@pytest.mark.parametrize("status", [404, 403, 500, 302])
async def test_a_non_2xx_status_is_an_error_naming_it(status: int) -> None:
    sink = Sink()
    transport = serving(status_code=status, content=b"nope")
    with pytest.raises(DownloadError, match=f"HTTP {status}"):
        await download("http://files.test/missing.wav?token=secret", sink, transport=transport)
    assert not sink.finished


async def test_redirects_are_followed() -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(301, headers={"Location": "/new"})
        return httpx.Response(200, content=b"audio")

    sink = Sink()
    await download("http://files.test/old", sink, transport=httpx.MockTransport(respond))
    assert sink.chunks == [b"audio"]


async def test_size_limit_declared_and_streamed() -> None:
    limits = DownloadLimits(max_bytes=1000)
    with pytest.raises(DownloadError, match="1000 byte limit"):
        await download(
            "http://files.test/big", Sink(), limits, transport=serving(content=b"x" * 5000)
        )

    async def undeclared():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"y" * 300

    sink = Sink()
    with pytest.raises(DownloadError, match="1000 byte limit"):
        await download(
            "http://files.test/big", sink, limits, transport=serving(content=undeclared())
        )
    assert sum(map(len, sink.chunks)) <= 1000


async def test_connection_failure_and_timeout_are_download_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(DownloadError, match="cannot connect"):
        await download("http://files.test/a", Sink(), transport=httpx.MockTransport(refuse))

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(DownloadError, match="read timeout"):
        await download("http://files.test/a", Sink(), transport=httpx.MockTransport(slow))


def test_url_checks_and_the_shown_url() -> None:
    assert check_url("https://example.com/a.mp3") == "https://example.com/a.mp3"
    for bad in ("ftp://example.com/a.wav", "example.com/a.wav", "http://", "x" * 5000, "::"):
        with pytest.raises(BadRequest):
            check_url(bad)
    shown = shown_url("https://user:pw@example.com:8443/a/b.wav?X-Amz-Signature=abc")
    assert shown == "https://example.com:8443/a/b.wav"
