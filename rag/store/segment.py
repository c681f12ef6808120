"""A segment: some documents with their chunks, vectors, FAISS index and BM25 arrays, immutable once written.

On disk a segment is a folder ``segments/seg-GGGGGG-NN/`` (named after the commit that wrote it)::

    segment.json       counts, dense index kind and parameters, document checksums, every file's sha256 and size
    documents.jsonl    every document with its exact text
    chunks.npz         key, document row, ordinal, start, end of every chunk (keys ascending)
    vectors.npy        float32 (n, dim), L2-normalised, row i = chunk i
    dense.faiss        the FAISS index (ids = chunk keys)
    bm25/              bm25s arrays, vocabulary and token counts (no pickles)

A write adds one new segment for its new documents. A replace or delete writes no segment: the commit lists,
beside each segment, the documents deleted from it (tombstones, as Lucene's .liv files), and readers leave
them out (``with_deleted``: search skips their chunks, rag/store/search.py). A merge writes several adjacent
segments as one without their deleted documents, and the merge policy also writes again, alone, a segment
with many deleted rows (rag/store/merge.py). Chunk keys ascend across the segments of a commit, so a key finds
its segment by binary search.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.chunking import ChunkerSettings
from rag.dense import DenseIndex, KeySet
from rag.errors import IndexCorrupt
from rag.lexical import BM25Index, LexicalSettings
from rag.store.columns import ChunkTable
from rag.store.files import (
    check_files,
    describe_files,
    doc_record,
    fsync_dir,
    fsync_tree,
    sha256,
    write_json,
)
from rag.store.search import LiveBM25, LiveDense
from rag.store.texts import read_documents
from rag.types import Chunk, Document, Embeddings

SEGMENT_MANIFEST = "segment.json"


@dataclass(frozen=True, slots=True)
class IndexSettings:
    """Everything that shapes an index; an index built with other settings is refused at load."""

    chunker: ChunkerSettings = ChunkerSettings()
    lexical: LexicalSettings = LexicalSettings()
    title_in_text: bool = True  # the title is prepended to each chunk for embedding and BM25
    dense_kind: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunker": self.chunker.as_dict(),
            "lexical": self.lexical.as_dict(),
            "title_in_text": self.title_in_text,
        }


def indexed_text(title: str, chunk: str, with_title: bool) -> str:
    return f"{title}\n{chunk}" if with_title and title else chunk


@dataclass(eq=False)
class Segment:
    """Documents, their chunks (keys ascending) and the search structures over them. Never changed once built:
    a change builds a new segment, or a new view of this one less some deleted documents (``with_deleted``).
    ``name`` is set when the segment is written.

    ``documents``, ``checksums``, ``chunks``, ``dense`` and ``lexical`` are the live ones; ``chunks`` is a
    ``ChunkTable`` (rag/store/columns.py): arrays over the stored documents, no object per chunk.
    ``stored_vectors`` is every stored row's vector, deleted rows included, and ``live_rows`` the stored rows
    still live (None: all). A written segment's ``documents`` are in its stored order (``chunks.docs``)."""

    documents: dict[str, Document]
    checksums: dict[str, str]
    chunks: ChunkTable
    stored_vectors: Embeddings
    dense: DenseIndex
    lexical: BM25Index
    name: str | None = None
    home: Path | None = None  # the folder it was written to or read from
    digest: str | None = None  # sha256 of its segment.json there
    deleted: frozenset[str] = frozenset()  # documents deleted from it since it was written (tombstones)
    base: Segment | None = None  # the segment as written, when this is a view of it less ``deleted``
    live_rows: npt.NDArray[np.int64] | None = None

    @property
    def keys(self) -> npt.NDArray[np.int64]:
        """The live chunks' keys, ascending."""
        return self.chunks.keys

    @classmethod
    def build(
        cls,
        documents: Sequence[Document],
        chunks: Sequence[Chunk] | ChunkTable,
        vectors: Embeddings,
        settings: IndexSettings,
        checksums: Mapping[str, str] | None = None,
    ) -> Segment:
        """A new segment over ``chunks`` (keys ascending) of ``documents``, with FAISS and BM25 built;
        ``checksums``: the documents' own, when known (else computed, which reads every text)."""
        docs = {d.id: d for d in documents}
        table = chunks if isinstance(chunks, ChunkTable) else ChunkTable.from_chunks(chunks, list(docs.values()))
        return cls(
            documents=docs,
            checksums=dict(checksums) if checksums is not None else {d.id: d.checksum for d in documents},
            chunks=table,
            stored_vectors=vectors,
            dense=DenseIndex.build(vectors, table.keys, kind=settings.dense_kind),
            lexical=BM25Index(settings.lexical).build(
                [indexed_text(docs[c.doc_id].title, c.text, settings.title_in_text) for c in table]
            ),
        )

    @classmethod
    def merge(cls, segments: Sequence[Segment], settings: IndexSettings) -> Segment:
        """Adjacent segments as one (their chunks and vectors reused: nothing is embedded)."""
        documents = [d for s in segments for d in s.documents.values()]
        vectors = [s.vectors for s in segments]
        dim = vectors[0].shape[1] if vectors else 384
        return cls.build(
            documents,
            ChunkTable.joined([s.chunks for s in segments], documents),
            np.concatenate(vectors) if vectors else np.zeros((0, dim), dtype=np.float32),
            settings,
            checksums={k: v for s in segments for k, v in s.checksums.items()},
        )

    def with_deleted(self, doc_ids: Iterable[str]) -> Segment | None:
        """This segment less ``doc_ids`` too, as a view over the same stored arrays (nothing is rebuilt or
        written: a commit records the deletions); None when no document is left; itself when it holds none."""
        gone = set(doc_ids) & self.documents.keys()
        if not gone:
            return self
        if len(gone) == len(self.documents):
            return None
        base = self.base or self
        stored = base.chunks
        # Array work over the stored rows (no Python loop over them): a delete from a large segment stays cheap.
        position = stored.position  # (built once per stored segment: a 100k-document one, ~30 ms)
        live = np.ones(len(stored), dtype=bool)
        if self.live_rows is not None:
            live[:] = False
            live[self.live_rows] = True
        codes = np.fromiter((position[d] for d in gone), dtype=np.int64, count=len(gone))
        live[np.isin(stored.doc_rows, codes)] = False
        rows = np.flatnonzero(live).astype(np.int64)
        documents, checksums = dict(self.documents), dict(self.checksums)
        for doc_id in gone:
            del documents[doc_id], checksums[doc_id]
        return Segment(
            documents=documents,
            checksums=checksums,
            chunks=stored.take(rows),
            stored_vectors=base.stored_vectors,
            dense=LiveDense(base.dense, KeySet(stored.keys[~live])),
            lexical=LiveBM25(base.lexical, rows),
            name=base.name,
            home=base.home,
            digest=base.digest,
            deleted=self.deleted | gone,
            base=base,
            live_rows=rows,
        )

    @property
    def size(self) -> int:
        """Live chunks."""
        return len(self.chunks)

    @property
    def dead(self) -> int:
        """Chunks of deleted documents still in the stored files (a merge drops them)."""
        return self.base.size - self.size if self.base is not None else 0

    @property
    def vectors(self) -> Embeddings:
        """The live chunks' vectors, row for row (a copy when documents were deleted: prefer ``vectors_at``)."""
        return self.stored_vectors if self.live_rows is None else self.stored_vectors[self.live_rows]

    def vectors_at(self, rows: npt.NDArray[np.int64]) -> Embeddings:
        """The vectors of live rows ``rows``."""
        return self.stored_vectors[rows if self.live_rows is None else self.live_rows[rows]]

    @property
    def has_vectors(self) -> bool:
        """Whether the float32 vectors are kept beside FAISS (a sharded index served read-only drops them)."""
        return len(self.stored_vectors) == (self.base or self).size

    def drop_vectors(self) -> None:
        """Keep FAISS only (a read-only shard never re-embeds or rebuilds FAISS)."""
        self.stored_vectors = np.zeros((0, self.dense.dim), dtype=np.float32)
        if self.base is not None:
            self.base.drop_vectors()

    @property
    def key_range(self) -> tuple[int, int]:
        return (int(self.keys[0]), int(self.keys[-1])) if len(self.keys) else (0, -1)

    def stored_in(self, segments_dir: Path) -> bool:
        """Whether this very segment is already on disk in ``segments_dir`` (then a commit there lists it)."""
        return self.name is not None and self.home == (segments_dir / self.name).absolute()

    def entry(self) -> dict[str, Any]:
        """This segment's line in a commit manifest: the live counts and the documents deleted from it."""
        return {
            "name": self.name,
            "documents": len(self.documents),
            "chunks": len(self.chunks),
            "manifest_sha256": self.digest,
            "deleted": sorted(self.deleted),
        }

    def row_of(self, key: int) -> int | None:
        at = int(np.searchsorted(self.keys, key))
        return at if at < len(self.keys) and self.keys[at] == key else None

    # ------------------------------------------------------------------------------------------ disk

    def write(self, segments_dir: Path, name: str) -> dict[str, Any]:
        """Write this segment as ``segments_dir/name`` (atomically: a temporary folder renamed into place);
        returns its entry for the commit manifest. A view less deleted documents writes the segment it views (its
        deletions go in the commit)."""
        if self.base is not None:
            self.base.write(segments_dir, name)
            self.name, self.home, self.digest = self.base.name, self.base.home, self.base.digest
            return self.entry()
        segments_dir.mkdir(parents=True, exist_ok=True)
        tmp = segments_dir / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        chars: dict[str, int] = {}
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as fh:
            for doc in self.documents.values():
                record = doc_record(doc)  # (the text read once: a stored document reads it from disk)
                chars[doc.id] = len(record["text"])
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        np.savez(
            tmp / "chunks.npz",
            key=self.chunks.keys,
            doc=self.chunks.doc_rows.astype(np.int64),
            ordinal=self.chunks.ordinals.astype(np.int64),
            start=self.chunks.starts.astype(np.int64),
            end=self.chunks.ends.astype(np.int64),
        )
        np.save(tmp / "vectors.npy", self.stored_vectors, allow_pickle=False)
        self.dense.save(tmp / "dense.faiss")
        self.lexical.save(tmp / "bm25")
        manifest = {
            "name": name,
            "counts": {"documents": len(self.documents), "chunks": len(self.chunks)},
            "dense_index": {"kind": self.dense.kind, "params": self.dense.params},
            "documents": {
                d.id: {"checksum": self.checksums[d.id], "title": d.title, "chars": chars[d.id]}
                for d in self.documents.values()
            },
            **describe_files(tmp),
        }
        write_json(tmp / SEGMENT_MANIFEST, manifest)
        fsync_tree(tmp)
        final = segments_dir / name
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        # The rename is durable only once the directory holding it is: segments/ (and its parent, for a segments/
        # made just now), before any commit names this segment (SQLite and Lucene sync the directory too).
        fsync_dir(segments_dir)
        fsync_dir(segments_dir.parent)
        self.name, self.home, self.digest = name, final.absolute(), sha256(final / SEGMENT_MANIFEST)
        return self.entry()

    @classmethod
    def read(
        cls,
        folder: Path,
        settings: IndexSettings,
        dim: int,
        *,
        verify: bool | str,
        rebuild: str,
        relex: bool = False,
        legacy: dict[str, Any] | None = None,
    ) -> Segment:
        """Load the segment in ``folder``. ``relex``: build BM25 again from the chunks (other BM25 parameters
        than the stored ones). ``legacy``: the manifest of a format-1 generation folder, read as one segment."""
        manifest = legacy
        if manifest is None:
            try:
                manifest = json.loads((folder / SEGMENT_MANIFEST).read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise IndexCorrupt(f"segment {folder} has no readable {SEGMENT_MANIFEST} ({exc}); {rebuild}") from exc
        if verify:
            check_files(folder, manifest, full=verify == "full", rebuild=rebuild)
        try:
            # The text stays in the file, mapped, and is read where it is needed (rag/store/texts.py).
            docs = read_documents(folder / "documents.jsonl")
            arrays = np.load(folder / "chunks.npz", allow_pickle=False)
            # Memory-mapped: the float32 copy is read only by merges and filtered exact searches, so it costs page
            # cache, not resident memory (1,536 bytes a chunk at dim 384); the files never change once written.
            vectors = np.load(folder / "vectors.npy", mmap_mode="r", allow_pickle=False)
            chunks = ChunkTable(arrays["key"], arrays["doc"], arrays["ordinal"], arrays["start"], arrays["end"], docs)
            if len(chunks) and not 0 <= int(chunks.doc_rows.min()) <= int(chunks.doc_rows.max()) < len(docs):
                raise ValueError(f"chunks.npz names documents beyond the {len(docs)} in documents.jsonl")
            info = manifest["dense_index"]
            dense = DenseIndex.load(folder / "dense.faiss", info["kind"], dim, info["params"])
            documents = {d.id: d for d in docs}
            if relex or legacy is not None or not (folder / "bm25" / "lengths.npy").is_file():
                lexical = BM25Index(settings.lexical).build(
                    [indexed_text(documents[c.doc_id].title, c.text, settings.title_in_text) for c in chunks]
                )
            else:
                lexical = BM25Index(settings.lexical).load(folder / "bm25", len(chunks))
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"segment {folder} cannot be read ({exc}); {rebuild}") from exc
        if dense.size != len(chunks) or len(vectors) != len(chunks):
            raise IndexCorrupt(f"segment {folder} holds {len(chunks)} chunks but {dense.size} vectors; {rebuild}")
        return cls(
            documents=documents,
            checksums={k: v["checksum"] for k, v in manifest["documents"].items()},
            chunks=chunks,
            stored_vectors=vectors,
            dense=dense,
            lexical=lexical,
            name=None if legacy is not None else folder.name,
            home=None if legacy is not None else folder.absolute(),
            digest=None if legacy is not None else sha256(folder / SEGMENT_MANIFEST),
        )
