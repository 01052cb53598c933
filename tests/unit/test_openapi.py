"""The OpenAPI document describes exactly what the server serves and answers, with the seed's
schema names; and a body sent without a JSON Content-Type gets a message that says so.

The app is built in-process around a stand-in for the commands: generating the document, and
the answers checked here (validation errors, 501s), never reach them.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI, routing
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import BaseRoute

from callboard.api.app import create_app
from callboard.api.commands import Commands
from callboard.api.later import LATER_ROUTES
from callboard.api.voiceblender_later import VOICEBLENDER_LATER_ROUTES
from callboard.events.metrics import Metrics
from callboard.events.vsi import VsiHub

INSTANCE_ID = "openapi-test"
API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"
ERROR_REF = "#/components/schemas/Error"
SEED_SCHEMAS = {
    "Leg",
    "Room",
    "Error",
    "StatusResponse",
    "CreateLegRequest",
    "AddLegRequest",
    "DTMFRequest",
    "PlaybackRequest",
    "VolumeRequest",
    "RecordingRequest",
    "RoomCreateRequest",
    "SIPAuth",
    "AMDParams",
}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    commands = cast(Commands, SimpleNamespace(instance_id=INSTANCE_ID))
    return create_app(commands, VsiHub(), Metrics())


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def served_routes(app: FastAPI) -> list[tuple[str, BaseRoute]]:
    """(path, route) of every route the app serves, inside included routers too."""
    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:  # older FastAPI copies included routes into app.routes
        return [(getattr(route, "path", ""), route) for route in app.routes]
    return [(context.path, context.original_route) for context in iterate(app.routes)]


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def error_ref(response: dict[str, Any]) -> str | None:
    ref: str | None = response["content"]["application/json"]["schema"].get("$ref")
    return ref


# -- what is in the document -----------------------------------------------------------------


async def test_the_document_is_served_at_v1_openapi_json(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    response = await client.get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads(json.dumps(document))


def test_every_route_is_documented_with_its_methods(app: FastAPI, document: dict[str, Any]) -> None:
    docs_ui = {app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url}
    # Routes of later VoiceBlender versions answer 501 to that SDK, but are not this API.
    not_this_api = {path for _, path, _ in VOICEBLENDER_LATER_ROUTES}
    # Served beside the API and not part of it: metrics and the console's static files.
    beside = {"/metrics", "/console"}
    websockets = set()
    checked = 0
    for path, route in served_routes(app):
        if isinstance(route, APIWebSocketRoute):
            websockets.add(path)
        elif isinstance(route, APIRoute) and path not in not_this_api | beside:
            documented = {m.upper() for m in document["paths"].get(path, {})}
            assert route.methods <= documented, (path, route.methods, documented)
            checked += 1
        else:
            assert path in docs_ui | not_this_api | beside, (path, route)
    assert checked >= 50, checked  # the walk did reach the routers' routes
    assert not (not_this_api | beside) & set(document["paths"])
    # OpenAPI cannot describe a WebSocket: the description points at the page that does.
    assert websockets == {"/v1/vsi", "/v1/rooms/{room_id}/ws"}
    api_md = API_MD.read_text()
    for path in websockets:
        assert path in document["info"]["description"], path
        assert path in api_md, path
    assert "docs/API.md" in document["info"]["description"]


def test_no_422_anywhere(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        assert "422" not in operation["responses"], (method, path)
    assert '"422"' not in json.dumps(document)
    assert not {"HTTPValidationError", "ValidationError"} & set(document["components"]["schemas"])


def test_schema_names_follow_the_seed(document: dict[str, Any]) -> None:
    names = set(document["components"]["schemas"])
    assert names >= SEED_SCHEMAS, SEED_SCHEMAS - names
    assert not [n for n in names if n.endswith("Out") or n == "ErrorResponse"], names
    # Every reference resolves to a component.
    for ref in re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(document)):
        assert ref in names, ref
    leg_list = document["paths"]["/v1/legs"]["get"]["responses"]["200"]
    assert leg_list["content"]["application/json"]["schema"]["items"]["$ref"].endswith("/Leg")
    room = document["paths"]["/v1/rooms/{room_id}"]["get"]["responses"]["200"]
    assert room["content"]["application/json"]["schema"]["$ref"].endswith("/Room")


def test_unavailable_routes_are_documented_with_their_501(document: dict[str, Any]) -> None:
    for methods, path, _ in LATER_ROUTES:
        for method in methods:
            operation = document["paths"][path][method.lower()]
            assert set(operation["responses"]) == {"501"}, (method, path)
            assert error_ref(operation["responses"]["501"]) == ERROR_REF
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), (method, path)
    # amd is accepted by the schema but not served yet.
    assert "501" in document["paths"]["/v1/legs"]["post"]["responses"]


def test_error_responses_carry_the_error_schema(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        responses = operation["responses"]
        if "requestBody" in operation:
            assert "400" in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400:
                assert error_ref(response) == ERROR_REF, (method, path, status)
            else:
                assert response["content"]["application/json"]["schema"], (method, path)


def test_statuses_the_code_raises_are_documented(document: dict[str, Any]) -> None:
    paths = document["paths"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert statuses("/v1/legs", "get") == {"200"}
    assert statuses("/v1/legs/{leg_id}/mute", "post") == {"200", "404"}
    assert statuses("/v1/legs", "post") >= {"201", "400", "501", "503"}
    assert statuses("/v1/legs/{leg_id}/answer", "post") >= {"200", "400", "404", "409", "503"}
    assert statuses("/v1/legs/{leg_id}/record", "post") >= {"200", "400", "404", "409", "500"}
    assert statuses("/v1/rooms", "post") >= {"201", "400", "409"}
    assert statuses("/v1/rooms/{room_id}/legs", "post") >= {"200", "400", "404", "409", "503"}
    # A route with a leg or room in its path answers 404 for an unknown one.
    later = {path for _, path, _ in LATER_ROUTES}
    for path, method, operation in operations(document):
        if path not in later and re.search(r"{(leg|room)_id}", path):
            assert "404" in operation["responses"], (method, path)


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(json.dumps(document)))


# -- the answers it describes ------------------------------------------------------------------


async def test_a_json_body_without_a_json_content_type_is_told_so(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps({"type": "sip", "uri": "sip:bob@127.0.0.1:9"}).encode()
    for headers, sent in (
        ({}, "no Content-Type"),
        ({"content-type": "text/plain"}, "'text/plain'"),
        ({"content-type": "application/x-www-form-urlencoded"}, "'application/x-www-form-"),
    ):
        response = await client.post("/v1/legs", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["instance_id"] == INSTANCE_ID
        error = response.json()["error"]
        assert "request body must be JSON with Content-Type: application/json" in error
        assert sent in error, error
    # Likewise on a route whose body is optional.
    response = await client.post("/v1/rooms", content=b'{"id": "r1"}')
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]


async def test_a_json_body_that_is_not_an_object_is_told_so(client: httpx.AsyncClient) -> None:
    for content in (b"[1]", b'"sip"', b"42"):
        response = await client.post(
            "/v1/legs", content=content, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["error"] == "body: must be a JSON object"


async def test_unavailable_routes_answer_a_readable_501(client: httpx.AsyncClient) -> None:
    for methods, path, _ in LATER_ROUTES:
        url = path.replace("{leg_id}", "leg-1").replace("{room_id}", "room-1")
        url = url.replace("{provider}", "vapi")
        for method in methods:
            response = await client.request(method, url, json={})
            assert response.status_code == 501, (method, url)
            error = response.json()["error"]
            assert re.fullmatch(r".+ (is|are) not available in this version yet", error), error
    assert LATER_ROUTES == ()  # every documented capability is served
