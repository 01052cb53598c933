"""The event registry against the documentation: API-NOTES "## Events" (types and their
fields) and the seed API reference's `WebhookEvent` enum (types).

Every documented type is registered, or listed below as not built yet (its feature answers
501); every registered type is documented; the keys an event may carry are the documented
fields, bar a listed few the documentation does not name yet.
"""

from __future__ import annotations

import os
import re
import typing
from pathlib import Path

from callboard.api.later import LATER_ROUTES
from callboard.events.base import Event, event_keys, payload_keys
from callboard.events.types import EVENT_TYPES

REPO = Path(__file__).resolve().parents[3]
# The shared documents sit beside the repository (README: ../shared/DESIGN.md) and are the
# authority; tests/data/spec holds a copy of the two this test reads, for a checkout without
# them. Where both exist they must agree (test_the_copy_of_the_documents_is_current).
LIVE = Path(os.environ.get("CALLBOARD_SHARED_DOCS", REPO.parent / "shared"))
COPY = REPO / "tests" / "data" / "spec"
SHARED = LIVE if (LIVE / "API-NOTES.md").exists() else COPY

# Documented types whose feature is not built: each feature's routes answer 501 today
# (api/later.py names the capability).
NOT_BUILT: dict[str, str] = {}
# Sent but in neither document (README documents them): a stream that fails must say so.
BEYOND_THE_DOCS = {"stt.error"}
# 501 capabilities that have no events of their own.
NO_EVENTS_OF_THEIR_OWN: set[str] = set()

# Keys sent today that the API-NOTES table does not list (wire behaviour kept as it is).
UNDOCUMENTED_KEYS = {
    "amd.beep": {"timeout", "waited_ms"},  # no beep within beep_timeout (issue 13)
    "leg.disconnected": {"leg_type"},
    # Transfers towards us (issue 13): the leg we dialled, the leg an INVITE replaces.
    "leg.transfer_requested": {"target_leg_id"},
    "leg.ringing": {"replaces_leg_id"},
    "tts.finished": {"reason"},  # why it ended (completed, stopped, hangup, room_deleted)
    # Which provider, and (issue 11) why the session ended and the provider's error.
    "agent.connected": {"provider"},
    "agent.disconnected": {"provider", "reason", "error"},
    "recording.finished": {
        "duration_ms",
        "local_file",
        "participant_files",  # API-NOTES "Recording": "under a key of their own"
        "omitted_legs",
        "error",
    },
}
# API-NOTES types the seed's enum does not have (both sides are Callboard's additions).
BEYOND_THE_SEED = {"leg.deaf", "leg.undeaf", "amd.result", "amd.beep"}

Documented = dict[str, dict[str, set[str]]]  # type -> field -> nested keys (empty if none)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def parse_fields(cell: str) -> dict[str, set[str]]:
    """`a`, `b` {`x`, `y`}, `c` (... `{p, q}`) -> {"a": {}, "b": {x, y}, "c": {p, q}}: a
    brace group belongs to the field before it, wherever its backticks are."""
    found: dict[str, set[str]] = {}
    last: str | None = None
    for match in re.finditer(r"\{([^}]*)\}|`([^`{}]*)`", cell):
        group, name = match.groups()
        if group is not None and last is not None:
            found[last] |= set(re.findall(r"\w+", group))
        elif name is not None and re.fullmatch(r"[a-z_]+", name):
            last = name
            found.setdefault(name, set())
    return found


