"""The write planner: what a change (add, replace, delete) makes of a snapshot.

Documents whose checksum is unchanged are left alone; new documents and new versions are chunked and embedded
(or taken as prepared elsewhere, rag/distributed/) into one new segment, with chunk keys from the snapshot's
``next_key`` on; a segment that held a replaced or deleted document becomes a view of itself less that document
(tombstones: its arrays shared, nothing rebuilt), and one left with no document is dropped. So a write costs
what it adds, not the size of the corpus. ``CorpusIndex.apply`` (rag/store/index.py) is the entry point.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from rag.chunking import chunk_text
from rag.errors import DocumentNotFound, ValidationError
from rag.store.segment import Segment, indexed_text
from rag.types import Chunk, Document, Embeddings, IngestReport

if TYPE_CHECKING:
    from rag.store.index import CorpusIndex

EMBED_BATCH = 256

Progress = Callable[[int, int], None]
#: A document chunked and embedded elsewhere: its chunk spans (start, end) and their vectors, row for row.
Prepared = tuple[Sequence[tuple[int, int]], Embeddings]


def apply(
    index: CorpusIndex,
    upserts: Sequence[Document] = (),
    deletes: Iterable[str] = (),
    *,
    embedder,
    progress: Progress | None = None,
    skipped: Sequence[tuple[str, str]] = (),
    prepared: Mapping[str, Prepared] | None = None,
) -> tuple[CorpusIndex, IngestReport]:
    """``index`` with ``upserts`` added or replaced and ``deletes`` removed, and the report (see
    ``CorpusIndex.apply``)."""
    started = time.perf_counter()
    delete_ids = list(dict.fromkeys(deletes))
    for doc_id in delete_ids:
        if doc_id not in index.documents:
            raise DocumentNotFound(doc_id)
    added: list[str] = []
    replaced: list[str] = []
    unchanged: list[str] = []
    todo: dict[str, Document] = {}
    for doc in upserts:
        old = index.checksums.get(doc.id)
        if old == doc.checksum:
            unchanged.append(doc.id)
            continue
        (replaced if old is not None else added).append(doc.id)
        todo[doc.id] = doc  # the last version given wins
    report = IngestReport(
        added=tuple(added),
        replaced=tuple(replaced),
        unchanged=tuple(unchanged),
        deleted=tuple(delete_ids),
        skipped=tuple(skipped),
    )
    if not todo and not delete_ids:
        return index, replace(report, seconds=time.perf_counter() - started)

    new_chunks: list[Chunk] = []
    texts: list[str] = []
    key = index.next_key
    prepared = prepared or {}
    given: list[tuple[int, Embeddings]] = []  # (first row, vectors) of prepared documents
    for doc in todo.values():
        ready = prepared.get(doc.id)
        if ready is not None:
            spans = [(int(a), int(b)) for a, b in ready[0]]
            if len(ready[1]) != len(spans):
                raise ValidationError(f"document {doc.id!r}: {len(spans)} prepared chunks, {len(ready[1])} vectors")
            given.append((len(new_chunks), ready[1]))
        else:
            spans = [(s.start, s.end) for s in chunk_text(doc.text, embedder.token_offsets, index.settings.chunker)]
        text = doc.text  # (read once: a stored document reads it from disk on access)
        for ordinal, (start, end) in enumerate(spans):
            chunk = Chunk(key, doc.id, ordinal, start, end, text[start:end])
            new_chunks.append(chunk)
            if ready is None:
                texts.append(indexed_text(doc.title, chunk.text, index.settings.title_in_text))
            key += 1
    new_vectors = _embed(embedder, texts, progress, dim=int(index.model["dim"]))
    if given:
        merged = np.zeros((len(new_chunks), int(index.model["dim"])), dtype=np.float32)
        mask = np.ones(len(new_chunks), dtype=bool)
        for row, vectors in given:
            merged[row : row + len(vectors)] = vectors
            mask[row : row + len(vectors)] = False
        merged[mask] = new_vectors
        new_vectors = merged

    gone = set(delete_ids) | set(todo)
    segments = [kept for s in index.segments if (kept := s.with_deleted(gone)) is not None]
    if todo:
        segments.append(Segment.build(list(todo.values()), new_chunks, new_vectors, index.settings))
    snapshot = type(index)(
        settings=index.settings,
        model=index.model,
        segments=segments,
        next_key=key,
        generation=index.generation,
        global_stats=index.global_stats,
    )
    return snapshot, replace(report, chunks_embedded=len(new_chunks), seconds=time.perf_counter() - started)


def _embed(embedder, texts: Sequence[str], progress: Progress | None, dim: int | None = None) -> Embeddings:
    if not texts and dim is not None:
        return np.zeros((0, dim), dtype=np.float32)
    parts = []
    for i in range(0, len(texts), EMBED_BATCH):
        parts.append(embedder.encode(texts[i : i + EMBED_BATCH]))
        if progress:
            progress(min(i + EMBED_BATCH, len(texts)), len(texts))
    if not parts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32, copy=False)
