"""The segmented index (rag/store/): writes add a segment, merges join neighbours, a crash loses nothing acknowledged,
and an index of format 1 is read and upgraded."""

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
from rag.filters import Filters
from rag.retrieval import RetrievalSettings, retrieve
from rag.store import SEGMENTS, CorpusIndex, IndexSettings, merge, stored_checksums
from rag.types import Document
from tests.conftest import make_settings

WORDS = [
    "harbour",
    "river",
    "council",
    "budget",
    "winter",
    "salmon",
    "ferry",
    "bridge",
    "school",
    "market",
    "tower",
    "festival",
]


@pytest.fixture
def model(embedder):
    from rag.engine import model_record

    return model_record(embedder)


def _doc(i: int, extra: str = "") -> Document:
    rng = random.Random(i)
    body = " ".join(rng.choice(WORDS) for _ in range(30 + i % 17))
    return Document(id=f"d{i}", title=f"Report {i}", text=f"Report {i}: {body}. {extra}".strip())


def _ranking(index: CorpusIndex, embedder, query: str, fusion: str) -> list[tuple[str, float]]:
    hits = retrieve(index, query, embedder.encode_query(query), 8, RetrievalSettings(fusion=fusion))
    field = {"lexical": "lexical_score", "dense": "dense_score"}.get(fusion, "score")
    return [(h.chunk.chunk_id, round(float(getattr(h, field)), 4)) for h in hits]


def test_a_write_adds_one_segment_and_never_rewrites_the_others(tmp_path, embedder, model):
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([_doc(i) for i in range(6)], embedder=embedder)
    index.save(tmp_path)
    first = index.segments[0]
    mtime = (tmp_path / SEGMENTS / first.name / "vectors.npy").stat().st_mtime_ns
    index, report = index.apply([_doc(6)], embedder=embedder)
    index.save(tmp_path)
    assert [s.name for s in index.segments][0] == first.name and len(index.segments) == 2
    assert (tmp_path / SEGMENTS / first.name / "vectors.npy").stat().st_mtime_ns == mtime  # not rewritten
    assert report.chunks_embedded == len(index.segments[1].chunks)
    # A replace adds the new version's segment; the old version's is left as it was (d6 was alone: dropped).
    index, _ = index.apply([_doc(6, extra="It snowed.")], embedder=embedder)
    assert index.segments[0] is first and "snowed" in index.get("d6").text
    # A delete rebuilds nothing: the segment becomes a view of itself less d0, which the commit records.
    index, _ = index.apply((), ["d0"], embedder=embedder)
    assert "d0" not in index.documents and index.segments[0].name == first.name and len(index.segments) == 2
    assert index.segments[0].deleted == {"d0"} and index.segments[0].stored_vectors is first.stored_vectors
    index.save(tmp_path)
    assert (tmp_path / SEGMENTS / first.name / "vectors.npy").stat().st_mtime_ns == mtime
    commit = json.loads((tmp_path / (tmp_path / "CURRENT").read_text().strip() / "manifest.json").read_text())
    assert commit["segments"][0]["deleted"] == ["d0"] and commit["counts"]["documents"] == 6
    loaded = CorpusIndex.load(tmp_path)
    assert loaded.checksums == index.checksums and [c.key for c in loaded.chunks] == [c.key for c in index.chunks]
    assert stored_checksums(tmp_path) == index.checksums


