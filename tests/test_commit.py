"""Commits on disk (rag/store/commit.py, and CorpusIndex.load's format check): a crash at any moment loses nothing
acknowledged, indexes of formats 1 and 2 are read and upgraded by the next write, a future format is refused, and
every rename is durable before CURRENT moves."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rag.engine import Engine
from rag.store import SEGMENTS, CorpusIndex, IndexSettings
from tests.conftest import make_settings
from tests.test_segments import _doc, _ranking


@pytest.fixture
def model(embedder):
    from rag.engine import model_record

    return model_record(embedder)


KILLED_WRITER = """
import sys
from rag.engine import Engine
from rag.filters import Filters
from rag.settings import Settings
from rag.types import Document
folder, first = sys.argv[1], int(sys.argv[2])
engine = Engine.open(Settings(_env_file=None, index_dir=folder), create=True, read=False)
i = first
while True:
    engine.upsert([Document(id=f"k{i}", title=f"k {i}", text=f"Note {i}: the ferry left at {i % 24} o'clock.")])
    print(i, flush=True)  # acknowledged: committed
    i += 1
"""


def test_sigkill_at_random_moments_of_writes_and_merges_loses_nothing_acknowledged(tmp_path):
    folder = tmp_path / "index"
    rng = random.Random(5)
    acknowledged: set[str] = set()
    first = 0
    for _round in range(6):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED_WRITER, str(folder), str(first)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        wanted = rng.randint(2, 7)
        for _ in range(wanted):
            line = proc.stdout.readline()
            if not line:
                break
            acknowledged.add(f"k{int(line)}")
            first = int(line) + 1
        time.sleep(rng.uniform(0, 0.05))  # somewhere inside the next write or a background merge
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        first += 1  # a write may have committed unacknowledged: never reuse its id
        index = CorpusIndex.load(folder)  # the previous or the new commit, whole
        assert acknowledged <= set(index.documents)
        for doc_id in index.documents:
            assert index.get(doc_id).text.startswith(f"Note {doc_id[1:]}:")
    assert len(acknowledged) >= 12


def _as_format_1(index: CorpusIndex, folder: Path) -> None:
    """Lay ``index`` (one segment, saved in ``folder``) out as format 1 wrote it: one generation folder holding
    every file, its manifest listing the documents and the files."""
    from rag.store.files import sha256

    [segment] = index.segments
    staged = folder.parent / "format-1"
    shutil.copytree(folder / SEGMENTS / segment.name, staged)
    shutil.rmtree(folder)
    gen = folder / "gen-000003"
    folder.mkdir()
    shutil.move(str(staged), gen)
    inner = json.loads((gen / "segment.json").read_text())
    (gen / "segment.json").unlink()
    (gen / "bm25" / "lengths.npy").unlink()  # format 1 did not store token counts
    files = sorted(p for p in gen.rglob("*") if p.is_file())
    manifest = {
        "format_version": 1,
        "generation": 3,
        "model": index.model,
        "settings": index.settings.as_dict(),
        "dense_index": inner["dense_index"],
        "counts": {"documents": len(index.documents), "chunks": len(index.chunks)},
        "next_key": index.next_key,
        "documents": inner["documents"],
        "files": {str(p.relative_to(gen)): sha256(p) for p in files},
        "file_bytes": {str(p.relative_to(gen)): p.stat().st_size for p in files},
    }
    (gen / "manifest.json").write_text(json.dumps(manifest))
    (folder / "CURRENT").write_text("gen-000003\n")


def test_an_index_of_format_1_is_read_and_the_next_write_upgrades_it(tmp_path, embedder, model):
    folder = tmp_path / "index"
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([_doc(i) for i in range(5)], embedder=embedder)
    index.save(folder)
    _as_format_1(index, folder)
    old = CorpusIndex.load(folder, settings=IndexSettings(), model=model)
    assert old.checksums == index.checksums and np.array_equal(old.vectors, index.vectors)
    assert _ranking(old, embedder, "harbour budget", "rrf") == _ranking(index, embedder, "harbour budget", "rrf")
    engine = Engine(make_settings(folder), embedder)
    engine.reload()
    engine.upsert([_doc(5)])
    manifest = json.loads((folder / (folder / "CURRENT").read_text().strip() / "manifest.json").read_text())
    assert manifest["format_version"] == 3 and manifest["generation"] == 4
    again = CorpusIndex.load(folder)
    assert set(again.documents) == {f"d{i}" for i in range(6)}


def test_an_index_of_format_2_is_read_as_it_is_and_a_delete_writes_format_3(tmp_path, embedder, model):
    folder = tmp_path / "index"
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([_doc(i) for i in range(5)], embedder=embedder)
    commit = index.save(folder)
    manifest = json.loads((commit / "manifest.json").read_text())
    for entry in manifest["segments"]:
        del entry["deleted"]  # format 2 had no tombstones
    (commit / "manifest.json").write_text(json.dumps({**manifest, "format_version": 2}))
    old = CorpusIndex.load(folder)
    assert old.checksums == index.checksums
    engine = Engine(make_settings(folder), embedder)
    engine.reload()
    engine.delete(["d2"])
    manifest = json.loads((folder / (folder / "CURRENT").read_text().strip() / "manifest.json").read_text())
    assert manifest["format_version"] == 3 and manifest["segments"][0]["deleted"] == ["d2"]
    assert set(CorpusIndex.load(folder).documents) == {"d0", "d1", "d3", "d4"}


def test_a_format_from_the_future_is_refused_with_the_rebuild_command(tmp_path, embedder, model):
    from rag.errors import IndexMismatch

    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([_doc(1)], embedder=embedder)
    commit = index.save(tmp_path)
    manifest = json.loads((commit / "manifest.json").read_text())
    (commit / "manifest.json").write_text(json.dumps({**manifest, "format_version": 9}))
    with pytest.raises(IndexMismatch, match="rag ingest .* --rebuild"):
        CorpusIndex.load(tmp_path)


def test_every_rename_is_made_durable_before_current_moves(tmp_path, embedder, model, monkeypatch):
    """An fsync audit: each rename into a folder is followed by an fsync of that folder before the next switch
    of CURRENT, so a power loss cannot leave a durable CURRENT naming a commit or segment whose entry was lost."""
    import os

    events: list[tuple[str, Path]] = []
    folders: dict[int, Path] = {}
    real_open, real_fsync, real_rename, real_replace = os.open, os.fsync, os.rename, os.replace

    def open_(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        folders[fd] = Path(path).resolve()
        return fd

    def fsync_(fd):
        if fd in folders and folders[fd].is_dir():
            events.append(("sync", folders[fd]))
        return real_fsync(fd)

    def moved(real):
        def move(src, dst, *args, **kwargs):
            events.append(("move", Path(dst).resolve()))
            return real(src, dst, *args, **kwargs)

        return move

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "fsync", fsync_)
    monkeypatch.setattr(os, "rename", moved(real_rename))
    monkeypatch.setattr(os, "replace", moved(real_replace))
    index = CorpusIndex.empty(IndexSettings(), model)
    for batch, deletes in (([_doc(1), _doc(2)], []), ([_doc(3)], []), ([_doc(1, "changed")], []), ([], ["d2"])):
        index, _ = index.apply(batch, deletes, embedder=embedder)
        index.save(tmp_path)

    switches = [i for i, (kind, path) in enumerate(events) if kind == "move" and path.name == "CURRENT"]
    assert len(switches) == 4
    for i, (kind, path) in enumerate(events):
        if kind != "move":
            continue
        switch = next(s for s in switches if s >= i)
        if path.name != "CURRENT":  # a segment or commit folder: its parent is synced before CURRENT moves
            assert ("sync", path.parent) in events[i + 1 : switch], f"{path} renamed without syncing its folder"
        else:  # CURRENT itself: synced before the write returns
            assert ("sync", path.parent) in events[i + 1 :]
