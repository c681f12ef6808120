"""Several writers on one index folder (rag/store/commit.py write_lock, rag/engine.py Engine.write): nothing lost.

Each process's Engine starts from its own snapshot; the write lock is held from reading the latest commit to
switching CURRENT, so a commit made by another process since is read first and kept."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from rag.engine import Engine
from rag.errors import IndexBusy, IndexCorrupt
from rag.store import CURRENT, KEEP_GENERATIONS, CorpusIndex, IndexSettings, write_lock
from rag.types import Document
from tests.conftest import make_settings

WRITER = """
import sys
from rag.engine import Engine
from rag.settings import Settings
from rag.types import Document
folder, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
engine = Engine.open(Settings(_env_file=None, index_dir=folder), create=True, read=False)
for i in range(n):
    engine.upsert([Document(id=f"{name}-{i}", title=f"{name} {i}", text=f"Report {i} from writer {name}. It rained.")])
print("done", name)
"""


def _doc(doc_id: str) -> Document:
    return Document(id=doc_id, title=doc_id, text=f"{doc_id} says the harbour opened in 1932.")


def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    folder = tmp_path / "index"
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(folder), name, "12"], stdout=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    for w in writers:
        out, _ = w.communicate(timeout=600)
        assert w.returncode == 0 and out.strip().startswith("done")
    index = CorpusIndex.load(folder)
    assert sorted(index.documents) == sorted(f"{n}-{i}" for n in "ab" for i in range(12))
    assert index.generation >= 24  # every write was its own commit (merges add their own), none overwrote another
    assert not list(folder.glob(".tmp-*"))


def test_a_second_engine_serves_another_processs_commit_without_a_restart(tmp_path, embedder):
    folder = tmp_path / "index"
    writer = Engine(make_settings(folder), embedder)
    writer.reload(create=True)
    writer.upsert([_doc("first")])
    reader = Engine(make_settings(folder), embedder)  # another worker: loaded before the next commit
    reader.reload()
    assert sorted(reader.snapshot.documents) == ["first"]
    writer.upsert([_doc("second")])
    deadline = time.monotonic() + 60
    while "second" not in reader.snapshot.documents and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(reader.snapshot.documents) == ["first", "second"]
    # and a write through the second engine keeps the first engine's commit
    reader.upsert([_doc("third")])
    assert sorted(CorpusIndex.load(folder).documents) == ["first", "second", "third"]


def test_a_watching_engine_is_current_before_any_request(tmp_path, embedder):
    folder = tmp_path / "index"
    writer = Engine(make_settings(folder), embedder)
    writer.reload(create=True)
    writer.upsert([_doc("first")])
    idle = Engine(make_settings(folder), embedder)  # a service worker that gets no request meanwhile
    idle.reload()
    idle.watch_commits()
    try:
        writer.upsert([_doc("second")])
        deadline = time.monotonic() + 60
        while idle.ready and "second" not in idle._snapshot.documents and time.monotonic() < deadline:
            time.sleep(0.1)  # (reads _snapshot: a read through .snapshot would itself look for commits)
        assert sorted(idle._snapshot.documents) == ["first", "second"]
    finally:
        idle.stop_watching()


def test_a_waiting_writer_gives_up_with_a_clear_error(tmp_path):
    folder = tmp_path / "index"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_lock(folder):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(30)
    try:
        with pytest.raises(IndexBusy, match="write.lock"), write_lock(folder, timeout=0.3):
            pass
    finally:
        release.set()
        thread.join()
    with write_lock(folder, timeout=5):  # free again
        pass


def test_a_garbled_current_is_refused_with_the_way_back_and_nothing_is_deleted(tmp_path, embedder, monkeypatch):
    from rag.store import commit

    monkeypatch.setattr(commit, "KEEP_SECONDS", 0.0)  # keep only the live commit and the two before it
    folder = tmp_path / "index"
    engine = Engine(make_settings(folder), embedder)
    engine.reload(create=True)
    for name in ("one", "two", "three", "four"):
        engine.upsert([_doc(name)])
    gens = sorted(p.name for p in folder.glob("gen-*"))
    assert len(gens) == 1 + KEEP_GENERATIONS  # the live one and the two before it
    (folder / CURRENT).write_text("\x00garbage\n")
    with pytest.raises(IndexCorrupt, match=f"echo {gens[-1]} >"):
        CorpusIndex.load(folder)
    fresh = Engine(make_settings(folder), embedder)
    fresh.reload()
    assert not fresh.ready and "not a generation" in (fresh.load_error or "")
    with pytest.raises(Exception, match="not a generation"):
        fresh.upsert([_doc("five")])
    assert sorted(p.name for p in folder.glob("gen-*")) == gens  # nothing was deleted or started empty
    (folder / CURRENT).write_text(gens[-1] + "\n")  # the way back the message gives
    assert sorted(CorpusIndex.load(folder).documents) == ["four", "one", "three", "two"]


def test_a_rebuild_builds_beside_the_live_index_and_a_failed_one_leaves_it_live(tmp_path, embedder, monkeypatch):
    from rag.store import commit

    folder = tmp_path / "index"
    engine = Engine(make_settings(folder), embedder)
    engine.reload(create=True)
    engine.upsert([_doc("old")])

    def crash(*args):
        raise OSError("disk gone")  # the rebuild dies after writing its segment, before the commit

    with monkeypatch.context() as m:
        m.setattr(commit, "write_commit", crash)
        with pytest.raises(OSError, match="disk gone"):
            Engine(make_settings(folder), embedder).write([_doc("new")], (), fresh=True)
    assert sorted(CorpusIndex.load(folder).documents) == ["old"]  # still live

    (folder / CURRENT).write_text("garbage\n")  # a rebuild is also the way out of a garbled CURRENT
    rebuilt = Engine(make_settings(folder), embedder)
    rebuilt.write([_doc("new")], (), fresh=True)
    assert sorted(CorpusIndex.load(folder).documents) == ["new"]
    assert len(list(folder.glob("gen-*"))) == 2  # the old generation is kept beside the new one
    assert not list(folder.glob(".tmp-*"))  # the failed rebuild's leftovers were cleaned up


def test_a_garbled_current_seen_by_the_watcher_is_logged_once_and_serving_goes_on(tmp_path, embedder, caplog):
    folder = tmp_path / "index"
    engine = Engine(make_settings(folder), embedder)
    engine.reload(create=True)
    engine.upsert([_doc("first")])
    (folder / CURRENT).write_text("not a generation\n")
    for _ in range(3):
        engine._checked_at = 0.0  # as if a second had passed
        engine._notice_commits(engine._snapshot)
    warnings = [r for r in caplog.records if "CURRENT cannot be read" in r.getMessage()]
    assert len(warnings) == 1 and "gen-" in warnings[0].getMessage()
    assert sorted(engine._snapshot.documents) == ["first"]


def test_a_ray_rebuild_lands_as_an_ordinary_commit_under_the_write_lock(tmp_path, embedder):
    from rag.distributed.driver import _swap_in
    from rag.engine import model_record

    live, built = tmp_path / "index", tmp_path / ".index.rebuild"
    model = model_record(embedder)
    old, _ = CorpusIndex.empty(IndexSettings(), model).apply([_doc("old")], embedder=embedder)
    old.save(live)
    new, _ = CorpusIndex.empty(IndexSettings(), model).apply([_doc("new-a"), _doc("new-b")], embedder=embedder)
    new.save(built)
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:  # a concurrent writer (rag ingest) holding the live index's lock
        with write_lock(live):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    swapper = threading.Thread(target=lambda: (_swap_in(built, live), done.set()))
    swapper.start()
    time.sleep(0.5)
    assert not done.is_set()  # it waits for the lock: no half-swapped folder meanwhile
    assert sorted(CorpusIndex.load(live).documents) == ["old"]
    release.set()
    holder.join()
    swapper.join(60)
    assert done.is_set() and not built.exists()
    after = CorpusIndex.load(live)
    assert sorted(after.documents) == ["new-a", "new-b"] and after.generation > old.generation
