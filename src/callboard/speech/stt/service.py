"""Speech-to-text providers as the core uses them: the provider registry and the default."""

from __future__ import annotations

from callboard.config import Settings
from callboard.speech.registry import ProviderRegistry
from callboard.speech.stt.base import SttProvider


class SttService(ProviderRegistry[SttProvider]):
    table = {
        "azure": ("callboard.speech.stt.azure", "AzureStt"),
        "elevenlabs": ("callboard.speech.stt.elevenlabs", "ElevenLabsStt"),
        "deepgram": ("callboard.speech.stt.deepgram", "DeepgramStt"),
        "local": ("callboard.speech.stt.local", "LocalStt"),
    }

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, settings.stt_default_provider)
