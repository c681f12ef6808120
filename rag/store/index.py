"""The index in memory: one consistent snapshot of the corpus, made of segments, searched as one.

A ``CorpusIndex`` is an immutable snapshot: its segments (rag/store/segment.py), and the view over them that
retrieval, the pipeline and the service read (``documents``, ``chunks`` in row order, ``chunk(key)``, ``dense``,
``lexical``). A change (add, replace, delete) returns a new snapshot that shares every segment's arrays: new
documents become one new segment, and replaced or deleted documents are marked deleted in the segments that
hold them (tombstones: nothing is rebuilt). ``save`` writes only the segments that are not on disk yet, then
the commit (rag/store/commit.py), which lists each segment's deleted documents; so a write costs what it adds,
not the size of the corpus.

On disk an index is a folder::

    index/
      CURRENT              name of the live commit (replaced atomically)
      write.lock           held by the one writer at a time (fcntl)
      gen-000007/
        manifest.json      format version, model id and checksum, settings, next chunk key, the live segments
                           and the documents deleted from each
      segments/
        seg-000003-00/     an immutable segment (its own segment.json lists its files' checksums)
        seg-000007-00/

A crash at any moment leaves the previous commit loadable: segments and the commit are written in temporary
folders, flushed and renamed into place before ``CURRENT`` moves.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.dense import DenseIndex
from rag.errors import DocumentNotFound, IndexCorrupt
from rag.lexical import BM25Index
from rag.store import changes
from rag.store import commit as commits
from rag.store.changes import Prepared, Progress
from rag.store.columns import Rows
from rag.store.commit import SEGMENTS, read_current, write_lock
from rag.store.loading import FORMAT_VERSION, current_generation, index_exists, read_commit, stored_checksums
from rag.store.search import MultiBM25, MultiDense
from rag.store.segment import IndexSettings, Segment
from rag.types import Chunk, Document, Embeddings, IngestReport

log = logging.getLogger(__name__)

__all__ = ["CorpusIndex", "current_generation", "index_exists", "replace_segments", "stored_checksums"]

#: A load whose commit was replaced, and its files removed, while it read them starts again this many times.
LOAD_ATTEMPTS = 5


@dataclass(eq=False)
class CorpusIndex:
    """One consistent snapshot of the corpus. Treat as read-only; ``apply`` returns a new one.

    Invariants (``check`` tests them; the loader and ``apply`` keep them):

    - chunk keys are unique and ascend across the segments, in segment order (a key finds its segment by
      binary search over the segments' first keys, and its row inside by binary search over the segment's
      keys); every key is below ``next_key``, which only grows (a replaced chunk's key is never used again);
    - row ``r`` of ``chunks`` is row ``r - offsets[i]`` of segment ``i``'s live chunks, with ``offsets[i]`` the
      live chunks of the segments before it; ``dense`` returns keys, ``lexical`` returns rows;
    - a document lives in exactly one segment, and ``documents`` and ``checksums`` are the union of the
      segments' (live) ones; a segment's deleted documents are in its stored files only;
    - a segment never changes once built: a snapshot after a change shares every untouched segment, and a
      segment that lost documents is a view of the stored one (``Segment.with_deleted``)."""

    settings: IndexSettings
    model: dict[str, Any]  # id, checksum, dim
    segments: list[Segment] = field(default_factory=list)
    next_key: int = 0
    generation: int = 0
    #: BM25 with the whole index's statistics (False: each segment's own, for measuring).
    global_stats: bool = True
    # Lookups derived from this snapshot on first use (rag/filters.py); a snapshot never changes, so they hold.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)
    # The view over the segments, built once per snapshot.
    documents: dict[str, Document] = field(init=False, repr=False)
    checksums: dict[str, str] = field(init=False, repr=False)  # doc id -> document checksum
    chunks: Rows = field(init=False, repr=False)  # every chunk, row by row (columns: rag/store/columns.py)
    dense: DenseIndex = field(init=False, repr=False)
    lexical: BM25Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.documents, self.checksums = {}, {}
        for segment in self.segments:
            self.documents.update(segment.documents)
            self.checksums.update(segment.checksums)
        self.chunks = Rows([s.chunks for s in self.segments])
        self._offsets = self.chunks.offsets
        filled = [i for i, s in enumerate(self.segments) if s.size]
        self._filled = filled
        self._first_keys = [int(self.segments[i].keys[0]) for i in filled]
        last = -(1 << 62)
        for i in filled:
            lo, hi = self.segments[i].key_range
            if lo <= last:
                raise IndexCorrupt("the segments' chunk keys overlap; rebuild the index with rag ingest --rebuild")
            last = hi
        if len(self.segments) == 1 and self.global_stats and not self.segments[0].deleted:
            self.dense, self.lexical = self.segments[0].dense, self.segments[0].lexical
        else:
            dim = int(self.model["dim"])
            self.dense = MultiDense([s.dense for s in self.segments], [s.key_range for s in self.segments], dim=dim)
            self.lexical = MultiBM25(
                [s.lexical for s in self.segments],
                self._offsets,
                global_stats=self.global_stats,
                settings=self.settings.lexical,
            )

    # ------------------------------------------------------------------------------------------ reading

    @classmethod
    def empty(cls, settings: IndexSettings, model: dict[str, Any]) -> CorpusIndex:
        return cls(settings=settings, model=model)

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        for s in self.segments:
            if doc_id in s.documents:
                return list(s.chunks.take(s.chunks.rows_of(doc_id)))  # (its text read once)
        return []

    def check(self) -> None:
        """Raise ``IndexCorrupt`` where this snapshot breaks an invariant of the class docstring (for tests and
        ``rag verify``: it walks every document)."""
        keys = self.chunks.keys
        if len(keys) and (np.any(keys[1:] <= keys[:-1]) or int(keys[-1]) >= self.next_key):
            raise IndexCorrupt("chunk keys do not ascend across the segments, or reach next_key")
        owners: dict[str, int] = {}
        for i, segment in enumerate(self.segments):
            for doc_id in segment.documents:
                if owners.setdefault(doc_id, i) != i:
                    raise IndexCorrupt(f"document {doc_id!r} is live in segments {owners[doc_id]} and {i}")
            table = segment.chunks
            live = {table.docs[int(r)].id for r in np.unique(table.doc_rows)}
            if live != segment.documents.keys() or segment.documents.keys() != segment.checksums.keys():
                raise IndexCorrupt(f"segment {segment.name}: its chunks, documents and checksums disagree")
        if owners.keys() != self.documents.keys() or len(self.chunks) != sum(s.size for s in self.segments):
            raise IndexCorrupt("the snapshot's documents or rows are not its segments'")

    def get(self, doc_id: str) -> Document:
        try:
            return self.documents[doc_id]
        except KeyError:
            raise DocumentNotFound(doc_id) from None

    def row_of(self, key: int) -> int:
        """The row in ``chunks`` of the chunk with ``key`` (KeyError when there is none)."""
        at = bisect.bisect_right(self._first_keys, key) - 1
        if at >= 0:
            number = self._filled[at]
            row = self.segments[number].row_of(key)
            if row is not None:
                return self._offsets[number] + row
        raise KeyError(key)

    def chunk(self, key: int) -> Chunk:
        return self.chunks[self.row_of(key)]

    @property
    def has_vectors(self) -> bool:
        """Whether the float32 vectors are kept beside FAISS (a sharded index served read-only drops them)."""
        return all(s.has_vectors for s in self.segments)

    def vectors_at(self, rows: npt.NDArray[np.int64]) -> Embeddings:
        """The vectors of chunk ``rows`` (ascending or not), gathered from their segments."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), int(self.model["dim"])), dtype=np.float32)
        owner = np.searchsorted(np.asarray(self._offsets, dtype=np.int64), rows, side="right") - 1
        for number in np.unique(owner):
            mask = owner == number
            out[mask] = self.segments[number].vectors_at(rows[mask] - self._offsets[number])
        return out

    @property
    def vectors(self) -> Embeddings:
        """Every chunk's vector, row by row (one segment's array, or a copy over several: prefer
        ``vectors_at``)."""
        if len(self.segments) == 1:
            return self.segments[0].vectors
        cached = self.memo.get("vectors")
        if cached is None:
            parts = [s.vectors for s in self.segments]
            cached = np.concatenate(parts) if parts else np.zeros((0, int(self.model["dim"])), dtype=np.float32)
            self.memo["vectors"] = cached
        return cached

    # ------------------------------------------------------------------------------------------ changing

    def apply(
        self,
        upserts: Sequence[Document] = (),
        deletes: Iterable[str] = (),
        *,
        embedder,
        progress: Progress | None = None,
        skipped: Sequence[tuple[str, str]] = (),
        prepared: Mapping[str, Prepared] | None = None,
    ) -> tuple[CorpusIndex, IngestReport]:
        """A new snapshot with ``upserts`` added or replaced and ``deletes`` removed; only new text is embedded.

        New and new versions of documents become one new segment; a segment that held a replaced or deleted
        document becomes a view of itself less that document (its arrays shared, nothing rebuilt); a segment left
        with no document is dropped.

        ``prepared`` maps a document id to its chunk spans and vectors computed elsewhere (the distributed
        ingest, rag/distributed/) with this index's settings and model: those documents are not chunked or
        embedded here, and ``embedder`` may be None when every changed document is prepared."""
        return changes.apply(
            self, upserts, deletes, embedder=embedder, progress=progress, skipped=skipped, prepared=prepared
        )

    def merged(self, start: int, end: int) -> CorpusIndex:
        """A snapshot with segments ``[start, end)`` merged into one, their deleted documents left out (nothing is
        embedded); one segment is written again when it has deleted documents."""
        if end - start < 1 or (end - start == 1 and not self.segments[start].deleted):
            return self
        joined = Segment.merge(self.segments[start:end], self.settings)
        return replace_segments(self, self.segments[:start] + [joined] + self.segments[end:])

    # ------------------------------------------------------------------------------------------ manifest

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "generation": self.generation,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": self.model,
            "settings": self.settings.as_dict(),
            "counts": {"documents": len(self.documents), "chunks": len(self.chunks), "segments": len(self.segments)},
            "next_key": self.next_key,
            "segments": [s.entry() for s in self.segments],
        }

    # ------------------------------------------------------------------------------------------ disk

    def save(self, folder: str | Path, *, locked: bool = False) -> Path:
        """Write the segments that are not in ``folder`` yet and a new commit listing all of them, and switch
        ``CURRENT`` to it atomically; returns the commit's folder.

        Takes the folder's write lock unless the caller holds it (``locked``: ``Engine.write`` holds it from
        reading the latest commit to this switch, so that no other writer's commit is lost)."""
        folder = Path(folder)
        if not locked:
            with write_lock(folder):
                return self.save(folder, locked=True)
        folder.mkdir(parents=True, exist_ok=True)
        commits.remove_strays(folder)
        number = commits.next_generation(folder, self.generation)
        written = 0
        for segment in self.segments:
            if not segment.stored_in(folder / SEGMENTS):
                segment.write(folder / SEGMENTS, f"seg-{number:06d}-{written:02d}")
                written += 1
        self.generation = number
        return commits.write_commit(folder, number, self.manifest())

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        settings: IndexSettings | None = None,
        model: dict[str, Any] | None = None,
        verify: bool | str = True,
        reuse: CorpusIndex | None = None,
    ) -> CorpusIndex:
        """Load the live commit (rag/store/loading.py); refuse one built with another model or other settings.

        ``verify``: True checks every file's size and the checksums of the files under 1 MiB (a load costs
        what it reads, not a hash of every vector); ``"full"`` hashes every byte (``rag verify``); False skips.
        ``reuse``: a snapshot loaded from the same folder earlier, whose segments still listed are not read
        again (segments never change), so noticing another process's commit costs what it added.

        A commit whose files vanish while it is read (writers committed meanwhile, and the oldest commits' files
        were removed) is not an error: the load starts again from the commit ``CURRENT`` names now, as Lucene's
        readers do."""
        folder = Path(folder)
        for attempt in range(LOAD_ATTEMPTS):
            current = read_current(folder)
            try:
                return cls._from_commit(folder, current, settings=settings, model=model, verify=verify, reuse=reuse)
            except IndexCorrupt:
                if attempt + 1 == LOAD_ATTEMPTS or read_current(folder) == current:
                    raise
                log.info("commit %s changed while it was read: reading %s", current, read_current(folder))
        raise AssertionError("unreachable")

    @classmethod
    def _from_commit(
        cls,
        folder: Path,
        current: str | None,
        *,
        settings: IndexSettings | None,
        model: dict[str, Any] | None,
        verify: bool | str,
        reuse: CorpusIndex | None,
    ) -> CorpusIndex:
        read = read_commit(
            folder,
            current,
            settings=settings,
            model=model,
            verify=verify,
            reuse=reuse.segments if reuse is not None else (),
            reuse_settings=reuse.settings if reuse is not None else None,
        )
        manifest = read.manifest
        index = cls(
            settings=read.settings,
            model=manifest["model"],
            segments=read.segments,
            next_key=int(manifest["next_key"]),
            generation=int(manifest["generation"]),
        )
        if len(index.chunks) != int(manifest["counts"]["chunks"]):
            raise IndexCorrupt(
                f"index {folder / str(current)} lists {manifest['counts']['chunks']} chunks, its segments hold "
                f"{len(index.chunks)}; rebuild it with: rag ingest <your files> --index {folder} --rebuild"
            )
        return index


def replace_segments(index: CorpusIndex, segments: list[Segment]) -> CorpusIndex:
    """A snapshot like ``index`` over other ``segments``."""
    return CorpusIndex(
        settings=index.settings,
        model=index.model,
        segments=segments,
        next_key=index.next_key,
        generation=index.generation,
        global_stats=index.global_stats,
    )
