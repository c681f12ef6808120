from __future__ import annotations

import json

import numpy as np
import pytest

from rag import store
from rag.chunking import ChunkerSettings
from rag.embedding import Embedder, model_checksum
from rag.errors import DocumentNotFound, IndexCorrupt, IndexMismatch, IndexNotFound
from rag.retrieval import retrieve
from rag.store import CorpusIndex, IndexSettings
from rag.types import Document


class CountingEmbedder:
    """The real embedder, counting how many texts it was asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.dim = inner.dim
        self.embedded = 0

    def token_offsets(self, texts):
        return self.inner.token_offsets(texts)

    def encode(self, texts, progress=False):
        self.embedded += len(texts)
        return self.inner.encode(texts)


@pytest.fixture
def model(embedder):
    return {"id": embedder.model_id, "checksum": model_checksum(), "dim": embedder.dim}


def doc(i: int, extra: str = "") -> Document:
    return Document(
        id=f"d{i}",
        title=f"Title {i}",
        text=f"Document {i} talks about topic {i}. " * 5 + extra,
    )


def search_ids(index, embedder, query, k=3):
    return [h.chunk.chunk_id for h in retrieve(index, query, embedder.encode_query(query), k)]


def test_add_replace_delete_only_embed_what_changed(embedder, model):
    counting = CountingEmbedder(embedder)
    empty = CorpusIndex.empty(IndexSettings(), model)
    one, report = empty.apply([doc(1), doc(2)], embedder=counting)
    assert report.added == ("d1", "d2") and counting.embedded == len(one.chunks) > 0

    before = counting.embedded
    two, report = one.apply([doc(1), doc(2), doc(3)], embedder=counting)
    assert report.unchanged == ("d1", "d2") and report.added == ("d3",)
    assert counting.embedded - before == len(two.chunks_of("d3"))

    before = counting.embedded
    three, report = two.apply([doc(2, extra="Penguins live in Antarctica.")], embedder=counting)
    assert report.replaced == ("d2",)
    assert counting.embedded - before == len(three.chunks_of("d2"))
    assert "Penguins" in three.get("d2").text
    # Unchanged documents keep their vectors, bit for bit.
    for c in three.chunks_of("d1"):
        assert np.array_equal(three.vectors[three.row_of(c.key)], two.vectors[two.row_of(c.key)])
    assert search_ids(three, embedder, "Where do penguins live?", 1) == ["d2#" + str(len(three.chunks_of("d2")) - 1)]

    four, report = three.apply(deletes=["d2"], embedder=counting)
    assert report.deleted == ("d2",) and "d2" not in four.documents
    assert all(c.doc_id != "d2" for c in four.chunks)
    assert four.dense.size == len(four.chunks) == four.lexical.size
    assert not any(i.startswith("d2#") for i in search_ids(four, embedder, "penguins Antarctica", 5))
    with pytest.raises(DocumentNotFound):
        four.apply(deletes=["nope"], embedder=counting)
    # The old snapshots are untouched (copy-on-write).
    assert "d2" in three.documents and len(two.documents) == 3


def test_reingesting_unchanged_documents_is_a_no_op(embedder, model, tmp_path):
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([doc(1)], embedder=embedder)
    index.save(tmp_path)
    same, report = index.apply([doc(1)], embedder=embedder)
    assert same is index and not report.changed and report.unchanged == ("d1",)


def test_save_and_load_round_trip(embedder, model, tmp_path, seed_text):
    docs = [doc(1), Document(id="seed", title="Seed", text=seed_text)]
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply(docs, embedder=embedder)
    index.save(tmp_path)
    loaded = CorpusIndex.load(tmp_path, settings=IndexSettings(), model=model)
    assert loaded.documents == index.documents
    assert loaded.chunks == index.chunks
    assert np.array_equal(loaded.vectors, index.vectors)
    for c in loaded.chunks:
        assert loaded.get(c.doc_id).text[c.start : c.end] == c.text
    query = "How many troops are in US Forces Korea?"
    assert search_ids(loaded, embedder, query, 5) == search_ids(index, embedder, query, 5)
    manifest = json.loads((tmp_path / (tmp_path / "CURRENT").read_text().strip() / "manifest.json").read_text())
    assert manifest["format_version"] == 3
    assert manifest["model"]["checksum"] == model["checksum"] and manifest["model"]["dim"] == 384
    assert manifest["settings"]["chunker"]["max_tokens"] == 200
    assert manifest["counts"] == {"documents": 2, "chunks": len(index.chunks), "segments": 1}
    segment = json.loads((tmp_path / "segments" / manifest["segments"][0]["name"] / "segment.json").read_text())
    assert segment["documents"]["seed"]["checksum"] == docs[1].checksum
    assert set(segment["files"]) >= {"vectors.npy", "dense.faiss", "chunks.npz", "documents.jsonl"}
    assert segment["dense_index"]["kind"] == "flat"


def test_a_new_save_replaces_the_generation_and_cleans_up(embedder, model, tmp_path, monkeypatch):
    monkeypatch.setattr(store.commit, "KEEP_SECONDS", 0.0)  # as if every earlier commit were old
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([doc(1)], embedder=embedder)
    index.save(tmp_path)
    (tmp_path / ".tmp-gen-000009-1").mkdir()  # what a crashed writer leaves
    for n in (2, 3, 4):
        index, _ = index.apply([doc(n)], embedder=embedder)
        index.save(tmp_path)
    gens = sorted(p.name for p in tmp_path.glob("gen-*"))
    # the live generation and the KEEP_GENERATIONS (2) before it, for processes still loading them
    assert gens == ["gen-000002", "gen-000003", "gen-000004"]
    assert (tmp_path / "CURRENT").read_text().strip() == "gen-000004"
    assert not list(tmp_path.glob(".tmp-*"))
    assert set(CorpusIndex.load(tmp_path).documents) == {"d1", "d2", "d3", "d4"}
    # Every segment left is listed by a kept commit
    kept = {
        s["name"] for g in tmp_path.glob("gen-*") for s in json.loads((g / "manifest.json").read_text())["segments"]
    }
    assert {p.name for p in (tmp_path / "segments").iterdir()} == kept
    monkeypatch.setattr(store.commit, "KEEP_SECONDS", 3600.0)  # young commits are kept whatever their number
    for n in (5, 6, 7):
        index, _ = index.apply([doc(n)], embedder=embedder)
        index.save(tmp_path)
    assert len(list(tmp_path.glob("gen-*"))) == 6


def test_a_load_that_loses_its_commit_to_a_writer_starts_again_from_the_new_one(embedder, model, tmp_path, monkeypatch):
    from rag.errors import IndexCorrupt as Corrupt
    from rag.store.segment import Segment

    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([doc(1)], embedder=embedder)
    index.save(tmp_path)
    newer, _ = index.apply([doc(2)], embedder=embedder)
    read = Segment.read
    calls = []

    def racing(*args, **kwargs):  # the first read finds its files gone: a writer committed and cleaned up
        calls.append(args[0])
        if len(calls) == 1:
            newer.save(tmp_path)
            raise Corrupt(f"segment {args[0]} cannot be read (gone)")
        return read(*args, **kwargs)

    monkeypatch.setattr(Segment, "read", staticmethod(racing))
    loaded = CorpusIndex.load(tmp_path)
    assert set(loaded.documents) == {"d1", "d2"} and len(calls) >= 2
    # Without a newer commit the same failure is an error, not a loop
    monkeypatch.setattr(Segment, "read", staticmethod(lambda *a, **k: (_ for _ in ()).throw(Corrupt("broken"))))
    with pytest.raises(Corrupt, match="broken"):
        CorpusIndex.load(tmp_path)


def test_mismatched_settings_or_model_are_refused_with_a_rebuild_hint(embedder, model, tmp_path):
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([doc(1)], embedder=embedder)
    index.save(tmp_path)
    other = IndexSettings(chunker=ChunkerSettings(max_tokens=100))
    with pytest.raises(IndexMismatch, match="rebuild it with: rag ingest"):
        CorpusIndex.load(tmp_path, settings=other, model=model)
    with pytest.raises(IndexMismatch, match="embedding model"):
        CorpusIndex.load(tmp_path, settings=IndexSettings(), model={**model, "checksum": "0" * 64})


def test_missing_and_corrupt_indexes_say_so(embedder, model, tmp_path, monkeypatch):
    with pytest.raises(IndexNotFound, match="rag ingest"):
        CorpusIndex.load(tmp_path / "nothing")
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([doc(1)], embedder=embedder)
    gen = index.save(tmp_path)
    seg = tmp_path / "segments" / index.segments[0].name
    vectors = (seg / "vectors.npy").read_bytes()
    (seg / "vectors.npy").write_bytes(b"garbage")
    with pytest.raises(IndexCorrupt, match=r"vectors.npy has 7 bytes, its manifest says \d+"):
        CorpusIndex.load(tmp_path)
    flipped = vectors[:-1] + bytes([vectors[-1] ^ 1])  # same size, one bit off
    (seg / "vectors.npy").write_bytes(flipped)
    with pytest.raises(IndexCorrupt, match="does not match its manifest's checksum"):
        CorpusIndex.load(tmp_path)  # a small file: hashed at every load
    monkeypatch.setattr(store.files, "HASH_ON_LOAD_BYTES", 0)  # as if every file were large (vectors at scale)
    CorpusIndex.load(tmp_path)  # sizes only: loads
    with pytest.raises(IndexCorrupt, match="does not match its manifest's checksum"):
        CorpusIndex.load(tmp_path, verify="full")  # what `rag verify` runs
    (gen / "manifest.json").write_text("{")
    with pytest.raises(IndexCorrupt, match="manifest"):
        CorpusIndex.load(tmp_path)


def test_an_interrupted_save_leaves_the_previous_generation_live(embedder, model, tmp_path):
    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([doc(1)], embedder=embedder)
    index.save(tmp_path)
    # A writer that died half-way leaves a temporary folder and never switched CURRENT.
    stray = tmp_path / ".tmp-gen-000002-999"
    stray.mkdir()
    (stray / "vectors.npy").write_bytes(b"half")
    assert set(CorpusIndex.load(tmp_path).documents) == {"d1"}
    index2, _ = index.apply([doc(2)], embedder=embedder)
    index2.save(tmp_path)
    assert not stray.exists()


class HashEmbedder:
    """Deterministic pseudo-random unit vectors per text: fast, for structural tests of big indexes."""

    dim = 384

    def token_offsets(self, texts):
        import re

        return [[(m.start(), m.end()) for m in re.finditer(r"\S+", t)] for t in texts]

    def encode(self, texts, progress=False):
        import hashlib

        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)


def test_approximate_index_kinds_support_incremental_changes(model):
    fake = HashEmbedder()
    settings = IndexSettings(dense_kind="ivf-sq8")
    small, _ = CorpusIndex.empty(settings, model).apply([doc(1)], embedder=fake)
    assert small.dense.kind == "flat"  # too few vectors to train IVF lists
    docs = [Document(id=f"d{i}", title="", text=f"Short text {i}.") for i in range(1500)]
    index, _ = CorpusIndex.empty(settings, model).apply(docs, embedder=fake)
    assert index.dense.kind == "ivf-sq8" and index.dense.size == 1500
    new = Document(id="new", title="", text="Penguins live in Antarctica.")
    index2, _ = index.apply([new], ["d0"], embedder=fake)
    # d0's segment is built again without it (IVF again), the new document is a small (flat) segment
    assert [s.dense.kind for s in index2.segments] == ["ivf-sq8", "flat"]
    assert index2.dense.size == len(index2.chunks) == 1500
    keys, _ = index2.dense.search(fake.encode([new.text]), 1)
    assert index2.chunk(int(keys[0])).doc_id == "new"
    assert index.dense.size == 1500  # the previous snapshot's index was not touched


def test_other_bm25_parameters_rebuild_the_lexical_index_without_reembedding(embedder, model, tmp_path):
    from rag.lexical import LexicalSettings

    index, _ = CorpusIndex.empty(IndexSettings(), model).apply([doc(1), doc(2)], embedder=embedder)
    index.save(tmp_path)
    other = IndexSettings(lexical=LexicalSettings(k1=1.5, b=0.9))
    loaded = CorpusIndex.load(tmp_path, settings=other, model=model)
    assert loaded.settings.lexical == other.lexical
    assert np.array_equal(loaded.vectors, index.vectors)
    rows, scores = loaded.lexical.search("topic 2", 2)
    assert loaded.chunks[int(rows[0])].doc_id == "d2" and scores[0] > 0


def test_garbage_that_cannot_be_removed_is_reported_not_ignored(tmp_path, monkeypatch, caplog):
    import json
    import os

    from rag.store.commit import collect_garbage

    for gen in ("gen-000001", "gen-000002"):
        (tmp_path / gen).mkdir()
    (tmp_path / "gen-000001" / "manifest.json").write_text(json.dumps({"segments": [{"name": "seg-old"}]}))
    (tmp_path / "gen-000002" / "manifest.json").write_text(json.dumps({"segments": [{"name": "seg-new"}]}))
    for seg in ("seg-old", "seg-new"):
        (tmp_path / "segments" / seg).mkdir(parents=True)
        (tmp_path / "segments" / seg / "vectors.npy").write_bytes(b"deleted text")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path).endswith("vectors.npy"):
            raise PermissionError("read-only file system")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink)
    failures = collect_garbage(tmp_path, "gen-000002", keep_previous=0, keep_seconds=0)
    assert any("read-only file system" in f for f in failures)
    assert any("vectors.npy" in f for f in failures)
    assert "index garbage not removed" in caplog.text
    assert (tmp_path / "segments" / "seg-new" / "vectors.npy").exists()  # the live commit's segment is kept
