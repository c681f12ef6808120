"""Filters (rag/filters.py): validated once, matched the same way everywhere, and applied inside retrieval, so
that the filtered top k is the brute-force top k over the kept documents for every index kind and fusion.
The same filters through the HTTP routes and the CLI flags: tests/test_filters_http_cli.py."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag import retrieval
from rag.dense import DenseIndex
from rag.errors import ValidationError
from rag.filters import Filters, parse_meta, select, select_documents
from rag.retrieval import RetrievalSettings, retrieve
from rag.shards import ShardedIndex, split_index
from rag.store import CorpusIndex, IndexSettings
from rag.types import Document

DIM = 16
PUBLISHERS = ["The Straits Times", "Reuters", "CNA"]
SECTIONS = ["asia", "world", "business"]
DATES = [dt.date(2024, 10, 1) + dt.timedelta(days=9 * i) for i in range(12)]


# ------------------------------------------------------------------------------------------ the filter itself


def test_dates_are_parsed_and_a_reversed_range_names_both_ends():
    f = Filters(document_ids=["a", "b", "a"], published_from="2024-11-01", published_to="2024-11-30T23:59:00Z")
    assert f.document_ids == ("a", "b")
    assert (f.published_from, f.published_to) == (dt.date(2024, 11, 1), dt.date(2024, 11, 30))
    with pytest.raises(ValidationError, match=r"published_from \(2024-12-01\) is after published_to \(2024-11-30\)"):
        Filters(published_from="2024-12-01", published_to=dt.date(2024, 11, 30))
    with pytest.raises(ValidationError, match=r"published_to must be an ISO date \(YYYY-MM-DD\), got '30/11/2024'"):
        Filters(published_to="30/11/2024")
    with pytest.raises(ValidationError, match="source must not be empty"):
        Filters(source="  ")
    assert Filters().is_empty and not Filters(meta={"section": "asia"}).is_empty
    assert Filters(source="CNA") == Filters(source="CNA") and hash(Filters(source="cna").key) == hash(
        Filters(source="CNA ").key
    )


def test_parse_meta_reads_key_value_pairs():
    assert parse_meta(["section=asia", "q=a=b"]) == {"section": "asia", "q": "a=b"}
    with pytest.raises(ValidationError, match="--meta must be key=value, got 'section'"):
        parse_meta(["section"])


def test_a_document_matches_on_id_date_publisher_and_meta():
    doc = Document(
        "d1", "T", "text", published="28 Nov 2024", meta={"source": "The Straits Times", "issue": 7, "section": "asia"}
    )
    assert Filters(document_ids=("x", "d1")).matches(doc)
    assert not Filters(document_ids=("x",)).matches(doc)
    assert Filters(published_from="2024-11-28", published_to="2024-11-28").matches(doc)  # a printed date is read
    assert not Filters(published_from="2024-11-29").matches(doc)
    assert Filters(source="the straits times").matches(doc) and not Filters(source="Reuters").matches(doc)
    assert Filters(meta={"issue": "7", "section": "asia"}).matches(doc)  # string forms compared
    assert not Filters(meta={"issue": "8"}).matches(doc) and not Filters(meta={"missing": "7"}).matches(doc)
    undated = Document("d2", "T", "text", published="soon")
    assert not Filters(published_to="2030-01-01").matches(undated)  # no date: outside every date range
    assert Filters(source="Reuters").matches(undated) is False  # no publisher: matches no publisher


# ------------------------------------------------------------------------------------------ a tiny corpus


def _corpus(seed: int = 5) -> tuple[list[Document], dict[str, tuple[list[tuple[int, int]], np.ndarray]]]:
    """90 documents of 3 chunks each. Every chunk has its own length, so no two chunks tie on BM25; dates come
    ISO, printed, unparseable or absent; vectors are random, so no two tie on the dense score either."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i:03d}" for i in range(150)]
    docs, prepared = [], {}
    lengths = rng.permutation(np.arange(4, 4 + 270))
    for i in range(90):
        parts = [" ".join(rng.choice(vocab, int(lengths[3 * i + j]))) + "." for j in range(3)]
        text = "\n\n".join(parts)
        spans, at = [], 0
        for part in parts:
            spans.append((at, at + len(part)))
            at += len(part) + 2
        day = DATES[i % len(DATES)]
        published = [day.isoformat(), day.strftime("%d %b %Y"), "soon", None][i % 4]
        meta = {"section": SECTIONS[i % 3], "issue": i % 5}
        if i % 7:
            meta["source"] = PUBLISHERS[i % len(PUBLISHERS)]
        docs.append(Document(f"doc{i:02d}", f"t{i:03d}", text, published=published, meta=meta))
        vectors = rng.standard_normal((3, DIM)).astype(np.float32)
        prepared[docs[-1].id] = (spans, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    return docs, prepared


def _index(kind: str = "flat") -> CorpusIndex:
    docs, prepared = _corpus()
    empty = CorpusIndex.empty(IndexSettings(dense_kind=kind), {"id": "fake", "checksum": "fake", "dim": DIM})
    index, _ = empty.apply(docs, embedder=None, prepared=prepared)
    return index


@pytest.fixture(scope="module")
def flat_index() -> CorpusIndex:
    return _index("flat")


@pytest.fixture(scope="module")
def sharded_index(flat_index, tmp_path_factory) -> ShardedIndex:
    folder = tmp_path_factory.mktemp("sharded")
    split_index(flat_index, 3, folder)
    return ShardedIndex.load(folder)


def kept_by_definition(docs, f: Filters) -> set[str]:
    """The filter's meaning, written out plainly (not through the code under test)."""
    out = set()
    for d in docs:
        if f.document_ids and d.id not in f.document_ids:
            continue
        if f.published_from or f.published_to:
            day = None
            if d.published and d.published != "soon":
                shape = "%Y-%m-%d" if d.published[:4].isdigit() else "%d %b %Y"
                day = dt.datetime.strptime(d.published, shape).date()
            if day is None or day < (f.published_from or day) or day > (f.published_to or day):
                continue
        if f.source and str(d.meta.get("source", "")).lower() != f.source.lower():
            continue
        if any(str(d.meta.get(k)) != v for k, v in f.meta.items()):
            continue
        out.add(d.id)
    return out


ids = [f"doc{i:02d}" for i in range(90)]


@st.composite
def filters_strategy(draw) -> Filters:
    start, end = sorted([draw(st.sampled_from(DATES)), draw(st.sampled_from(DATES))])
    return Filters(
        document_ids=draw(st.one_of(st.just(()), st.lists(st.sampled_from([*ids, "absent"]), max_size=40))),
        published_from=draw(st.sampled_from([None, start])),
        published_to=draw(st.sampled_from([None, end])),
        source=draw(st.one_of(st.none(), st.sampled_from([*PUBLISHERS, "reuters", "Nobody"]))),
        meta=draw(st.sampled_from([{}, {"section": "asia"}, {"section": "world"}, {"issue": "2"}])),
    )


def expected_hits(index: CorpusIndex, query: str, vector: np.ndarray, k: int, rs: RetrievalSettings, kept: set[str]):
    """Brute force: each retriever's full unfiltered ranking (every chunk scored), cut to the kept documents,
    its best ``depth`` taken, fused as retrieve() fuses. Returns [(key, score)]."""
    depth = max(k, rs.depth)
    keep = {c.key for c in index.chunks if c.doc_id in kept}
    dense_keys, dense_scores = index.dense.search(vector, index.dense.size)
    dense = [(int(key), float(s)) for key, s in zip(dense_keys, dense_scores, strict=True) if key in keep][:depth]
    rows, lex_scores = index.lexical.search(query, index.lexical.size)
    lexical = [(index.chunks[r].key, float(s)) for r, s in zip(rows, lex_scores, strict=True)]
    lexical = [(key, s) for key, s in lexical if key in keep][:depth]
    if rs.fusion == "dense":
        fused = dict(dense)
    elif rs.fusion == "lexical":
        fused = dict(lexical)
    else:
        fused = {}
        for weight, ranking in ((rs.dense_weight, dense), (rs.lexical_weight, lexical)):
            for rank, (key, _) in enumerate(ranking, 1):
                fused[key] = fused.get(key, 0.0) + weight / (rs.rrf_k + rank)
    order = sorted(fused, key=lambda key: (-fused[key], key))[:k]
    return [(key, fused[key]) for key in order]


def _check_against_brute_force(index, f, query_seed, k, fusion, docs):
    rng = np.random.default_rng(query_seed)
    vector = rng.standard_normal((1, DIM)).astype(np.float32)
    query = " ".join(f"w{i:03d}" for i in rng.choice(150, 3))
    rs = RetrievalSettings(fusion=fusion)
    kept = kept_by_definition(docs, f)
    assert set(select(index, f).documents) == kept
    hits = retrieve(index, query, vector, k, rs, filters=f)
    assert {h.chunk.doc_id for h in hits} <= kept
    want = expected_hits(index, query, vector, k, rs, kept)
    assert [h.chunk.key for h in hits] == [key for key, _ in want]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in want], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fusion", ["rrf", "dense", "lexical"])
