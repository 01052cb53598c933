"""Giving memory back: the server runs on glibc's allocator unless the user chose another,
and malloc_trim is found and returns without harm."""

from __future__ import annotations

import sys

import pytest

from callboard import memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_malloc_trim_is_found_on_glibc_and_runs() -> None:
    assert memory._libc is not None
    memory.release_free_memory()
    memory.release_free_memory()  # twice is harmless


def exec_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], dict[str, str]]]:
    calls: list[tuple[str, list[str], dict[str, str]]] = []
    monkeypatch.setattr(memory.os, "execve", lambda *args: calls.append(args))
    return calls


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_server_restarts_itself_on_glibcs_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same interpreter, same command line (its options too), the environment plus
    PYTHONMALLOC=malloc: what `callboard`, `python -m callboard` and ./scripts/serve all get."""
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setenv("CALLBOARD_PROBE", "kept")
    calls = exec_calls(monkeypatch)
    memory.use_system_allocator()
    ((path, argv, environment),) = calls
    assert path == sys.executable and argv == sys.orig_argv
    assert environment["PYTHONMALLOC"] == "malloc" and environment["CALLBOARD_PROBE"] == "kept"


@pytest.mark.parametrize("chosen", ["pymalloc", "malloc", "debug"])
def test_an_allocator_the_user_chose_is_kept(monkeypatch: pytest.MonkeyPatch, chosen: str) -> None:
    monkeypatch.setenv("PYTHONMALLOC", chosen)
    calls = exec_calls(monkeypatch)
    memory.use_system_allocator()
    assert calls == []


def test_without_glibc_nothing_is_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setattr(memory, "_libc", None)
    calls = exec_calls(monkeypatch)
    memory.use_system_allocator()
    assert calls == []
