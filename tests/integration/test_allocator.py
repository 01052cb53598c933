"""The server runs on glibc's allocator, whose free pages malloc_trim gives back after a burst
(src/callboard/memory.py): started as users start it, the process has re-executed itself
with PYTHONMALLOC=malloc under the same pid; an allocator the user chose is kept.
bench/flood.py measures what it buys: RSS back within 10 % after 12,000 calls."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.server import ServerFactory


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw if entry)
    return {name: value for name, _, value in pairs}


def test_the_server_runs_on_the_system_allocator(server_factory: ServerFactory) -> None:
    server = server_factory()
    assert server.proc is not None
    assert environment_of(server.proc.pid).get("PYTHONMALLOC") == "malloc"
    assert server.client.get("/v1/health").status_code == 200


def test_an_allocator_the_user_chose_is_kept(server_factory: ServerFactory) -> None:
    server = server_factory(PYTHONMALLOC="pymalloc")
    assert server.proc is not None
    assert environment_of(server.proc.pid).get("PYTHONMALLOC") == "pymalloc"
    assert server.client.get("/v1/health").status_code == 200
