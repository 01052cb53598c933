"""Bad HTTP requests: malformed JSON, wrong types, unknown enums and ids, bad SIP URIs and
requests in the wrong state get the status code the seed lists and a JSON error, never a 500,
never a leg, never a stack trace in the log.

Two instances and one webhook receiver are shared by the module: B is the server under test
(the one that gets the bad requests); A calls it when a test needs a real call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.server import ServerProcess
from tests.helpers.webhooks import WebhookReceiver
from tests.integration.flows import module_fixtures

# Dialled by requests that must be refused: if one got through, its call would fail at once
# (nothing listens on TCP port 9), so one wrong answer does not spoil the next case.
NOWHERE = "sip:nobody@127.0.0.1:9;transport=tcp"


hooks, servers = module_fixtures("api_errors")


@pytest.fixture
def b(servers: tuple[ServerProcess, ServerProcess]) -> Iterator[ServerProcess]:
    """The server under test; after each test it is alive, holds no leg and logged no stack
    trace (bad input is logged as such, not as a crash)."""
    server = servers[1]
    yield server
    assert server.running(), server.log_tail()
    for each in servers:
        assert "Traceback" not in each.log_text(), each.log_tail()


def assert_error(response: httpx.Response, status: int, server: ServerProcess) -> str:
    """``status`` with the error envelope: JSON, this instance's id, a non-empty message."""
    assert response.status_code == status, f"{response.status_code}: {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"instance_id", "error"}, body
    assert body["instance_id"] == server.instance_id
    assert isinstance(body["error"], str) and body["error"].strip(), body
    return str(body["error"])


def post_raw(server: ServerProcess, path: str, content: bytes) -> httpx.Response:
    return server.api("POST", path, content=content, headers={"content-type": "application/json"})


# -- POST /v1/legs ------------------------------------------------------------------------


MALFORMED_BODIES: dict[str, bytes] = {
    "not JSON": b"{not json",
    "truncated JSON": b'{"type": "sip", "uri": ',
    "empty": b"",
    "array": b'[{"type": "sip", "uri": "sip:nobody@127.0.0.1:9"}]',
    "string": b'"sip"',
    "null": b"null",
    "number": b"42",
    "invalid UTF-8": b'{"type": "sip", "uri": "sip:\xff\xfe@127.0.0.1:9"}',
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "NaN ring_timeout": b'{"type": "sip", "uri": "sip:nobody@127.0.0.1:9", "ring_timeout": NaN}',
}


