"""The router over shards served by other processes (rag/distributed/routing.py), with the shards in this
process (``LocalShard``): the same rankings, answers, documents and pages as the one-process sharded index, and
writes that go to the shard that owns the document and keep the folder loadable as one sharded index. The same
code over Ray Serve replicas: tests/test_ray_serve.py."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from rag.distributed.routing import LocalShard, RoutedIndex
from rag.distributed.shard_server import ShardServer
from rag.engine import Engine, model_record
from rag.errors import ReadOnlyIndex
from rag.filters import Filters
from rag.pipeline import QAPipeline
from rag.retrieval import RetrievalSettings, retrieve
from rag.shards import ShardedIndex, shard_name, shard_of, split_index
from rag.store import CorpusIndex
from rag.store.search import as_multi, best_by_score
from rag.types import Document
from service.main import create_app
from tests.conftest import make_settings
from tests.test_shards import ARTICLES

COUNT = 3
QUESTIONS = [
    "when does harbour work start",
    "salmon fishing rules on the Tana river",
    "who walked out on Tuesday",
    "how much did solar output rise",
    "what happened to the harbour fund",
    "Which road did the spring floods close?",
    "How many US troops are stationed in South Korea?",
    "What did the grid operator say?",
    "troops alliance Korea defence cost",
    "zzzz unknownword",
]


def _extra_documents() -> list[Document]:
    """Enough documents that every shard holds several, with shared and shard-only terms."""
    rng = np.random.default_rng(5)
    words = ["harbour", "river", "budget", "rail", "solar", "council", "floods", "schools", "salmon", "grid"]
    words += ["drivers", "talks", "border"]
    docs = []
    for i in range(30):
        sentences = [" ".join(rng.choice(words, 8)) + f" item{i % 7}." for _ in range(4)]
        docs.append(
            Document(
                id=f"extra-{i:02d}",
                title=f"Extra {i}",
                text=" ".join(sentences),
                published="2024-11-0" + str(1 + i % 9),
            )
        )
    return docs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, embedder, seed_text) -> CorpusIndex:
    docs = [Document(id=i, title=t, text=x) for i, t, x in ARTICLES] + [Document("seed", "Seed", seed_text)]
    settings = make_settings(tmp_path_factory.mktemp("x")).index_settings()
    index, _ = CorpusIndex.empty(settings, model_record(embedder)).apply(docs + _extra_documents(), embedder=embedder)
    return index


def _routed(folder, embedder) -> RoutedIndex:
    clients = []
    for number in range(COUNT):
        engine = Engine(make_settings(folder / shard_name(number)), embedder)
        engine.background_merges = False
        engine.reload()
        clients.append(LocalShard(ShardServer(engine, folder, number, COUNT)))
    return RoutedIndex(settings=make_settings(folder).index_settings(), model=model_record(embedder), clients=clients)


@pytest.fixture
def both(corpus, tmp_path, embedder) -> tuple[ShardedIndex, RoutedIndex]:
    split_index(corpus, COUNT, tmp_path / "s")
    return ShardedIndex.load(tmp_path / "s"), _routed(tmp_path / "s", embedder)


def _ranking(index, query, embedder, fusion="rrf", filters=None):
    settings = RetrievalSettings(fusion=fusion)
    hits = retrieve(index, query, embedder.encode_query(query), 10, settings, filters)
    return [
        (h.chunk.chunk_id, h.chunk.start, h.chunk.end, h.chunk.text, h.score, h.dense_rank, h.lexical_rank)
        for h in hits
    ]


@pytest.mark.parametrize("fusion", ["rrf", "dense", "lexical"])
def test_routed_rankings_equal_the_one_process_sharded_index(both, embedder, fusion):
    sharded, routed = both
    for query in QUESTIONS:
        assert _ranking(routed, query, embedder, fusion) == _ranking(sharded, query, embedder, fusion), query


def test_routed_filters_equal_the_one_process_sharded_index(both, embedder):
    sharded, routed = both
    for filters in (
        Filters(document_ids=("harbour", "extra-03", "seed")),
        Filters(published_from=__import__("datetime").date(2024, 11, 3)),
        Filters(document_ids=("no-such-document",)),
    ):
        for query in QUESTIONS[:5]:
            assert _ranking(routed, query, embedder, filters=filters) == _ranking(
                sharded, query, embedder, filters=filters
            )


def test_bm25_statistics_summed_over_shards_equal_one_index(both):
    sharded, routed = both
    whole = sharded.lexical.term_stats("harbour salmon item3 troops")  # type: ignore[attr-defined]
    parts = [
        routed.clients[n]
        .call("first", "harbour salmon item3 troops", np.zeros((1, 384), np.float32), 5, "lexical", None)
        .result()[0]
        for n in range(COUNT)
    ]
    total = parts[0] + parts[1] + parts[2]
    assert total == whole and all(p.size for p in parts)


def test_best_by_score_keeps_the_best_by_score_ties_by_key():
    a = (np.array([5, 9]), np.array([0.9, 0.5], np.float32))
    b = (np.array([2, 7]), np.array([0.5, 0.7], np.float32))
    keys, scores = best_by_score([a, b], 3)
    assert keys.tolist() == [5, 7, 2] and scores.tolist() == pytest.approx([0.9, 0.7, 0.5])


@pytest.fixture(scope="module")
def trained(embedder):
    return QAPipeline.load("trained", embedder=embedder)


def test_answers_and_pages_over_http_equal_the_one_process_service(corpus, tmp_path, embedder, trained):
    split_index(corpus, COUNT, tmp_path / "s")
    settings = make_settings(tmp_path / "s")
    local = Engine(settings, embedder, trained)
    local.reload()
    routed = Engine(settings, embedder, trained)
    routed._snapshot = _routed(tmp_path / "s", embedder)
    one, many = TestClient(create_app(settings, engine=local)), TestClient(create_app(settings, engine=routed))
    for question in QUESTIONS:
        a = one.post("/ask", json={"question": question, "top_k": 5}).json()
        b = many.post("/ask", json={"question": question, "top_k": 5}).json()
        for body in (a, b):
            body.pop("timings_ms", None)
        assert a == b, question
    for path in ("/documents?limit=7", "/documents?limit=7&cursor=extra-05", "/documents/seed", "/healthz"):
        assert one.get(path).json() == many.get(path).json(), path
    assert one.get("/documents/nope").status_code == many.get("/documents/nope").status_code == 404


def test_a_routed_write_goes_to_the_owner_shard_and_keeps_the_folder_one_sharded_index(corpus, tmp_path, embedder):
    split_index(corpus, COUNT, tmp_path / "s")
    routed = _routed(tmp_path / "s", embedder)
    docs = [
        Document(id=f"new-{i}", title=f"New {i}", text=f"The lighthouse keeper number {i} retired in June.")
        for i in range(6)
    ]
    report = routed.write(docs, ["rail"])
    assert sorted(report.added) == sorted(d.id for d in docs) and report.deleted == ("rail",)
    for doc in docs:
        owner = routed.clients[shard_of(doc.id, COUNT)].server  # type: ignore[attr-defined]
        assert doc.id in owner.engine.snapshot.documents
        assert sum(doc.id in c.server.engine.snapshot.documents for c in routed.clients) == 1  # type: ignore[attr-defined]
    assert routed.get("new-3").text == docs[3].text
    hits = retrieve(routed, "lighthouse keeper retired", embedder.encode_query("lighthouse keeper retired"), 3)
    assert hits[0].chunk.doc_id.startswith("new-")
    again = ShardedIndex.load(tmp_path / "s")  # the top manifest lists every shard's new commit
    assert "new-0" in again.documents and "rail" not in again.documents
    assert len(routed.documents) == len(again.documents) and len(routed.chunks) == len(again.chunks)


def test_an_engine_over_a_routed_index_writes_through_it_and_refuses_a_rebuild(corpus, tmp_path, embedder):
    split_index(corpus, COUNT, tmp_path / "s")
    engine = Engine(make_settings(tmp_path / "s"), embedder)
    engine._snapshot = _routed(tmp_path / "s", embedder)
    doc = Document(id="owl", title="Owls", text="The barn owl hunts at night over open fields.")
    report = engine.upsert([doc], skipped=[("notes.bin", "unsupported type")])
    assert report.added == ("owl",) and report.skipped == (("notes.bin", "unsupported type"),)
    assert engine.snapshot.get("owl").title == "Owls"
    with pytest.raises(ReadOnlyIndex, match="shard by shard"):
        engine.write([doc], (), fresh=True)


def test_a_router_reads_its_own_write_from_a_replica_that_has_not_loaded_it_yet(corpus, tmp_path, embedder):
    split_index(corpus, COUNT, tmp_path / "s")
    writer, reader = _routed(tmp_path / "s", embedder), _routed(tmp_path / "s", embedder)
    doc = Document(id="heron", title="Herons", text="The grey heron waits motionless in shallow water for fish.")
    number = shard_of(doc.id, COUNT)
    writer.write([doc], [])
    # ``reader`` holds other replicas of the same shards, which have not looked at the shard's commits since
    stale = reader.clients[number].server  # type: ignore[attr-defined]
    assert "heron" not in stale.engine.snapshot.documents
    assert stale.document("heron") is None  # (a plain read answers from what the replica holds)
    reader._written = dict(writer._written)  # as if ``reader``'s replicas served ``writer``'s router
    assert reader.get("heron").title == "Herons"  # the replica loaded the newer commit first
    assert "heron" in stale.engine.snapshot.documents


def test_term_statistics_count_only_live_rows(corpus, embedder):
    # a deleted document's chunks stay in its segment's files: the statistics must leave them out
    less, _ = corpus.apply([], ["harbour", "budget"], embedder=embedder)
    query = "harbour budget salmon item3 nosuchword"
    for index in (corpus, less):
        bm25 = as_multi(index.lexical)
        stats = bm25.term_stats(query)
        counted = {t: sum(len(p.frequencies(t)[0]) for p in bm25.parts) for t in stats.frequency}
        assert stats.frequency == counted and stats.size == len(index.chunks)
    assert (
        as_multi(less.lexical).term_stats(query).frequency["harbour"]
        < as_multi(corpus.lexical).term_stats(query).frequency["harbour"]
    )
