"""Text-to-speech providers behind `TtsProvider` (base.py); `registry.py` picks one."""