@pytest.mark.parametrize("content", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_create_leg_with_malformed_json(b: ServerProcess, content: bytes) -> None:
    assert_error(post_raw(b, "/v1/legs", content), 400, b)
    assert b.api("GET", "/legs").json() == []


INVALID_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    # name: (fields over {"type": "sip", "uri": NOWHERE}, a word the error must contain)
    "no type": ({"type": None}, "type"),
    "no uri": ({"uri": None}, "uri"),
    "no type and no uri": ({"type": None, "uri": None}, "uri"),
    "type webrtc": ({"type": "webrtc"}, "type"),
    "type foo": ({"type": "foo"}, "type"),
    "type SIP": ({"type": "SIP"}, "type"),
    "type a number": ({"type": 1}, "type"),
    "codec G729": ({"codecs": ["G729"]}, "codecs"),
    "codecs not a list": ({"codecs": "PCMU"}, "codecs"),
    "codecs empty": ({"codecs": []}, "codecs"),
    "codec a number": ({"codecs": [0]}, "codecs"),
    "ring_timeout -1": ({"ring_timeout": -1}, "ring_timeout"),
    "ring_timeout abc": ({"ring_timeout": "abc"}, "ring_timeout"),
    "ring_timeout 1.5": ({"ring_timeout": 1.5}, "ring_timeout"),
    "ring_timeout as a string": ({"ring_timeout": "5"}, "ring_timeout"),
    "accept_dtmf as a string": ({"accept_dtmf": "yes"}, "accept_dtmf"),
    "IPv6 target on an IPv4 server": ({"uri": "sip:a@[::1]:5060"}, "IPv6"),
    "max_duration -5": ({"max_duration": -5}, "max_duration"),
    "uri sip:": ({"uri": "sip:"}, "URI"),
    "uri http": ({"uri": "http://x"}, "URI"),
    "uri without scheme": ({"uri": "bob@host"}, "URI"),
    "uri port 99999": ({"uri": "sip:bob@host:99999"}, "port"),
    "uri port 0": ({"uri": "sip:bob@host:0"}, "port"),
    "uri empty": ({"uri": ""}, "uri"),
    "uri with a space": ({"uri": "sip:bob@ho st"}, "URI"),
    "uri with a CRLF": ({"uri": "sip:bob@host\r\nVia: x"}, "URI"),
    "uri a number": ({"uri": 5060}, "uri"),
    "uri sctp transport": ({"uri": "sip:bob@host;transport=sctp"}, "transport"),
    "uri sips (no TLS)": ({"uri": "sips:bob@127.0.0.1:9;transport=tcp"}, "sips"),
    "uri with headers": ({"uri": NOWHERE + "?Call-ID=x"}, "header"),
    "header Via": ({"headers": {"Via": "SIP/2.0/UDP evil"}}, "Via"),
    "header Call-ID": ({"headers": {"Call-ID": "x"}}, "Call-ID"),
    "header call-id lower case": ({"headers": {"call-id": "x"}}, "call-id"),
    "header CSeq": ({"headers": {"CSeq": "1 INVITE"}}, "CSeq"),
    "header Contact": ({"headers": {"Contact": "<sip:evil@x>"}}, "Contact"),
    "header value CRLF": ({"headers": {"X-A": "a\r\nVia: x"}}, "X-A"),
    "header value LF": ({"headers": {"X-A": "a\nb"}}, "X-A"),
    "header value CR": ({"headers": {"X-A": "a\rb"}}, "X-A"),
    "header value NUL": ({"headers": {"X-A": "a\x00b"}}, "X-A"),
    "header name with a space": ({"headers": {"X A": "b"}}, "X A"),
    "header name with a colon": ({"headers": {"X-A:": "b"}}, "X-A:"),
    "header name empty": ({"headers": {"": "b"}}, "header"),
    "header name not ASCII": ({"headers": {"X-\u00e9": "b"}}, "header"),
    "header value a number": ({"headers": {"X-A": 5}}, "X-A"),
    "headers a list": ({"headers": ["X-A: b"]}, "headers"),
    "from with a space": ({"from": "a b"}, "from"),
    "from with CRLF": ({"from": "a\r\nVia: x"}, "from"),
    "from with NUL": ({"from": "a\x00"}, "from"),
    "privacy with CRLF": ({"privacy": "id\r\nVia: x"}, "privacy"),
    "privacy with NUL": ({"privacy": "id\x00"}, "privacy"),
    "webhook_url ftp": ({"webhook_url": "ftp://x"}, "webhook_url"),
    "accept_dtmf maybe": ({"accept_dtmf": "maybe"}, "accept_dtmf"),
    "auth a string": ({"auth": "alice:secret"}, "auth"),
    "auth without username": ({"auth": {"password": "x"}}, "auth"),
}


@pytest.mark.parametrize(("fields", "word"), INVALID_FIELDS.values(), ids=INVALID_FIELDS.keys())
def test_create_leg_with_invalid_fields(
    b: ServerProcess, fields: dict[str, Any], word: str
) -> None:
    body = {"type": "sip", "uri": NOWHERE, **fields}
    body = {k: v for k, v in body.items() if v is not None}
    response = b.api("POST", "/legs", json=body)
    if response.status_code == 201:  # do not leave a leg behind for the next case
        b.wait_for_leg_state(response.json()["id"], "hung_up")
    error = assert_error(response, 400, b)
    assert word.lower() in error.lower(), error
    assert b.api("GET", "/legs").json() == []


# -- unknown ids, routes and methods ---------------------------------------------------------


