"""The index on disk and in memory: documents, chunks, vectors, FAISS and BM25, always consistent.

A ``CorpusIndex`` is an immutable snapshot. Changes (add, replace, delete) build a new snapshot that reuses
every unchanged document's chunks and vectors, so only new text is embedded; the service swaps snapshots
atomically, so a query sees the corpus either before or after a change.

On disk an index is a folder::

    index/
      CURRENT              name of the live generation (replaced atomically)
      gen-000007/
        manifest.json      format version, model id and checksum, dimension, settings, documents, file checksums
        documents.jsonl    every document with its exact text
        chunks.npz         key, document row, ordinal, start, end of every chunk
        vectors.npy        float32 (n, dim), L2-normalised, row i = chunk i
        dense.faiss        the FAISS index (ids = chunk keys)
        bm25/              bm25s arrays and vocabulary (no pickles)

A save writes a new generation folder, flushes it, then points ``CURRENT`` at it with an atomic rename: a
crash at any moment leaves the previous generation loadable.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import ChunkerSettings, chunk_text
from rag.dense import DenseIndex
from rag.errors import DocumentNotFound, IndexBusy, IndexCorrupt, IndexMismatch, IndexNotFound, ValidationError
from rag.lexical import BM25Index, LexicalSettings
from rag.types import Chunk, Document, Embeddings, IngestReport

FORMAT_VERSION = 1
CURRENT = "CURRENT"
#: One writer at a time across processes holds this file locked (``fcntl.flock``), as Lucene's write.lock.
LOCK_FILE = "write.lock"
#: How long a writer waits for another one before giving up with IndexBusy.
WRITE_LOCK_TIMEOUT_S = 300.0
#: Generations kept besides the live one after a commit: a process that began loading the previous one a
#: moment ago (another worker, a `rag ask`) still finds its files.
KEEP_GENERATIONS = 2
EMBED_BATCH = 256

Progress = Callable[[int, int], None]
#: A document chunked and embedded elsewhere: its chunk spans (start, end) and their vectors, row for row.
Prepared = tuple[Sequence[tuple[int, int]], Embeddings]


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


@dataclass
class CorpusIndex:
    """One consistent snapshot of the corpus. Treat as read-only; ``apply`` returns a new one."""

    settings: IndexSettings
    model: dict[str, Any]  # id, checksum, dim
    documents: dict[str, Document] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    vectors: Embeddings = field(default_factory=lambda: np.zeros((0, 384), dtype=np.float32))
    dense: DenseIndex | None = None
    lexical: BM25Index | None = None
    next_key: int = 0
    generation: int = 0
    checksums: dict[str, str] = field(default_factory=dict)  # doc id -> document checksum
    key_to_row: dict[int, int] = field(default_factory=dict)
    # Lookups derived from this snapshot on first use (rag/filters.py); a snapshot never changes, so they hold.
    memo: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def empty(cls, settings: IndexSettings, model: dict[str, Any]) -> CorpusIndex:
        index = cls(settings=settings, model=model, vectors=np.zeros((0, model["dim"]), dtype=np.float32))
        index._rebuild_search()
        return index

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        return [c for c in self.chunks if c.doc_id == doc_id]

    def get(self, doc_id: str) -> Document:
        try:
            return self.documents[doc_id]
        except KeyError:
            raise DocumentNotFound(doc_id) from None

    def chunk(self, key: int) -> Chunk:
        return self.chunks[self.key_to_row[key]]

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
        todo: list[Document] = []
        for doc in upserts:
            old = self.checksums.get(doc.id)
            if old == doc.checksum:
                unchanged.append(doc.id)
                continue
            (replaced if old is not None else added).append(doc.id)
            todo.append(doc)
        report = IngestReport(
            added=tuple(added),
            replaced=tuple(replaced),
            unchanged=tuple(unchanged),
            deleted=tuple(delete_ids),
            skipped=tuple(skipped),
        )
        if not todo and not delete_ids:
            return self, replace(report, seconds=time.perf_counter() - started)

        gone = set(delete_ids) | {d.id for d in todo}
        keep_rows = [i for i, c in enumerate(self.chunks) if c.doc_id not in gone]
        new_chunks: list[Chunk] = []
        texts: list[str] = []
        key = self.next_key
        prepared = prepared or {}
        given: list[tuple[int, Embeddings]] = []  # (first row, vectors) of prepared documents
        for doc in todo:
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

        documents = {k: v for k, v in self.documents.items() if k not in gone}
        documents.update({d.id: d for d in todo})
        checksums = {k: v for k, v in self.checksums.items() if k not in gone}
        checksums.update({d.id: d.checksum for d in todo})
        snapshot = CorpusIndex(
            settings=self.settings,
            model=self.model,
            documents=documents,
            chunks=[self.chunks[i] for i in keep_rows] + new_chunks,
            vectors=np.concatenate([self.vectors[keep_rows], new_vectors]) if keep_rows else new_vectors,
            next_key=key,
            generation=self.generation,
            checksums=checksums,
        )
        snapshot._rebuild_search(previous=self, removed_rows=len(self.chunks) - len(keep_rows), added=new_chunks)
        return snapshot, replace(report, chunks_embedded=len(new_chunks), seconds=time.perf_counter() - started)

    def _rebuild_search(
        self, previous: CorpusIndex | None = None, removed_rows: int = 0, added: Sequence[Chunk] = ()
    ) -> None:
        keys = np.array([c.key for c in self.chunks], dtype=np.int64)
        self.key_to_row = {int(k): i for i, k in enumerate(keys)}
        from rag.dense import RETRAIN_GROWTH

        prev = previous.dense if previous is not None else None
        reuse = (
            prev is not None
            and prev.kind.startswith("ivf")
            and len(self.chunks) <= RETRAIN_GROWTH * prev.params.get("trained_on", 0)
        )
        if reuse and previous is not None and previous.dense is not None:
            import faiss

            dense = DenseIndex(previous.dense.kind, previous.dense.dim, dict(previous.dense.params))
            dense.index = faiss.clone_index(previous.dense.index)
            removed = np.array([k for k in previous.key_to_row if k not in self.key_to_row], dtype=np.int64)
            if len(removed):
                dense.index.remove_ids(removed)
            if added:
                rows = [self.key_to_row[c.key] for c in added]
                dense.index.add_with_ids(self.vectors[rows], keys[rows])
            self.dense = dense
        else:
            self.dense = DenseIndex.build(self.vectors, keys, kind=self.settings.dense_kind)
        self.lexical = BM25Index(self.settings.lexical).build(
            [indexed_text(self.documents[c.doc_id].title, c.text, self.settings.title_in_text) for c in self.chunks]
        )

    # ------------------------------------------------------------------------------------------ manifest

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "generation": self.generation,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": self.model,
            "settings": self.settings.as_dict(),
            "dense_index": {
                "kind": self.dense.kind if self.dense else None,
                "params": self.dense.params if self.dense else {},
            },
            "counts": {"documents": len(self.documents), "chunks": len(self.chunks)},
            "next_key": self.next_key,
            "documents": {
                d.id: {"checksum": self.checksums[d.id], "title": d.title, "chars": len(d.text)}
                for d in self.documents.values()
            },
        }

    # ------------------------------------------------------------------------------------------ disk

    def save(self, folder: str | Path, *, locked: bool = False) -> Path:
        """Write a new generation and switch ``CURRENT`` to it atomically; returns the generation folder.

        Takes the folder's write lock unless the caller holds it (``locked``: ``Engine.write`` holds it from
        reading the latest commit to this switch, so that no other writer's commit is lost)."""
        folder = Path(folder)
        if not locked:
            with write_lock(folder):
                return self.save(folder, locked=True)
        folder.mkdir(parents=True, exist_ok=True)
        for stray in folder.glob(".tmp-*"):  # only a crashed writer's: the lock keeps the others out
            shutil.rmtree(stray, ignore_errors=True)
        # Above every generation here, whatever CURRENT says (a rebuild may replace a garbled CURRENT).
        number = max([self.generation, *(_generation_number(g.name) for g in folder.glob("gen-*"))]) + 1
        name = f"gen-{number:06d}"
        tmp = folder / f".tmp-{name}-{os.getpid()}"
        tmp.mkdir()
        self.generation = number
        with open(tmp / "documents.jsonl", "w", encoding="utf-8") as fh:
            for doc in self.documents.values():
                fh.write(json.dumps(_doc_record(doc), ensure_ascii=False) + "\n")
        doc_rows = {doc_id: i for i, doc_id in enumerate(self.documents)}
        np.savez(
            tmp / "chunks.npz",
            key=np.array([c.key for c in self.chunks], dtype=np.int64),
            doc=np.array([doc_rows[c.doc_id] for c in self.chunks], dtype=np.int64),
            ordinal=np.array([c.ordinal for c in self.chunks], dtype=np.int64),
            start=np.array([c.start for c in self.chunks], dtype=np.int64),
            end=np.array([c.end for c in self.chunks], dtype=np.int64),
        )
        np.save(tmp / "vectors.npy", self.vectors, allow_pickle=False)
        assert self.dense is not None and self.lexical is not None
        self.dense.save(tmp / "dense.faiss")
        self.lexical.save(tmp / "bm25")
        manifest = self.manifest()
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        manifest["files"] = {str(p.relative_to(tmp)): _sha256(p) for p in files}
        manifest["file_bytes"] = {str(p.relative_to(tmp)): p.stat().st_size for p in files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        final = folder / name
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(folder)
        pointer = folder / f".tmp-{CURRENT}-{os.getpid()}"
        with open(pointer, "w", encoding="utf-8") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer, folder / CURRENT)
        _fsync_dir(folder)
        older = sorted((g for g in folder.glob("gen-*") if g.name != name), key=lambda g: _generation_number(g.name))
        for old in older[: max(0, len(older) - KEEP_GENERATIONS)]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    @classmethod
    def load(
        cls,
        folder: str | Path,
        *,
        settings: IndexSettings | None = None,
        model: dict[str, Any] | None = None,
        verify: bool | str = True,
    ) -> CorpusIndex:
        """Load the live generation; refuse one built with another model or other settings.

        ``verify``: True checks every file's size and the checksums of the files under 1 MiB (a load costs
        what it reads, not a hash of every vector); ``"full"`` hashes every byte (``rag verify``); False skips."""
        folder = Path(folder)
        rebuild = f"rebuild it with: rag ingest <your files> --index {folder} --rebuild"
        current = _read_current(folder)
        if current is None:
            raise IndexNotFound(
                f"no index in {folder} (no {CURRENT} file); build one with: rag ingest seeds/ --index {folder}"
            )
        gen = folder / current
        try:
            manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise IndexCorrupt(f"index {gen} has no readable manifest.json ({exc}); {rebuild}") from exc
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexMismatch(
                f"index {gen} has format version {manifest.get('format_version')}, "
                f"this program reads {FORMAT_VERSION}; {rebuild}"
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
        if verify:
            check_files(gen, manifest, full=verify == "full", rebuild=rebuild)
        try:
            docs = [
                _doc_from_record(json.loads(line))
                # split("\n"), not splitlines(): ensure_ascii=False leaves U+0085, U+2028 and U+2029 raw in the lines
                for line in (gen / "documents.jsonl").read_text(encoding="utf-8").split("\n")
                if line
            ]
            arrays = np.load(gen / "chunks.npz", allow_pickle=False)
            vectors = np.load(gen / "vectors.npy", allow_pickle=False)
        except (OSError, ValueError, KeyError) as exc:
            raise IndexCorrupt(f"index {gen} cannot be read ({exc}); {rebuild}") from exc
        documents = {d.id: d for d in docs}
        chunks = []
        for key, row, ordinal, start, end in zip(
            arrays["key"], arrays["doc"], arrays["ordinal"], arrays["start"], arrays["end"], strict=True
        ):
            doc = docs[int(row)]
            chunks.append(Chunk(int(key), doc.id, int(ordinal), int(start), int(end), doc.text[int(start) : int(end)]))
        index = cls(
            settings=stored,
            model=manifest["model"],
            documents=documents,
            chunks=chunks,
            vectors=vectors,
            next_key=int(manifest["next_key"]),
            generation=int(manifest["generation"]),
            checksums={k: v["checksum"] for k, v in manifest["documents"].items()},
        )
        index.key_to_row = {c.key: i for i, c in enumerate(chunks)}
        dense_info = manifest["dense_index"]
        index.dense = DenseIndex.load(
            gen / "dense.faiss", dense_info["kind"], int(manifest["model"]["dim"]), dense_info["params"]
        )
        if relex:
            index.lexical = BM25Index(stored.lexical).build(
                [indexed_text(documents[c.doc_id].title, c.text, stored.title_in_text) for c in chunks]
            )
        else:
            index.lexical = BM25Index(stored.lexical).load(gen / "bm25", len(chunks))
        if index.dense.size != len(chunks) or len(vectors) != len(chunks):
            raise IndexCorrupt(f"index {gen} holds {len(chunks)} chunks but {index.dense.size} vectors; {rebuild}")
        return index


def index_exists(folder: str | Path) -> bool:
    return _read_current(Path(folder)) is not None


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


def _doc_record(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "title": doc.title,
        "text": doc.text,
        "url": doc.url,
        "published": doc.published,
        "meta": dict(doc.meta),
        "source": doc.source,
    }


def _doc_from_record(rec: dict[str, Any]) -> Document:
    return Document(
        id=rec["id"],
        title=rec["title"],
        text=rec["text"],
        url=rec.get("url"),
        published=rec.get("published"),
        meta=rec.get("meta") or {},
        source=rec.get("source"),
    )


#: Files up to this size are hashed at every load; larger ones (vectors, FAISS, BM25 arrays) have their size
#: checked, and are hashed by ``rag verify`` (at 1M chunks the vectors alone are 1.5 GB: seconds to hash).
HASH_ON_LOAD_BYTES = 1 << 20


def check_files(gen: Path, manifest: Mapping[str, Any], *, full: bool, rebuild: str) -> None:
    """Every file the manifest lists is there with its size; its sha256 matches when ``full`` or when small.
    Manifests from before sizes were recorded get the full check."""
    sizes = manifest.get("file_bytes") or {}
    for name, digest in manifest.get("files", {}).items():
        path = gen / name
        if not path.is_file():
            raise IndexCorrupt(f"index file {path} is missing; {rebuild}")
        size = path.stat().st_size
        if name in sizes and size != sizes[name]:
            raise IndexCorrupt(f"index file {path} has {size} bytes, its manifest says {sizes[name]}; {rebuild}")
        if (full or name not in sizes or size <= HASH_ON_LOAD_BYTES) and _sha256(path) != digest:
            raise IndexCorrupt(f"index file {path} does not match its manifest's checksum; {rebuild}")


def current_generation(folder: str | Path) -> str | None:
    """The live generation's folder name, or None when the folder holds no index."""
    return _read_current(Path(folder))


@contextlib.contextmanager
def write_lock(folder: str | Path, timeout: float = WRITE_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the index folder's write lock (``write.lock``, ``fcntl.flock``): one writer at a time across
    processes. A second writer waits up to ``timeout`` seconds, then gets IndexBusy. The lock goes with the
    process, so a crashed writer never leaves it held."""
    import fcntl

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "a+b") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusy(
                        f"another writer has held {folder / LOCK_FILE} for over {timeout:.0f} s; "
                        "try again when it is done"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read_current(folder: Path) -> str | None:
    """``CURRENT``'s generation name; None when there is no ``CURRENT``. A ``CURRENT`` that names no
    generation is an error, never "no index" (the next write would otherwise start an empty index)."""
    try:
        name = (folder / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexCorrupt(f"cannot read {folder / CURRENT} ({exc}); {_recover(folder)}") from exc
    if not (name.startswith("gen-") and "/" not in name and (folder / name).is_dir()):
        raise IndexCorrupt(
            f"{folder / CURRENT} names {name[:80]!r}, which is not a generation here; {_recover(folder)}"
        )
    return name


def _recover(folder: Path) -> str:
    kept = sorted((g.name for g in folder.glob("gen-*") if (g / "manifest.json").is_file()), key=_generation_number)
    if kept:
        return f"to go back to the newest complete generation: echo {kept[-1]} > {folder / CURRENT}"
    return f"rebuild it with: rag ingest <your files> --index {folder} --rebuild"


def _generation_number(name: str) -> int:
    try:
        return int(name.removeprefix("gen-"))
    except ValueError:
        return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    for path in [folder, *[p for p in folder.rglob("*") if p.is_dir()]]:
        _fsync_dir(path)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
