"""Chunks as columns (rag/store/columns.py): a table reads back the chunks it was built from, views and joins keep
offsets exact, a snapshot's rows span its segments, and a run of writes keeps CorpusIndex's invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.errors import IndexCorrupt
from rag.store import CorpusIndex, IndexSettings, Segment
from rag.store.columns import ChunkTable, Rows
from rag.types import Chunk, Document


class FakeEmbedder:
    """Words as tokens, and a vector per text from its hash: enough for the store, no model."""

    dim = 8

    def token_offsets(self, texts):
        import re

        return [[(m.start(), m.end()) for m in re.finditer(r"\S+", t)] for t in texts]

    def encode(self, texts, progress=False):
        rng = [np.random.default_rng(abs(hash(t)) % (1 << 32)).standard_normal(self.dim) for t in texts]
        out = np.array(rng, dtype=np.float32).reshape(len(texts), self.dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)


MODEL = {"id": "fake", "checksum": "fake", "dim": FakeEmbedder.dim}


def docs_and_chunks() -> tuple[list[Document], list[Chunk]]:
    docs = [Document(id="a", title="A", text="alpha beta gamma"), Document(id="b", title="B", text="delta epsilon")]
    chunks = [
        Chunk(10, "a", 0, 0, 10, "alpha beta"),
        Chunk(11, "a", 1, 11, 16, "gamma"),
        Chunk(12, "b", 0, 0, 13, "delta epsilon"),
    ]
    return docs, chunks


def test_a_table_reads_back_the_chunks_it_was_built_from():
    docs, chunks = docs_and_chunks()
    table = ChunkTable.from_chunks(chunks, docs)
    assert list(table) == chunks and [table[i] for i in range(3)] == chunks and table[1:] == chunks[1:]
    assert table.keys.dtype == np.int64 and table.starts.dtype == np.int32
    assert table.rows_of("a").tolist() == [0, 1] and table.rows_of("missing").tolist() == []
    assert table.nbytes() == 3 * (8 + 4 * 4)


def test_a_view_and_a_join_keep_text_and_offsets():
    docs, chunks = docs_and_chunks()
    table = ChunkTable.from_chunks(chunks, docs)
    view = table.take(np.array([2], dtype=np.int64))
    assert list(view) == [chunks[2]] and view.docs is table.docs
    joined = ChunkTable.joined([view, ChunkTable.from_chunks(chunks[:2], docs[:1])], [docs[1], docs[0]])
    assert list(joined) == [chunks[2], *chunks[:2]] and joined.doc_rows.tolist() == [0, 1, 1]
    with pytest.raises(ValueError):
        ChunkTable(np.zeros(2, np.int64), np.zeros(1, np.int32), np.zeros(2), np.zeros(2), np.zeros(2), docs)


def test_rows_span_segments_empty_ones_included():
    docs, chunks = docs_and_chunks()
    empty = ChunkTable.from_chunks([], [])
    rows = Rows([empty, ChunkTable.from_chunks(chunks[:2], docs[:1]), empty, ChunkTable.from_chunks(chunks[2:], docs)])
    assert len(rows) == 3 and list(rows) == chunks and [rows[i] for i in range(3)] == chunks
    assert rows[-1] == chunks[2] and rows == chunks and rows.keys.tolist() == [10, 11, 12]
    assert rows.document_codes({"a": 5, "b": 7}).tolist() == [5, 5, 7]
    with pytest.raises(IndexError):
        rows[3]


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["put", "delete", "merge"]), st.integers(0, 5), st.integers(1, 4)),
        min_size=1,
        max_size=12,
    )
)
def test_any_run_of_writes_keeps_the_invariants(steps):
    index = CorpusIndex.empty(IndexSettings(), MODEL)
    texts: dict[str, str] = {}
    embedder = FakeEmbedder()
    for op, number, version in steps:
        doc_id = f"d{number}"
        if op == "put":
            text = " ".join(f"w{number}v{version}x{i}." for i in range(40 * version))
            index, _ = index.apply([Document(id=doc_id, title=doc_id, text=text)], embedder=embedder)
            texts[doc_id] = text
        elif op == "delete" and doc_id in texts:
            index, _ = index.apply(deletes=[doc_id], embedder=embedder)
            del texts[doc_id]
        elif op == "merge":
            index = index.merged(0, len(index.segments))
        index.check()
        assert index.documents.keys() == texts.keys()
        for chunk in index.chunks:
            assert texts[chunk.doc_id][chunk.start : chunk.end] == chunk.text
            assert index.chunk(chunk.key) == chunk


def test_check_names_a_broken_invariant():
    docs, chunks = docs_and_chunks()
    vectors = FakeEmbedder().encode([c.text for c in chunks])
    one = Segment.build(docs, chunks, vectors, IndexSettings())
    twice = CorpusIndex(settings=IndexSettings(), model=MODEL, segments=[one], next_key=12)
    with pytest.raises(IndexCorrupt, match="next_key"):
        twice.check()
