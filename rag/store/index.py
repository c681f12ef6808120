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
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.chunking import ChunkerSettings, chunk_text
from rag.dense import DenseIndex
from rag.errors import DocumentNotFound, IndexCorrupt, IndexMismatch, IndexNotFound, ValidationError
from rag.lexical import BM25Index, LexicalSettings
from rag.store import commit as commits
from rag.store.commit import SEGMENTS, read_current, write_lock
from rag.store.search import MultiBM25, MultiDense
from rag.store.segment import SEGMENT_MANIFEST, IndexSettings, Segment, indexed_text
from rag.types import Chunk, Document, Embeddings, IngestReport

log = logging.getLogger(__name__)

#: 3: segments, and commits that list each segment's deleted documents. 2 (the same, without deletions) is read
#: as it is; 1 (one folder per generation holding everything) is read as one segment. Both are written as format 3
#: by the next write (a program that reads only 2 would not leave the deleted documents out: it refuses 3).
FORMAT_VERSION = 3
READS = (1, 2, 3)
EMBED_BATCH = 256
#: A load whose commit was replaced, and its files removed, while it read them starts again this many times.
LOAD_ATTEMPTS = 5

Progress = Callable[[int, int], None]
#: A document chunked and embedded elsewhere: its chunk spans (start, end) and their vectors, row for row.
Prepared = tuple[Sequence[tuple[int, int]], Embeddings]


