"""The speech service around any provider: retries, the disk cache, one synthesis for
identical concurrent requests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from callboard.config import load_settings
from callboard.speech.tts.base import TtsError, TtsRequest
from callboard.speech.tts.cache import MIME
from callboard.speech.tts.service import TtsService


class FakeProvider:
    name = "fake"
    needs_voice = False

    def __init__(self, failures: list[TtsError] | None = None, fail_after: int = -1) -> None:
        self.calls = 0
        self.failures = failures or []
        self.fail_after = fail_after  # raise after this many chunks (mid-stream failure)
        self.gate: asyncio.Event | None = None

    def configured(self, request: TtsRequest) -> bool:
        return True

    async def synthesize(self, request: TtsRequest) -> AsyncIterator[bytes]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        for i in range(4):
            if i == self.fail_after:
                raise TtsError("dropped", transient=True)
            if self.gate is not None:
                await self.gate.wait()
            yield bytes([i]) * 320

    async def aclose(self) -> None:
        pass


def service(tmp_path: Path | None = None) -> TtsService:
    env = {"TTS_CACHE_ENABLED": "true", "TTS_CACHE_DIR": str(tmp_path)} if tmp_path else {}
    svc = TtsService(load_settings(env))
    svc.retry_delays = (0.01, 0.02)
    return svc


async def collect(svc: TtsService, provider: FakeProvider, text: str = "hello") -> bytes:
    return b"".join([c async for c in svc.stream(provider, TtsRequest(text=text))])  # type: ignore[arg-type]


async def test_transient_failures_before_audio_are_retried_twice() -> None:
    provider = FakeProvider([TtsError("429", transient=True), TtsError("503", transient=True)])
    assert len(await collect(service(), provider)) == 4 * 320
    assert provider.calls == 3
    provider = FakeProvider([TtsError("x", transient=True)] * 3)
    with pytest.raises(TtsError):
        await collect(service(), provider)
    assert provider.calls == 3


async def test_final_errors_and_mid_stream_drops_are_not_retried() -> None:
    provider = FakeProvider([TtsError("invalid voice")])
    with pytest.raises(TtsError, match="invalid voice"):
        await collect(service(), provider)
    assert provider.calls == 1
    provider = FakeProvider(fail_after=2)  # audio already played: a retry would repeat it
    with pytest.raises(TtsError, match="dropped"):
        await collect(service(), provider)
    assert provider.calls == 1


async def test_a_cache_hit_after_a_restart_makes_no_call(tmp_path: Path) -> None:
    first = FakeProvider()
    audio = await collect(service(tmp_path), first)
    entries = list(tmp_path.glob("*.pcm"))
    assert len(entries) == 1 and entries[0].read_bytes() == MIME + b"\n" + audio
    again = FakeProvider()
    assert await collect(service(tmp_path), again) == audio  # a new service: a restart
    assert again.calls == 0
    assert await collect(service(tmp_path), again, text="other") and again.calls == 1


async def test_identical_concurrent_requests_synthesise_once(tmp_path: Path) -> None:
    svc = service(tmp_path)
    provider = FakeProvider()
    provider.gate = asyncio.Event()
    first = asyncio.create_task(collect(svc, provider))
    second = asyncio.create_task(collect(svc, provider))
    await asyncio.sleep(0.05)
    provider.gate.set()
    a, b = await asyncio.gather(first, second)
    assert a == b and len(a) == 4 * 320
    assert provider.calls == 1


async def test_a_failed_or_stopped_synthesis_is_not_cached(tmp_path: Path) -> None:
    svc = service(tmp_path)
    with pytest.raises(TtsError):
        await collect(svc, FakeProvider([TtsError("bad request")]))
    stream = svc.stream(FakeProvider(), TtsRequest(text="hello"))  # type: ignore[arg-type]
    await stream.__anext__()
    await stream.aclose()  # the listener hung up after the first chunk
    assert not list(tmp_path.glob("*.pcm"))
    assert not list(tmp_path.glob(".tmp-*"))


def test_default_provider_follows_the_keys() -> None:
    assert TtsService(load_settings({})).default_provider() == "local"
    keyed = load_settings({"ELEVENLABS_API_KEY": "k"})
    assert TtsService(keyed).default_provider() == "elevenlabs"
    chosen = load_settings({"ELEVENLABS_API_KEY": "k", "TTS_DEFAULT_PROVIDER": "deepgram"})
    assert TtsService(chosen).default_provider() == "deepgram"
