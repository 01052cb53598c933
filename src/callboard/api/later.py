"""Routes of capabilities that later issues deliver: an honest 501 until they land."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter

from callboard.api.schemas import errors
from callboard.core.errors import NotSupported

router = APIRouter(tags=["not yet available"])

# Capability -> the subject of its 501 message, with the verb agreeing with it.
_SUBJECTS: dict[str, str] = {}  # every documented capability is served today

# (methods, path, capability) for every documented route not served yet.
LATER_ROUTES: tuple[tuple[tuple[str, ...], str, str], ...] = ()


def unavailable_message(capability: str) -> str:
    return f"{_SUBJECTS[capability]} not available in this version yet"


def unavailable_handler(message: str):  # type: ignore[no-untyped-def]
    """A route handler that answers every request 501 with `message`."""

    async def handler() -> None:
        raise NotSupported(message)

    return handler


def _path_parameters(path: str) -> list[dict[str, Any]]:
    # The handlers take no parameters (every request gets the 501), so the document would
    # otherwise leave the path's templated parts undeclared, which OpenAPI forbids.
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]


for methods, path, capability in LATER_ROUTES:
    message = unavailable_message(capability)
    # One route per method: FastAPI derives the operationId from the first method only.
    for method in methods:
        router.add_api_route(
            path,
            unavailable_handler(message),
            methods=[method],
            name="unavailable",
            status_code=501,
            summary=f"{capability[0].upper()}{capability[1:]} (not available yet: 501)",
            responses=errors((501, message)),
            openapi_extra={"parameters": _path_parameters(path)},
        )
