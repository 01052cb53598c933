"""Random identifiers: Via branches, tags and Call-IDs (RFC 3261 8.1.1.4, 8.1.1.7, 19.3)."""

from __future__ import annotations

import secrets

# A branch starting with the magic cookie tells the peer it was built per RFC 3261.
MAGIC_COOKIE = "z9hG4bK"


def generate_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(10)


def generate_tag() -> str:
    return secrets.token_hex(6)


def generate_call_id(host: str) -> str:
    return f"{secrets.token_hex(12)}@{host}"
