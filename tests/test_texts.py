"""Document text left on disk (rag/store/texts.py): a loaded index holds no document text in memory, reads the
exact text from its mapped file where asked (chunks, answers, merges, the shard split), and its documents are
equal to, copied and pickled as, plain ``Document`` objects."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import shutil
import threading

import pytest

from rag.errors import IndexCorrupt
from rag.shards import ShardedIndex, split_index
from rag.store import CorpusIndex, IndexSettings
from rag.store.texts import StoredDocument, read_documents
from rag.types import Document
from tests.test_columns import MODEL, FakeEmbedder

#: Curly quotes (CPython's 2 bytes a character), the line separators JSON leaves raw, a character beyond the BMP.
ODD = "\u201cquoted\u201d caf\u00e9 \u2028 next\u0085 line \u2029 \U0001f600 end."


def corpus() -> list[Document]:
    return [
        Document(
            id=f"d{i}",
            title=f"Title {i}",
            text=" ".join(f"w{i}x{j} {ODD}" for j in range(30 + i)),
            url=f"https://example.com/{i}" if i % 2 else None,
            meta={"page_starts": [0, 40]} if i == 1 else {},
        )
        for i in range(5)
    ]


def saved(tmp_path, docs: list[Document]) -> CorpusIndex:
    index, _ = CorpusIndex.empty(IndexSettings(), MODEL).apply(docs, embedder=FakeEmbedder())
    index.save(tmp_path / "index")
    return index


def holds_text(doc: Document) -> bool:
    """Whether ``doc`` holds its text in memory (``Document``'s own ``text`` slot is set)."""
    try:
        Document.__dict__["text"].__get__(doc, Document)
    except AttributeError:
        return False
    return True


def test_a_loaded_index_holds_no_text_and_reads_the_exact_text_back(tmp_path):
    docs = corpus()
    built = saved(tmp_path, docs)
    loaded = CorpusIndex.load(tmp_path / "index", settings=IndexSettings(), model=MODEL)
    assert all(isinstance(d, StoredDocument) and not holds_text(d) for d in loaded.documents.values())
    assert all(holds_text(d) for d in built.documents.values())  # a write's own documents: as before
    for doc in docs:
        stored = loaded.get(doc.id)
        assert stored == doc and doc == stored and stored.text == doc.text and stored.checksum == doc.checksum
        assert stored.page_at(45) == doc.page_at(45) and isinstance(stored, Document)
    assert list(loaded.chunks) == list(built.chunks)
    for chunk in loaded.chunks:
        assert loaded.documents[chunk.doc_id].text[chunk.start : chunk.end] == chunk.text
        assert loaded.chunk(chunk.key) == chunk and loaded.chunks.key_at(loaded.row_of(chunk.key)) == chunk.key
    assert loaded.chunks_of("d3") == built.chunks_of("d3")


def test_a_stored_document_is_copied_pickled_and_replaced_as_a_plain_one(tmp_path):
    doc = corpus()[1]
    saved(tmp_path, [doc])
    stored = CorpusIndex.load(tmp_path / "index", settings=IndexSettings(), model=MODEL).get(doc.id)
    for copied in (pickle.loads(pickle.dumps(stored)), copy.copy(stored), copy.deepcopy(stored)):
        assert type(copied) is Document and copied == doc and holds_text(copied)
    changed = dataclasses.replace(stored, title="Other")
    assert type(changed) is Document and changed.text == doc.text and changed.title == "Other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        stored.text = "x"  # type: ignore[misc]


def test_the_text_outlives_the_files_and_concurrent_readers_agree(tmp_path):
    docs = corpus()
    saved(tmp_path, docs)
    loaded = CorpusIndex.load(tmp_path / "index", settings=IndexSettings(), model=MODEL)
    expected = [c.text for c in loaded.chunks]
    shutil.rmtree(tmp_path / "index")  # an old snapshot's files removed by later commits: its mapping stays
    seen: list[bool] = []

    def read() -> None:
        for _ in range(20):
            seen.append([c.text for c in loaded.chunks] == expected)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == [True] * 80 and [d.text for d in loaded.documents.values()] == [d.text for d in docs]


def test_merges_writes_and_the_shard_split_read_the_stored_text(tmp_path):
    docs = corpus()
    saved(tmp_path, docs[:3])
    loaded = CorpusIndex.load(tmp_path / "index", settings=IndexSettings(), model=MODEL)
    newer = Document(id="d1", title="Title 1", text=f"replaced {ODD}")
    updated, _ = loaded.apply([newer, *docs[3:]], embedder=FakeEmbedder())
    merged = updated.merged(0, len(updated.segments))
    merged.check()
    merged.save(tmp_path / "index")
    again = CorpusIndex.load(tmp_path / "index", settings=IndexSettings(), model=MODEL)
    want = {d.id: d for d in [docs[0], newer, *docs[2:]]}
    assert again.documents == want and list(again.chunks) == list(merged.chunks)
    assert again.checksums == {k: d.checksum for k, d in want.items()}
    split_index(again, 2, tmp_path / "shards")
    sharded = ShardedIndex.load(tmp_path / "shards", settings=IndexSettings(), model=MODEL)
    assert sharded.documents == want and len(sharded.shards) == 2 and len(sharded.chunks) == len(again.chunks)


def test_the_lines_are_read_as_written_and_a_line_without_text_is_refused(tmp_path):
    path = tmp_path / "documents.jsonl"
    records = [{"id": "a", "title": "A", "text": ODD}, {"id": "b", "title": "B", "text": "", "meta": None}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n\n", encoding="utf-8")
    got = read_documents(path)
    assert [d.text for d in got] == [ODD, ""] and got[1].meta == {} and got[1].url is None
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert read_documents(tmp_path / "empty.jsonl") == []
    saved(tmp_path, corpus()[:1])
    segment = next((tmp_path / "index" / "segments").iterdir())
    line = json.loads((segment / "documents.jsonl").read_text(encoding="utf-8"))
    del line["text"]
    (segment / "documents.jsonl").write_text(json.dumps(line) + "\n", encoding="utf-8")
    with pytest.raises(IndexCorrupt, match="has no text"):
        CorpusIndex.load(tmp_path / "index", settings=IndexSettings(), model=MODEL, verify=False)
