"""Sharded indexes (rag/shards.py): the same documents and chunks as the unsharded index, FAISS results merged
exactly, BM25 merged with a global IDF, checksums checked at load, and served read-only."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rag.engine import Engine
from rag.errors import IndexCorrupt, ReadOnlyIndex
from rag.lexical import BM25Index
from rag.shards import ShardedBM25, ShardedIndex, read_manifest, shard_of, split_index
from rag.store import CorpusIndex
from rag.types import Document
from service.main import create_app
from tests.conftest import make_settings

ARTICLES = [
    ("harbour", "Harbour expansion", "The council approved the harbour expansion. Work starts in May."),
    ("rivers", "Rivers of the north", "The Tana river forms part of the border. Salmon fishing is regulated."),
    ("solar", "Solar output", "Solar output rose by a third last year, the grid operator said."),
    ("rail", "Rail strike", "Train drivers walked out on Tuesday. Talks with the rail company resume Friday."),
    ("budget", "City budget", "The city budget for schools grew while the harbour fund shrank."),
    ("floods", "Spring floods", "Spring floods closed the river road; the harbour stayed open."),
]


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory, embedder, seed_text) -> CorpusIndex:
    docs = [Document(id=i, title=t, text=x) for i, t, x in ARTICLES] + [Document("seed", "Seed", seed_text)]
    index, _ = CorpusIndex.empty(make_settings(tmp_path_factory.mktemp("x")).index_settings(), _model(embedder)).apply(
        docs, embedder=embedder
    )
    return index


def _model(embedder) -> dict:
    from rag.engine import model_record

    return model_record(embedder)


def test_split_keeps_every_document_and_chunk_and_lists_shard_checksums(unsharded, tmp_path):
    manifest = split_index(unsharded, 3, tmp_path / "s")
    assert [s["name"] for s in manifest["shards"]] == ["shard-000", "shard-001", "shard-002"]
    assert all(len(s["manifest_sha256"]) == 64 for s in manifest["shards"])
    sharded = ShardedIndex.load(tmp_path / "s")
    assert set(sharded.documents) == set(unsharded.documents)
    assert sorted((c.chunk_id, c.start, c.end) for c in sharded.chunks) == sorted(
        (c.chunk_id, c.start, c.end) for c in unsharded.chunks
    )
    assert len({c.key for c in sharded.chunks}) == len(sharded.chunks)  # keys unique across shards
    for shard in sharded.shards:
        assert all(shard_of(d, 3) == sharded.shards.index(shard) for d in shard.documents)


def test_dense_results_merged_across_shards_equal_the_unsharded_search(unsharded, tmp_path, embedder):
    split_index(unsharded, 3, tmp_path / "s")
    sharded = ShardedIndex.load(tmp_path / "s")
    assert sharded.dense is not None and unsharded.dense is not None
    for query in ("when does harbour work start", "salmon fishing rules", "who walked out"):
        vector = embedder.encode_query(query)
        k1, s1 = unsharded.dense.search(vector, 5)
        k2, s2 = sharded.dense.search(vector, 5)
        assert [unsharded.chunk(int(k)).chunk_id for k in k1] == [sharded.chunk(int(k)).chunk_id for k in k2]
        np.testing.assert_allclose(s1, s2, rtol=1e-6)


def test_sharded_bm25_with_global_statistics_equals_one_index():
    # Texts of 1 to 12 terms, repeated terms included, in parts of unequal sizes: each part's IDF and average
    # length differ from the whole's, and the global statistics correct both.
    rng = np.random.default_rng(3)
    vocab = [f"w{i:03d}" for i in range(40)]
    texts = [" ".join(rng.choice(vocab, int(rng.integers(1, 13)), replace=True)) for _ in range(90)]
    whole = BM25Index().build(texts)
    cuts = [0, 20, 50, 90]  # unequal shard sizes: per-shard IDFs differ
    parts = [BM25Index().build(texts[a:b]) for a, b in zip(cuts, cuts[1:], strict=False)]
    merged = ShardedBM25(parts, cuts[:-1])
    naive = ShardedBM25(parts, cuts[:-1], global_stats=False)
    for query in ("w001 w007", "w013 w021 w039", "w005"):
        rows, scores = whole.search(query, 90)
        expected = dict(zip(rows.tolist(), scores.tolist(), strict=True))
        rows2, scores2 = merged.search(query, 90)
        got = dict(zip(rows2.tolist(), scores2.tolist(), strict=True))
        assert set(got) == set(expected)
        np.testing.assert_allclose([got[r] for r in expected], list(expected.values()), rtol=1e-5)
        rows3, scores3 = naive.search(query, 90)
        raw = dict(zip(rows3.tolist(), scores3.tolist(), strict=True))
        assert max(abs(raw[r] - expected[r]) for r in expected) > 1e-3  # without the correction they differ


def test_a_shard_rewritten_behind_the_manifest_is_refused(unsharded, tmp_path):
    split_index(unsharded, 2, tmp_path / "s")
    manifest_path = tmp_path / "s" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["shards"][1]["manifest_sha256"] = "0" * 64
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IndexCorrupt, match="shard-001"):
        ShardedIndex.load(tmp_path / "s")
    assert read_manifest(tmp_path / "s")["partition"]["count"] == 2


def test_the_service_serves_a_sharded_index_read_only(unsharded, tmp_path, embedder, heuristic_pipeline):
    split_index(unsharded, 2, tmp_path / "s")
    settings = make_settings(tmp_path / "s", reader="heuristic", allow_open_writes=True)
    engine = Engine(settings, embedder, heuristic_pipeline)
    engine.reload()
    assert engine.ready and isinstance(engine.snapshot, ShardedIndex)
    with pytest.raises(ReadOnlyIndex):
        engine.delete(["rail"])
    client = TestClient(create_app(settings, engine=engine))
    hits = client.get("/search", params={"q": "train drivers walked out", "k": 3}).json()
    assert hits["passages"][0]["document_id"] == "rail"
    assert client.get("/documents").json()["documents"][0]["id"]
    assert client.get("/documents/rail").status_code == 200
    response = client.post("/documents", json={"documents": [{"title": "x", "text": "y"}]})
    assert response.status_code == 409 and "sharded" in response.json()["error"]["message"]