LEG_ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "", None),
    ("DELETE", "", None),
    ("POST", "/answer", None),
    ("POST", "/early-media", None),
    ("POST", "/mute", None),
    ("DELETE", "/mute", None),
    ("POST", "/deaf", None),
    ("DELETE", "/deaf", None),
    ("POST", "/hold", None),
    ("DELETE", "/hold", None),
    ("POST", "/dtmf", {"digits": "1"}),
    ("POST", "/dtmf/accept", None),
    ("POST", "/dtmf/reject", None),
    ("POST", "/play", {"tone": "us_ringback"}),
    ("PATCH", "/play/pb-1", {"volume": 1}),
    ("DELETE", "/play/pb-1", None),
]


def test_unknown_leg_id_on_every_leg_route(b: ServerProcess) -> None:
    for leg_id in ("no-such-leg", "3f0e5a4c-0000-4000-8000-000000000000"):
        for method, suffix, body in LEG_ROUTES:
            response = b.api(method, f"/legs/{leg_id}{suffix}", json=body)
            error = assert_error(response, 404, b)
            assert leg_id in error, (method, suffix, error)


def test_unknown_routes_wrong_methods_and_later_capabilities(b: ServerProcess) -> None:
    for path in ("/v1/nothing", "/nothing", "/v1/legs/x/nothing", "/v2/legs"):
        assert_error(b.api("GET", path), 404, b)
    for method, path in (
        ("PUT", "/v1/legs"),
        ("DELETE", "/v1/legs"),
        ("PATCH", "/v1/legs/x"),
        ("GET", "/v1/legs/x/answer"),
        ("PUT", "/v1/legs/x/hold"),
    ):
        assert_error(b.api(method, path), 405, b)
    # Answering-machine detection and transfer are built: no such leg.
    assert_error(b.api("POST", "/v1/legs/x/amd", json={}), 404, b)
    assert_error(b.api("POST", "/v1/legs/x/transfer", json={"target": "sip:a@h"}), 404, b)


def test_openapi_document(b: ServerProcess) -> None:
    response = b.api("GET", "/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/v1/legs"])
    assert {"post"} <= set(paths["/v1/legs/{leg_id}/answer"])
    assert {"post", "delete"} <= set(paths["/v1/legs/{leg_id}/hold"])
    assert {"post"} <= set(paths["/v1/legs/{leg_id}/dtmf"])
    create = document["components"]["schemas"]["CreateLegRequest"]
    seed_fields = {
        "type",
        "uri",
        "from",
        "privacy",
        "ring_timeout",
        "max_duration",
        "codecs",
        "headers",
        "room_id",
        "auth",
        "webhook_url",
        "webhook_secret",
        "amd",
        "accept_dtmf",
    }
    assert seed_fields <= set(create["properties"]), seed_fields - set(create["properties"])
    assert set(create["required"]) == {"type", "uri"}


# -- legs in the wrong state -------------------------------------------------------------------