@dataclass(eq=False)
class CorpusIndex:
    """One consistent snapshot of the corpus. Treat as read-only; ``apply`` returns a new one."""

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
    chunks: list[Chunk] = field(init=False, repr=False)  # every chunk, row by row
    dense: DenseIndex = field(init=False, repr=False)
    lexical: BM25Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.documents, self.checksums, self.chunks = {}, {}, []
        self._offsets: list[int] = []
        for segment in self.segments:
            self._offsets.append(len(self.chunks))
            self.documents.update(segment.documents)
            self.checksums.update(segment.checksums)
            self.chunks.extend(segment.chunks)
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
        return [c for s in self.segments if doc_id in s.documents for c in s.chunks if c.doc_id == doc_id]

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
        ingest, rag/distributed.py) with this index's settings and model: those documents are not chunked or
        embedded here, and ``embedder`` may be None when every changed document is prepared."""
        started = time.perf_counter()
        delete_ids = list(dict.fromkeys(deletes))
        for doc_id in delete_ids:
            if doc_id not in self.documents:
                raise DocumentNotFound(doc_id)
        added: list[str] = []
        replaced: list[str] = []
        unchanged: list[str] = []
        todo: dict[str, Document] = {}
        for doc in upserts:
            old = self.checksums.get(doc.id)
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
            return self, replace(report, seconds=time.perf_counter() - started)

        new_chunks: list[Chunk] = []
        texts: list[str] = []
        key = self.next_key
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
                spans = [(s.start, s.end) for s in chunk_text(doc.text, embedder.token_offsets, self.settings.chunker)]
            for ordinal, (start, end) in enumerate(spans):
                chunk = Chunk(key, doc.id, ordinal, start, end, doc.text[start:end])
                new_chunks.append(chunk)
                if ready is None:
                    texts.append(indexed_text(doc.title, chunk.text, self.settings.title_in_text))
                key += 1
        new_vectors = _embed(embedder, texts, progress, dim=int(self.model["dim"]))
        if given:
            merged = np.zeros((len(new_chunks), int(self.model["dim"])), dtype=np.float32)
            mask = np.ones(len(new_chunks), dtype=bool)
            for row, vectors in given:
                merged[row : row + len(vectors)] = vectors
                mask[row : row + len(vectors)] = False
            merged[mask] = new_vectors
            new_vectors = merged

        gone = set(delete_ids) | set(todo)
        segments = [kept for s in self.segments if (kept := s.with_deleted(gone)) is not None]
        if todo:
            segments.append(Segment.build(list(todo.values()), new_chunks, new_vectors, self.settings))
        snapshot = CorpusIndex(
            settings=self.settings,
            model=self.model,
            segments=segments,
            next_key=key,
            generation=self.generation,
            global_stats=self.global_stats,
        )
        return snapshot, replace(report, chunks_embedded=len(new_chunks), seconds=time.perf_counter() - started)

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
        """Load the live commit; refuse one built with another model or other settings.

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
                return cls._load_commit(folder, current, settings=settings, model=model, verify=verify, reuse=reuse)
            except IndexCorrupt:
                if attempt + 1 == LOAD_ATTEMPTS or read_current(folder) == current:
                    raise
                log.info("commit %s changed while it was read: reading %s", current, read_current(folder))
        raise AssertionError("unreachable")

    @classmethod
    def _load_commit(
        cls,
        folder: Path,
        current: str | None,
        *,
        settings: IndexSettings | None,
        model: dict[str, Any] | None,
        verify: bool | str,
        reuse: CorpusIndex | None,
    ) -> CorpusIndex:
        rebuild = f"rebuild it with: rag ingest <your files> --index {folder} --rebuild"
        if current is None:
            raise IndexNotFound(
                f"no index in {folder} (no {commits.CURRENT} file); build one with: rag ingest seeds/ --index {folder}"
            )
        gen = folder / current
        try:
            manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise IndexCorrupt(f"index {gen} has no readable manifest.json ({exc}); {rebuild}") from exc
        version = manifest.get("format_version")
        if version not in READS:
            raise IndexMismatch(
                f"index {gen} has format version {version}, this program reads {', '.join(map(str, READS))}; {rebuild}"
            )
        if model is not None and manifest["model"].get("checksum") != model.get("checksum"):
            raise IndexMismatch(
                f"index {gen} was built with embedding model {manifest['model'].get('id')} "
                f"(checksum {str(manifest['model'].get('checksum'))[:12]}), not the loaded {model.get('id')} "
                f"(checksum {str(model.get('checksum'))[:12]}); {rebuild}"
            )
        stored = _settings_from_dict(manifest["settings"], dense_kind=(settings or IndexSettings()).dense_kind)
        # Other BM25 parameters need no re-embedding: the lexical index is rebuilt from the chunks below.
        relex = settings is not None and stored.lexical != settings.lexical
        if relex and settings is not None:
            stored = replace(stored, lexical=settings.lexical)
        if settings is not None and stored.as_dict() != settings.as_dict():
            raise IndexMismatch(
                f"index {gen} was built with settings {json.dumps(stored.as_dict(), sort_keys=True)}, "
                f"but {json.dumps(settings.as_dict(), sort_keys=True)} were asked for; {rebuild}"
            )
        dim = int(manifest["model"]["dim"])
        if version == 1:
            # Format 1: the generation folder holds one whole index, laid out as a segment. Read as one (its
            # BM25 is built again, with token counts), it is written in format 3 by the next write.
            log.info("index %s is in format 1: read as one segment; the next write saves it in format 3", gen)
            segments = [Segment.read(gen, stored, dim, verify=verify, rebuild=rebuild, legacy=manifest)]
        else:
            known = {}
            if reuse is not None and not relex and reuse.settings == stored:
                known = {s.name: s for s in reuse.segments if s.stored_in(folder / SEGMENTS)}
            segments = []
            for entry in manifest["segments"]:
                path = folder / SEGMENTS / entry["name"]
                deleted = frozenset(entry.get("deleted", ()))
                segment = known.get(entry["name"])
                if segment is None:
                    segment = Segment.read(path, stored, dim, verify=verify, rebuild=rebuild, relex=relex)
                if verify and segment.digest != entry.get("manifest_sha256", segment.digest):
                    raise IndexCorrupt(f"segment {path} does not match its checksum in {gen}; {rebuild}")
                if segment.deleted != deleted:
                    if not segment.deleted <= deleted:  # a deletion is never undone: start from the stored one
                        segment = segment.base or segment
                    view = segment.with_deleted(deleted)
                    if view is None or view.deleted != deleted:
                        raise IndexCorrupt(f"{gen} lists deleted documents segment {path} does not hold; {rebuild}")
                    segment = view
                segments.append(segment)
        index = cls(
            settings=stored,
            model=manifest["model"],
            segments=segments,
            next_key=int(manifest["next_key"]),
            generation=int(manifest["generation"]),
        )
        if len(index.chunks) != int(manifest["counts"]["chunks"]):
            raise IndexCorrupt(
                f"index {gen} lists {manifest['counts']['chunks']} chunks, its segments hold {len(index.chunks)}; "
                f"{rebuild}"
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


def stored_checksums(folder: str | Path) -> dict[str, str]:
    """doc id -> checksum of every document in the live commit, read from the manifests only (no vectors)."""
    folder = Path(folder)
    current = read_current(folder)
    if current is None:
        return {}
    manifest = json.loads((folder / current / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format_version") == 1:
        return {k: v["checksum"] for k, v in manifest["documents"].items()}
    out: dict[str, str] = {}
    for entry in manifest["segments"]:
        inner = json.loads((folder / SEGMENTS / entry["name"] / SEGMENT_MANIFEST).read_text(encoding="utf-8"))
        deleted = set(entry.get("deleted", ()))
        out.update({k: v["checksum"] for k, v in inner["documents"].items() if k not in deleted})
    return out


def index_exists(folder: str | Path) -> bool:
    return read_current(Path(folder)) is not None


def current_generation(folder: str | Path) -> str | None:
    """The live generation's folder name, or None when the folder holds no index."""
    return read_current(Path(folder))


def _settings_from_dict(data: dict[str, Any], dense_kind: str) -> IndexSettings:
    return IndexSettings(
        chunker=ChunkerSettings(**data["chunker"]),
        lexical=LexicalSettings(**data["lexical"]),
        title_in_text=bool(data["title_in_text"]),
        dense_kind=dense_kind,
    )


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
