"""Speech providers by their API name, built on first use: an unused provider's dependencies
(Piper, faster-whisper, botocore) are never imported. The default is the configured one, else
ElevenLabs when its key is set (the seed's default), else the offline `local` provider."""

from __future__ import annotations

import importlib
import logging
from typing import Generic, Protocol, TypeVar

from callboard.config import Settings

log = logging.getLogger(__name__)


class _Provider(Protocol):
    name: str

    async def aclose(self) -> None: ...


P = TypeVar("P", bound=_Provider)


class ProviderRegistry(Generic[P]):
    # name -> (module, class); each class is built as `cls(settings)`
    table: dict[str, tuple[str, str]] = {}

    def __init__(self, settings: Settings, configured_default: str | None) -> None:
        self.settings = settings
        self._configured_default = configured_default
        self._providers: dict[str, P] = {}

    def default_provider(self) -> str:
        if self._configured_default:
            return self._configured_default
        return "elevenlabs" if self.settings.elevenlabs_api_key else "local"

    def provider(self, name: str | None) -> P:
        """Raises KeyError for an unknown name, ImportError for one not installed."""
        name = name or self.default_provider()
        provider = self._providers.get(name)
        if provider is None:
            module_name, class_name = self.table[name]
            cls = getattr(importlib.import_module(module_name), class_name)
            provider = self._providers[name] = cls(self.settings)
        return provider

    async def aclose(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing speech provider %s failed", provider.name)
