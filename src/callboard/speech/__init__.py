"""Speech: text-to-speech and speech-to-text providers, one module per provider."""
