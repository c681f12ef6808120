"""The engine hands the heap's freed pages back after writes (rag/engine.py ``release_freed_memory``), at most
every ``TRIM_EVERY_S`` seconds, so a long-running server's memory does not keep what old snapshots freed."""

from __future__ import annotations

import sys

import pytest

from rag import engine as engine_module
from rag.engine import Engine
from rag.types import Document
from tests.conftest import make_settings


def test_writes_trim_the_heap_at_most_every_few_seconds(tmp_path, embedder, monkeypatch):
    calls: list[int] = []
    monkeypatch.setattr(engine_module, "_TRIM", lambda pad: calls.append(pad) or 1)
    clock = [1000.0]
    monkeypatch.setattr(engine_module.time, "monotonic", lambda: clock[0])
    engine = Engine(make_settings(tmp_path / "index"), embedder)
    engine.background_merges = False
    engine.reload(create=True)

    def write(i: int) -> None:
        engine.upsert([Document(id=f"d{i}", title="T", text=f"Document {i} says something new.")])

    write(1)
    assert calls == []  # (the engine started less than TRIM_EVERY_S ago)
    clock[0] += engine_module.TRIM_EVERY_S
    write(2)
    write(3)  # the same second: not again
    assert calls == [0]
    clock[0] += engine_module.TRIM_EVERY_S + 1
    engine.upsert([Document(id="d3", title="T", text="Document 3 says something new.")])  # unchanged: no write
    assert calls == [0]
    write(4)
    assert calls == [0, 0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_on_glibc_the_trim_is_really_asked():
    assert engine_module.release_freed_memory() is True
