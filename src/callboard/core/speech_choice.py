"""Choosing a speech provider for a request: the checks TTS and STT share, in API-NOTES' order
(an unknown name is a 400, a provider whose package is missing a 503, a cloud provider
without a key a 503)."""

from __future__ import annotations

from typing import Protocol, TypeVar

from callboard.core.errors import BadRequest, Unavailable
from callboard.speech.registry import ProviderRegistry


class _Keyed(Protocol):
    name: str

    async def aclose(self) -> None: ...


P = TypeVar("P", bound=_Keyed)


def choose_provider(registry: ProviderRegistry[P], name: str | None, kind: str) -> tuple[str, P]:
    chosen = name or registry.default_provider()
    try:
        return chosen, registry.provider(chosen)
    except KeyError:
        raise BadRequest(f"unknown {kind} provider {chosen[:40]!r}") from None
    except ImportError as exc:
        raise Unavailable(f"the {chosen} {kind} provider is not installed: {exc}") from None


def no_key(chosen: str) -> Unavailable:
    return Unavailable(f"no {chosen} API key provided")