def api_notes_rows() -> list[tuple[list[str], dict[str, set[str]]]]:
    """The rows of the "## Events" table: (types, fields)."""
    text = _read(SHARED / "API-NOTES.md")
    section = text.split("\n## Events\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue  # prose, the header row or the separator
        rows.append((re.findall(r"`([a-z_.]+)`", cells[0]), parse_fields(cells[1])))
    return rows


def api_notes_types() -> Documented:
    return {kind: fields for kinds, fields in api_notes_rows() for kind in kinds}


def seed_enum() -> set[str]:
    """The values of `type` in the seed's WebhookEvent schema."""
    for path in sorted((SHARED / "seeds").glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        match = re.search(
            r"\nWebhookEvent\n.*?\ntype \| enum \| required \| Values: ([^|\n]+)", text, re.S
        )
        if match:
            return {value.strip() for value in match.group(1).split(",")}
    raise AssertionError(f"no seed in {SHARED / 'seeds'} has the WebhookEvent schema")


def nested_keys(cls: type[Event], key: str) -> set[str]:
    """The keys of the TypedDict behind field `key` (or of its dict's values)."""
    attribute = dict((k, a) for a, k in payload_keys(cls))[key]
    hint: object = typing.get_type_hints(cls)[attribute]
    while not typing.is_typeddict(hint):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        assert args, f"{cls.__name__}.{attribute} is not a TypedDict or a dict of one"
        hint = args[-1]  # X | None -> X; dict[str, X] -> X
    return set(typing.cast(typing.Any, hint).__annotations__)


def test_parse_fields_reads_the_table_notation() -> None:
    assert parse_fields("`leg_id`, `cdr` {`reason`, `b`}, `quality` {`m`} (omitted when x)") == {
        "leg_id": set(),
        "cdr": {"reason", "b"},
        "quality": {"m"},
    }
    assert parse_fields("`file`, `channels` (leg id -> `{channel, end_ms}`, see Recording)") == {
        "file": set(),
        "channels": {"channel", "end_ms"},
    }


def test_every_documented_type_is_registered_or_not_built_yet() -> None:
    documented = set(api_notes_types()) | seed_enum()
    assert len(documented) > 30  # the parsers found the table and the enum
    assert documented - set(EVENT_TYPES) == set(NOT_BUILT)
    assert not set(NOT_BUILT) & set(EVENT_TYPES)


def test_not_built_is_exactly_the_events_of_the_features_answering_501() -> None:
    answering_501 = {capability for _, _, capability in LATER_ROUTES}
    assert set(NOT_BUILT.values()) == answering_501 - NO_EVENTS_OF_THEIR_OWN


def test_every_registered_type_is_documented() -> None:
    assert set(EVENT_TYPES) - set(api_notes_types()) == BEYOND_THE_DOCS
    assert set(EVENT_TYPES) - seed_enum() == (BEYOND_THE_SEED - set(NOT_BUILT)) | BEYOND_THE_DOCS
    assert set(api_notes_types()) - seed_enum() == BEYOND_THE_SEED


def test_registry_is_keyed_by_each_class_type() -> None:
    for name, cls in EVENT_TYPES.items():
        assert cls.type == name
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        assert "__slots__" in cls.__dict__


def test_documented_fields_match_the_event_classes() -> None:
    for kinds, fields in api_notes_rows():
        classes = [EVENT_TYPES[kind] for kind in kinds if kind in EVENT_TYPES]
        if not classes:
            continue
        assert len(classes) == len(kinds), f"row {kinds} is only partly registered"
        # A row groups types ("`error` on error"): together they carry what it lists.
        carried = set().union(*(event_keys(cls) for cls in classes))
        assert set(fields) <= carried, f"{kinds}: documented but never sent"
        for cls in classes:
            extra = set(event_keys(cls)) - set(fields)
            assert extra == UNDOCUMENTED_KEYS.get(cls.type, set()), f"{cls.type}: undocumented"
            for key, nested in fields.items():
                if nested and key in event_keys(cls):
                    assert nested_keys(cls, key) == nested, f"{cls.type}.{key}"


def test_undocumented_keys_are_listed_only_for_registered_types() -> None:
    assert set(UNDOCUMENTED_KEYS) <= set(EVENT_TYPES)


def test_the_copy_of_the_documents_is_current() -> None:
    """tests/data/spec must match the shared documents wherever they are present."""
    if not (LIVE / "API-NOTES.md").exists():
        return  # a checkout without ../shared: the copy is all there is
    for name in ("API-NOTES.md", "seeds/000_d5204c8c58a64a70.txt"):
        assert _read(COPY / name) == _read(LIVE / name), f"refresh tests/data/spec/{name}"