@pytest.mark.parametrize(
    ("exact_rows", "overfetch_share"),
    [(0, 2.0), (0, 0.0), (10**9, 2.0)],
    ids=["faiss-selector", "deeper-unfiltered", "exact-product"],
)
@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=filters_strategy(), query_seed=st.integers(0, 10**6), k=st.integers(1, 60))
def test_filtered_top_k_is_brute_force_over_the_kept_documents(
    flat_index, monkeypatch, fusion, exact_rows, overfetch_share, f, query_seed, k
):
    # Each way of searching a selection, forced for every size of selection.
    monkeypatch.setattr(retrieval, "EXACT_ROWS", exact_rows)
    monkeypatch.setattr(retrieval, "OVERFETCH_SHARE", overfetch_share)
    _check_against_brute_force(flat_index, f, query_seed, k, fusion, _corpus()[0])


@pytest.mark.parametrize("fusion", ["rrf", "dense", "lexical"])
@settings(max_examples=30, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(f=filters_strategy(), query_seed=st.integers(0, 10**6), k=st.integers(1, 60))
def test_a_sharded_index_filters_inside_each_shard(sharded_index, fusion, f, query_seed, k):
    _check_against_brute_force(sharded_index, f, query_seed, k, fusion, _corpus()[0])


@pytest.mark.parametrize(
    ("kind", "params"),
    [("flat", {}), ("hnsw", {"ef_search": 1000}), ("ivf-sq8", {"nlist": 16, "nprobe": 16})],
)
def test_each_faiss_kind_searches_only_the_given_keys(kind, params):
    # Parameters that make each kind search (about) everything, so that the test sees only what the id selector
    # does. The brute force is the exact product, or for IVF-SQ8 its own full ranking (its scores are quantised).
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((2000, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = rng.permutation(10_000)[:2000].astype(np.int64) + 7
    index = DenseIndex.build(vectors, keys, kind=kind, **params)
    assert index.kind == kind
    for size in (1, 5, 60, 700, 1999):
        query = rng.standard_normal((1, DIM)).astype(np.float32)
        allowed = rng.choice(keys, size, replace=False)
        if kind == "ivf-sq8":
            full_keys, full_scores = index.search(query, 2000)
            assert len(full_keys) == 2000
        else:
            exact = vectors @ query[0]
            order = np.argsort(-exact)
            full_keys, full_scores = keys[order], exact[order]
        inside = np.isin(full_keys, allowed)
        want_keys, want_scores = full_keys[inside][:50], full_scores[inside][:50]
        got_keys, got_scores = index.search(query, 50, keys=allowed)
        np.testing.assert_allclose(got_scores, want_scores, rtol=1e-6, atol=1e-6)
        assert set(got_keys) <= set(allowed.tolist())
        clear = want_scores > (want_scores[-1] + 1e-6)  # above a possible tie at the cut
        assert set(want_keys[clear].tolist()) <= set(got_keys.tolist())


@pytest.mark.parametrize("kind", ["hnsw", "ivf-sq8"])
def test_approximate_kinds_return_the_best_of_a_small_selection_and_never_too_few(kind, monkeypatch):
    index = _index("flat")
    keys = np.array([c.key for c in index.chunks], dtype=np.int64)
    params = {"nlist": 16, "nprobe": 1} if kind == "ivf-sq8" else {"ef_search": 16}  # coarse on purpose
    index.dense = DenseIndex.build(index.vectors, keys, kind=kind, **params)
    assert index.dense.kind == kind
    docs = _corpus()[0]
    rng = np.random.default_rng(2)
    for f in (Filters(document_ids=("doc03", "doc40")), Filters(meta={"section": "asia"}), Filters(source="CNA")):
        vector = rng.standard_normal((1, DIM)).astype(np.float32)
        kept = kept_by_definition(docs, f)
        rows = [i for i, c in enumerate(index.chunks) if c.doc_id in kept]
        exact = index.vectors[rows] @ vector[0]
        best = [index.chunks[rows[i]].key for i in np.argsort(-exact)[:20]]
        hits = retrieve(index, "w001", vector, 20, RetrievalSettings(fusion="dense"), filters=f)
        assert [h.chunk.key for h in hits] == best  # a selection this small is searched exactly
        monkeypatch.setattr(retrieval, "EXACT_ROWS", 0)  # through FAISS: approximate, but never short
        hits = retrieve(index, "w001", vector, 20, RetrievalSettings(fusion="dense"), filters=f)
        monkeypatch.undo()
        assert len(hits) == len(best) and {h.chunk.doc_id for h in hits} <= kept


def test_selections_are_cached_per_snapshot_and_documents_filter_the_same_way(flat_index):
    f = Filters(source="reuters", published_from="2024-10-15")
    first = select(flat_index, f)
    assert select(flat_index, Filters(source="Reuters", published_from=dt.date(2024, 10, 15))) is first
    assert [d.id for d in select_documents(flat_index, f)] == list(first.documents)
    assert set(first.documents) == kept_by_definition(_corpus()[0], f) and first.documents
    assert len(select_documents(flat_index, None)) == 90
    assert retrieve(flat_index, "w001", np.ones((1, DIM), np.float32), 5, filters=Filters(document_ids=("x",))) == []
