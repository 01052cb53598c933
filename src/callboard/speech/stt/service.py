"""Speech-to-text providers as the core uses them: the provider registry and the default."""

from __future__ import annotations

import importlib
import logging

from callboard.config import Settings
from callboard.speech.stt.base import SttProvider

log = logging.getLogger(__name__)

NOT_YET: set[str] = set()  # named by the API, not built yet: 501
PROVIDERS = {
    "azure": ("callboard.speech.stt.azure", "AzureStt"),
    "elevenlabs": ("callboard.speech.stt.elevenlabs", "ElevenLabsStt"),
    "deepgram": ("callboard.speech.stt.deepgram", "DeepgramStt"),
    "local": ("callboard.speech.stt.local", "LocalStt"),
}


class SttService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._providers: dict[str, SttProvider] = {}

    def default_provider(self) -> str:
        if self.settings.stt_default_provider:
            return self.settings.stt_default_provider
        return "elevenlabs" if self.settings.elevenlabs_api_key else "local"

    def provider(self, name: str | None) -> SttProvider:
        """Raises KeyError for an unknown name, ImportError for one not installed."""
        name = name or self.default_provider()
        provider = self._providers.get(name)
        if provider is None:
            module_name, class_name = PROVIDERS[name]
            cls = getattr(importlib.import_module(module_name), class_name)
            provider = self._providers[name] = cls(self.settings)
        return provider

    async def aclose(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:
                log.exception("closing STT provider %s failed", provider.name)