def test_deleted_documents_are_never_found_and_the_rest_rank_as_a_fresh_index_of_them(tmp_path, embedder, model):
    docs = [_doc(i) for i in range(16)]
    index = CorpusIndex.empty(IndexSettings(), model)
    for cut in ((0, 7), (7, 16)):
        index, _ = index.apply(docs[cut[0] : cut[1]], embedder=embedder)
    marker = "Zanzibar lighthouse keeper"  # a phrase only the documents deleted below hold
    index, _ = index.apply([_doc(3, extra=marker), _doc(9, extra=marker)], embedder=embedder)
    index.save(tmp_path)
    assert {c.doc_id for c in _hits(index, embedder, marker)} >= {"d3", "d9"}
    before = dict(zip((c.key for c in index.chunks), index.vectors_at(np.arange(len(index.chunks))), strict=True))
    # d3 replaced (its old and new versions both held the marker: only the new one is kept), d9 deleted.
    index, _ = index.apply([_doc(3, extra="Plain words.")], ["d9", "d12"], embedder=embedder)
    index.save(tmp_path)
    # d3's first version and d9, d12 marked in the first two segments; the third lost both its documents: dropped
    assert [sorted(s.deleted) for s in index.segments] == [["d3"], ["d12", "d9"], []]
    dead = {c.key for s in index.segments if s.base is not None for c in s.base.chunks} - {c.key for c in index.chunks}
    assert len(dead) == sum(s.dead for s in index.segments) > 0
    # One index built from scratch over the live documents, with the same chunks and vectors (the int8 embedder's
    # vectors move a little with the batch a text is embedded in).
    live = [index.get(d) for d in sorted(index.documents)]
    rows = {c.key: row for row, c in enumerate(index.chunks)}
    prepared = {
        d.id: (
            [(c.start, c.end) for c in index.chunks_of(d.id)],
            index.vectors_at(np.array([rows[c.key] for c in index.chunks_of(d.id)])),
        )
        for d in live
    }
    fresh, _ = CorpusIndex.empty(IndexSettings(), model).apply(live, embedder=None, prepared=prepared)
    for snap in (index, CorpusIndex.load(tmp_path)):
        assert len(snap.chunks) == len(fresh.chunks) and snap.dense.size == snap.lexical.size == len(fresh.chunks)
        assert not {"d9", "d12"} & {c.doc_id for c in _hits(snap, embedder, marker, k=len(snap.chunks))}
        assert all(marker not in c.text for c in _hits(snap, embedder, marker, k=len(snap.chunks)))
        for query in ("harbour budget", "salmon ferry winter", marker, "Report 12 festival"):
            for fusion in ("lexical", "dense"):  # BM25 with the live chunks' statistics; FAISS skips the deleted
                got, want = _ranking(snap, embedder, query, fusion), _ranking(fresh, embedder, query, fusion)
                assert sorted(s for _, s in got) == pytest.approx(sorted(s for _, s in want), abs=1e-4), (query, fusion)
        for key in dead:
            with pytest.raises(KeyError):
                snap.row_of(key)
        # the vectors of live rows are the live chunks' own (the stored rows of deleted chunks are skipped)
        kept = [c.key for c in snap.chunks if c.key in before]
        got = snap.vectors_at(np.array([snap.row_of(k) for k in kept]))
        np.testing.assert_array_equal(got, np.stack([before[k] for k in kept]))
    # A filtered search (FAISS's selector for the filter and the one for the deleted rows together).
    for fusion in ("dense", "lexical", "rrf"):
        query = f"{marker} harbour ferry"
        found = retrieve(
            index,
            query,
            embedder.encode_query(query),
            50,
            RetrievalSettings(fusion=fusion),
            Filters(document_ids=("d0", "d3", "d5")),
        )
        assert found and {h.chunk.doc_id for h in found} <= {"d0", "d3", "d5"}
        assert not dead & {h.chunk.key for h in found} and all(marker not in h.chunk.text for h in found)


def test_a_merge_drops_deleted_rows_and_the_policy_rewrites_a_segment_with_many(tmp_path, embedder, model):
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([_doc(i) for i in range(8)], embedder=embedder)
    index, _ = index.apply([_doc(8)], ["d1"], embedder=embedder)
    assert merge.plan([s.size for s in index.segments], [s.dead for s in index.segments]) is None  # 1 of 8: kept
    index, _ = index.apply((), ["d2"], embedder=embedder)
    sizes, dead = [s.size for s in index.segments], [s.dead for s in index.segments]
    assert dead[0] == index.segments[0].base.size - sizes[0] > 0
    assert merge.plan(sizes, dead) == (0, 1)  # 2 of 8 documents' chunks: at least EXPUNGE_SHARE
    assert merge.plan([5] * 10, [3] + [0] * 9) == (0, 10)  # a due merge first (it drops them too)
    assert merge.plan_all([7], [1]) == (0, 1) and merge.plan_all([7], [0]) is None
    expunged = index.merged(0, 1)
    assert expunged.segments[0].base is None and expunged.segments[0].dead == 0
    assert expunged.checksums == index.checksums and [c.key for c in expunged.chunks] == [c.key for c in index.chunks]
    expunged.save(tmp_path)
    assert CorpusIndex.load(tmp_path).segments[0].deleted == frozenset()


