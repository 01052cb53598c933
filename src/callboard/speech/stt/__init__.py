"""Speech-to-text providers behind `SttProvider` (base.py)."""
