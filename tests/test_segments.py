"""The segmented index (rag/store/segment.py, merge.py, search.py): writes add a segment, deletes leave
tombstones, merges join neighbours, and several segments rank exactly as one. Commits on disk (crashes,
formats, durability) are in tests/test_commit.py."""

from __future__ import annotations

import json
import random

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