def test_requests_in_the_wrong_state(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, b: ServerProcess
) -> None:
    a = servers[0]
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")})
    assert response.status_code == 201, response.text
    out_leg = response.json()["id"]
    in_leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    hooks.wait_for("leg.ringing", since=since, leg_id=out_leg)
    try:
        # Ringing: only an inbound SIP leg can be answered; nothing rings on hold.
        assert "inbound" in assert_error(a.api("POST", f"/legs/{out_leg}/answer"), 400, a)
        assert_error(a.api("POST", f"/legs/{out_leg}/early-media"), 400, a)
        assert_error(b.api("POST", f"/legs/{in_leg}/hold"), 409, b)
        assert_error(a.api("POST", f"/legs/{out_leg}/hold"), 409, a)
        assert_error(b.api("DELETE", f"/legs/{in_leg}/hold"), 409, b)
        assert_error(b.api("POST", f"/legs/{in_leg}/play", {"tone": "us_ringback"}), 409, b)
        assert b.get_leg(in_leg)["state"] == "ringing"  # type: ignore[index]

        assert b.api("POST", f"/legs/{in_leg}/answer").status_code == 200
        hooks.wait_for("leg.connected", since=since, leg_id=out_leg)
        hooks.wait_for("leg.connected", since=since, leg_id=in_leg)
        # Connected: no second answer, no early media any more, nothing to resume.
        assert "connected" in assert_error(b.api("POST", f"/legs/{in_leg}/answer"), 409, b)
        assert_error(b.api("POST", f"/legs/{in_leg}/early-media"), 409, b)
        assert_error(b.api("DELETE", f"/legs/{in_leg}/hold"), 409, b)
        assert_error(a.api("DELETE", f"/legs/{out_leg}/hold"), 409, a)

        # DTMF and playback bodies.
        dtmf = f"/legs/{in_leg}/dtmf"
        bad_digits: list[dict[str, Any]] = [{"digits": ""}, {"digits": "x"}, {"digits": 5}, {}]
        for body in bad_digits:
            assert_error(b.api("POST", dtmf, json=body), 400, b)
        assert_error(b.api("POST", dtmf), 400, b)  # no body at all
        assert_error(post_raw(b, f"/v1{dtmf}", b"{digits"), 400, b)
        play = f"/legs/{in_leg}/play"
        bad_plays: list[dict[str, Any]] = [
            {"url": "http://127.0.0.1:9/a.wav", "mime_type": "audio/wav", "tone": "us_busy"},
            {},
            {"volume": 3},
            {"tone": "xx_nonsense"},
            {"tone": "us_ringback", "volume": 9},
            {"tone": "us_ringback", "volume": -9},
            {"tone": "us_ringback", "volume": "loud"},
            {"tone": 7},
        ]
        for body in bad_plays:
            assert_error(b.api("POST", play, json=body), 400, b)
        assert_error(b.api("PATCH", f"/legs/{in_leg}/play/pb-none", json={"volume": 1}), 404, b)
        # None of that disturbed the call.
        assert b.get_leg(in_leg)["state"] == "connected"  # type: ignore[index]
        assert b.api("POST", dtmf, json={"digits": "7"}).status_code == 200
        assert hooks.wait_for("dtmf.received", since=since, leg_id=out_leg)["digit"] == "7"
        assert hooks.events("leg.disconnected", since=since) == []
    finally:
        a.api("DELETE", f"/legs/{out_leg}")
    hooks.wait_for("leg.disconnected", since=since, leg_id=in_leg)
    assert a.api("GET", "/legs").json() == []
    assert b.api("GET", "/legs").json() == []


def test_flag_actions_answer_status_words_and_emit_events(
    servers: tuple[ServerProcess, ServerProcess], hooks: WebhookReceiver, b: ServerProcess
) -> None:
    a = servers[0]
    since = hooks.mark()
    response = a.api("POST", "/legs", {"type": "sip", "uri": b.sip_uri("bob")})
    assert response.status_code == 201, response.text
    out_leg = response.json()["id"]
    leg = hooks.wait_for("leg.ringing", since=since, instance_id=b.instance_id)["leg_id"]
    try:
        steps = [
            ("POST", "mute", "muted", "leg.muted", {"muted": True}),
            ("POST", "mute", "muted", None, {"muted": True}),  # again: no second event
            ("DELETE", "mute", "unmuted", "leg.unmuted", {"muted": False}),
            ("POST", "deaf", "deaf", "leg.deaf", {"deaf": True}),
            ("DELETE", "deaf", "undeaf", "leg.undeaf", {"deaf": False}),
            ("DELETE", "deaf", "undeaf", None, {"deaf": False}),
            ("POST", "dtmf/reject", "rejected", None, {"accept_dtmf": False}),
            ("POST", "dtmf/accept", "accepted", None, {"accept_dtmf": True}),
        ]
        for method, action, word, event, flags in steps:
            response = b.api(method, f"/legs/{leg}/{action}")
            assert response.status_code == 200, response.text
            assert response.json() == {"instance_id": b.instance_id, "status": word}
            view = b.get_leg(leg)
            assert view is not None
            assert {k: view[k] for k in flags} == flags, (action, view)
            if event is not None:
                hooks.wait_for(event, since=since, leg_id=leg)
        flag_events = ("leg.muted", "leg.unmuted", "leg.deaf", "leg.undeaf")
        hooks.assert_no_event("leg.hold", within=0.3, leg_id=leg)
        got = [e.type for e in hooks.events(since=since, leg_id=leg) if e.type in flag_events]
        assert got == list(flag_events)
    finally:
        a.api("DELETE", f"/legs/{out_leg}")
    hooks.wait_for("leg.disconnected", since=since, leg_id=leg)
    assert b.api("GET", "/legs").json() == []
