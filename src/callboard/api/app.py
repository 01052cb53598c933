"""The FastAPI application: routers, and the one place domain errors become HTTP answers."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from callboard.api import agents, later, legs, rooms, voiceblender_later, vsi, webrtc
from callboard.api.access import AccessControl, AccessPolicy
from callboard.api.body_limit import BodyLimit
from callboard.api.commands import Commands
from callboard.core.errors import CallboardError
from callboard.events.metrics import Metrics
from callboard.events.vsi import VsiHub

log = logging.getLogger(__name__)


DESCRIPTION = """A programmable voice server: SIP calls and media driven over HTTP.

Every error answers `{"instance_id": "...", "error": "<message>"}` with the status listed for
the route; invalid input (malformed JSON, a body without `Content-Type: application/json`, a
wrong type or value) is a 400.

Two WebSockets are not in this document (OpenAPI cannot describe them): `/v1/vsi` (events and
commands) and `/v1/rooms/{room_id}/ws` (a room participant's audio). docs/API.md describes both.
"""

# FastAPI documents a 422 on every route with parameters; this server answers 400 instead.
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _without_422(document: dict[str, Any]) -> dict[str, Any]:
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
    schemas = document.get("components", {}).get("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return document


def _describe_validation(exc: RequestValidationError, content_type: str | None = None) -> str:
    if isinstance(exc.body, bytes):
        # FastAPI parses a body as JSON only when its Content-Type says so; otherwise the
        # model gets the raw bytes and pydantic's complaint says nothing about why.
        sent = f"Content-Type {content_type[:60]!r}" if content_type else "no Content-Type"
        return f"request body must be JSON with Content-Type: application/json (sent with {sent})"
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON"
        where = ".".join(loc) or "body"
        message = err.get("msg", "invalid")
        if err.get("type") == "missing" and not loc:
            message = "a JSON body is required"
        elif err.get("type") == "model_attributes_type" and not loc:
            message = "must be a JSON object"
        parts.append(f"{where}: {message}")
    return "; ".join(parts) or "invalid request"


def _methods_of(routes: Sequence[BaseRoute], scope: Scope) -> set[str]:
    """The methods of every route that matches the scope's path (included routers too)."""
    methods: set[str] = set()
    for route in routes:
        if route.matches(scope)[0] is Match.NONE:
            continue
        methods |= getattr(route, "methods", None) or set()
        # An included router (FastAPI keeps it whole) lists its own routes.
        inner = getattr(route, "original_router", None)
        if inner is not None:
            methods |= _methods_of(inner.routes, scope)
    return methods


def create_app(
    commands: Commands,
    vsi_hub: VsiHub,
    metrics: Metrics,
    access: AccessPolicy | None = None,
    max_request_bytes: int = 0,
) -> FastAPI:
    instance_id = commands.instance_id
    app = FastAPI(
        title="Callboard",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_url="/v1/openapi.json",
        docs_url="/v1/docs",
        redoc_url=None,
    )
    app.state.commands = commands
    app.state.vsi_hub = vsi_hub

    def openapi() -> dict[str, Any]:
        # FastAPI caches the document (rebuilt when routes change); stripping is idempotent.
        return _without_422(FastAPI.openapi(app))

    app.openapi = openapi  # type: ignore[method-assign]

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"instance_id": instance_id, "error": message}, status_code=status)

    @app.exception_handler(CallboardError)
    async def domain_error(request: Request, exc: CallboardError) -> JSONResponse:
        if exc.status >= 500 and exc.status != 501:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        else:
            log.info("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc)
        return error(exc.status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = _describe_validation(exc, request.headers.get("content-type"))
        log.info("%s %s -> 400: %s", request.method, request.url.path, message)
        return error(400, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # Every method of the path (FastAPI makes a route per method, and Starlette's
            # Allow names only the first route's), as RFC 9110 15.5.6 asks.
            methods = _methods_of(app.router.routes, request.scope)
            if methods:
                response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in %s %s", request.method, request.url.path)
        return error(500, "internal server error")

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/health", tags=["service"])
    async def health() -> dict[str, Any]:
        return {"instance_id": instance_id, "status": "ok"}

    app.include_router(legs.router)
    app.include_router(rooms.router)
    app.include_router(agents.leg_router)
    app.include_router(agents.room_router)
    app.include_router(vsi.router)
    app.include_router(webrtc.router)
    # The browser console: static files that use only the public API.
    console = Path(__file__).resolve().parent.parent / "console"
    app.mount("/console", StaticFiles(directory=console, html=True), name="console")
    app.include_router(later.router)
    app.include_router(voiceblender_later.router)
    if max_request_bytes:
        app.add_middleware(BodyLimit, limit=max_request_bytes, instance_id=instance_id)
    if access is not None and access.active:
        # Outermost: a refused request reaches no route, error handler or body parser.
        app.add_middleware(AccessControl, policy=access, instance_id=instance_id)
    return app