def test_a_merge_is_called_off_when_one_of_its_segments_lost_a_document_meanwhile(tmp_path, embedder):
    folder = tmp_path / "index"
    engine = Engine(make_settings(folder), embedder)
    engine.reload(create=True)
    engine.background_merges = False
    engine.upsert([_doc(i) for i in range(4)])
    engine.upsert([_doc(4)])
    other = Engine(make_settings(folder), embedder)
    other.reload()
    other.background_merges = False
    other.delete(["d1"])  # a tombstone in the segment the stale snapshot below would merge
    assert not engine.merge_once(merge.plan_all)  # merged from the stale view, d1 would come back
    engine.reload()
    assert "d1" not in engine.snapshot.documents
    assert engine.merge_once(merge.plan_all)
    assert set(CorpusIndex.load(folder).documents) == {"d0", "d2", "d3", "d4"}


def _hits(index: CorpusIndex, embedder, query: str, k: int = 8):
    return [h.chunk for h in retrieve(index, query, embedder.encode_query(query), k, RetrievalSettings())]


def test_searching_several_segments_ranks_exactly_as_one_segment(embedder, model):
    docs = [_doc(i) for i in range(24)]
    many = CorpusIndex.empty(IndexSettings(), model)
    for cut in ((0, 5), (5, 6), (6, 11), (11, 12), (12, 24)):  # unequal: their own IDF and average length differ
        many, _ = many.apply(docs[cut[0] : cut[1]], embedder=embedder)
    one = many.merged(0, len(many.segments))  # the same chunks and vectors as one segment
    assert len(many.segments) == 5 and len(one.segments) == 1 and one.checksums == many.checksums
    for query in ("harbour budget", "salmon ferry winter", "Report 7 festival tower"):
        for fusion in ("lexical", "dense"):  # (fused ranks follow from these, up to float-rounding ties)
            got, want = _ranking(many, embedder, query, fusion), _ranking(one, embedder, query, fusion)
            assert [s for _, s in got] == [s for _, s in want], (query, fusion)
            assert sorted(got) == sorted(want)  # equal scores may come in another order (ties by key)
    # BM25 over the segments also equals one BM25 built from scratch over the same texts
    fresh, _ = CorpusIndex.empty(IndexSettings(), model).apply(docs, embedder=embedder)
    for query in ("harbour budget", "salmon ferry winter"):
        got, want = _ranking(many, embedder, query, "lexical"), _ranking(fresh, embedder, query, "lexical")
        assert sorted(s for _, s in got) == sorted(s for _, s in want)


def test_the_merge_policy_joins_ten_neighbours_of_one_size_tier():
    assert merge.plan([5] * 9) is None
    assert merge.plan([5] * 10) == (0, 10)
    assert merge.plan([50_000] + [5] * 12) == (1, 11)  # the small tail, not the big segment
    assert merge.plan([50_000] * 3 + [900] * 10) == (3, 13)
    assert merge.plan([1000, 5, 5]) is None
    assert merge.plan_all([3]) is None and merge.plan_all([3, 4]) == (0, 2)


def test_the_engine_merges_in_the_background_and_a_write_meanwhile_is_kept(tmp_path, embedder):
    folder = tmp_path / "index"
    engine = Engine(make_settings(folder), embedder)
    engine.reload(create=True)
    engine.background_merges = False
    for i in range(12):
        engine.upsert([_doc(i)])
    assert len(engine.snapshot.segments) == 12
    assert engine.merge_once()  # the first ten one-document segments become one
    assert [s.size for s in engine.snapshot.segments][1:] == [engine.snapshot.segments[i].size for i in (1, 2)]
    assert len(engine.snapshot.segments) == 3
    # A merge planned on a snapshot whose segments a write has replaced meanwhile gives up, losing nothing.
    other = Engine(make_settings(folder), embedder)
    other.reload()
    other.background_merges = False
    other.upsert([_doc(10, extra="It snowed.")])  # rewrites the segment that holds d10
    assert not engine.merge_once(merge.plan_all)
    engine.reload()
    assert "snowed" in engine.snapshot.get("d10").text and len(engine.snapshot.documents) == 12
    assert engine.merge_once(merge.plan_all)
    final = CorpusIndex.load(folder)
    assert len(final.segments) == 1 and set(final.documents) == {f"d{i}" for i in range(12)}
    kept = {s["name"] for g in folder.glob("gen-*") for s in json.loads((g / "manifest.json").read_text())["segments"]}
    assert {p.name for p in (folder / SEGMENTS).iterdir()} == kept  # what no kept commit lists is gone


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
