"""A sharded index: several ordinary index folders searched as one, read-only.

On disk::

    index/
      manifest.json      format "rag-sharded", the partition rule, and per shard: folder, live generation,
                         sha256 of that generation's manifest.json (which lists every file's sha256), counts
      shard-000/         an ordinary index folder (CURRENT, gen-*/...), loadable on its own
      shard-001/
      ...

Documents are partitioned by a hash of their id, so a document always lands in the same shard and a re-ingest
touches only the shards whose documents changed. Shard ``i`` numbers its chunk keys from ``i * KEY_SPACE``,
so keys are unique across shards and a merged FAISS result needs no translation.

At query time FAISS results are merged by score (exact for flat shards: the global top k is inside the union
of every shard's top k). BM25 is not decomposable that way: a shard's scores carry the shard's own IDF, so a
rare term in one shard would outweigh the same term in another. ``ShardedBM25`` therefore rescales each term's
per-shard contributions by ``idf_global / idf_shard``, with the global document frequency summed over the
shards at query time: the scores then equal those of one unsharded BM25 except for the length normalisation,
which still uses each shard's own average chunk length (eval/benchmark/ray_bench.py measures what is left).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.dense import DenseIndex, KeySet
from rag.errors import IndexCorrupt, IndexMismatch, IndexNotFound, ReadOnlyIndex, ValidationError
from rag.lexical import BM25Index, top_rows
from rag.store import CURRENT, CorpusIndex, IndexSettings, Prepared, _read_current, _sha256
from rag.types import Chunk, Document, Embeddings

SHARDED_FORMAT = "rag-sharded"
SHARDED_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Shard i numbers its chunk keys from i * KEY_SPACE (2^40 chunks per shard; FAISS ids are int64).
KEY_SPACE = 1 << 40
MAX_SHARDS = 4096


def shard_of(doc_id: str, count: int) -> int:
    """The shard a document belongs to: the first 8 bytes of sha256(id), modulo the shard count."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") % count


def shard_name(number: int) -> str:
    return f"shard-{number:03d}"


def check_shard_count(count: int) -> int:
    if not 1 <= count <= MAX_SHARDS:
        raise ValidationError(f"shards must be between 1 and {MAX_SHARDS}, got {count}")
    return count


def is_sharded(folder: str | Path) -> bool:
    """A folder with a top-level manifest.json and no CURRENT is a sharded index."""
    folder = Path(folder)
    return (folder / MANIFEST).is_file() and not (folder / CURRENT).exists()


def empty_shard(settings: IndexSettings, model: dict[str, Any], number: int) -> CorpusIndex:
    shard = CorpusIndex.empty(settings, model)
    shard.next_key = number * KEY_SPACE
    return shard


def read_manifest(folder: str | Path) -> dict[str, Any]:
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        raise IndexNotFound(f"no sharded index in {folder} (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexCorrupt(f"sharded index manifest {path} is not readable ({exc})") from exc
    if manifest.get("format") != SHARDED_FORMAT or manifest.get("format_version") != SHARDED_FORMAT_VERSION:
        raise IndexMismatch(
            f"{path} is format {manifest.get('format')!r} version {manifest.get('format_version')}, this program "
            f"reads {SHARDED_FORMAT!r} version {SHARDED_FORMAT_VERSION}"
        )
    return manifest


def load_shard_checksums(folder: str | Path) -> dict[str, str]:
    """doc id -> checksum over every shard, read from the manifests only (no vectors loaded)."""
    folder = Path(folder)
    out: dict[str, str] = {}
    if not folder.is_dir():
        return out
    for shard in sorted(folder.glob("shard-*")):
        current = _read_current(shard)
        if current is None:
            continue
        manifest = json.loads((shard / current / "manifest.json").read_text(encoding="utf-8"))
        out.update({k: v["checksum"] for k, v in manifest["documents"].items()})
    return out


def write_manifest(folder: str | Path, count: int) -> dict[str, Any]:
    """Record every shard's live generation and its manifest checksum, then switch manifest.json atomically."""
    folder = Path(folder)
    previous = json.loads((folder / MANIFEST).read_text(encoding="utf-8")) if (folder / MANIFEST).is_file() else {}
    entries = []
    model: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None
    for number in range(count):
        shard = folder / shard_name(number)
        current = _read_current(shard)
        if current is None:
            raise IndexCorrupt(f"shard {shard} has no {CURRENT}; re-run the ingest that builds it")
        inner = json.loads((shard / current / "manifest.json").read_text(encoding="utf-8"))
        model, settings = model or inner["model"], settings or inner["settings"]
        entries.append(
            {
                "name": shard.name,
                "generation": current,
                "manifest_sha256": _sha256(shard / current / "manifest.json"),
                "documents": inner["counts"]["documents"],
                "chunks": inner["counts"]["chunks"],
            }
        )
    manifest = {
        "format": SHARDED_FORMAT,
        "format_version": SHARDED_FORMAT_VERSION,
        "generation": int(previous.get("generation", 0)) + 1,
        "partition": {"rule": "sha256(document id)[:8] as big-endian int, modulo count", "count": count},
        "key_space": KEY_SPACE,
        "model": model,
        "settings": settings,
        "counts": {
            "documents": sum(e["documents"] for e in entries),
            "chunks": sum(e["chunks"] for e in entries),
        },
        "shards": entries,
    }
    tmp = folder / f".tmp-{MANIFEST}-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MANIFEST)
    return manifest


def split_index(index: CorpusIndex, count: int, folder: str | Path) -> dict[str, Any]:
    """Write ``index`` as ``count`` shards in ``folder`` (chunks and vectors reused: nothing is embedded)."""
    check_shard_count(count)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    groups: list[list[Document]] = [[] for _ in range(count)]
    for doc in index.documents.values():
        groups[shard_of(doc.id, count)].append(doc)
    rows: dict[str, list[int]] = {}
    for row, chunk in enumerate(index.chunks):
        rows.setdefault(chunk.doc_id, []).append(row)
    for number, docs in enumerate(groups):
        prepared: dict[str, Prepared] = {}
        for doc in docs:
            doc_rows = rows.get(doc.id, [])
            prepared[doc.id] = (
                [(index.chunks[r].start, index.chunks[r].end) for r in doc_rows],
                index.vectors[doc_rows],
            )
        shard, _ = empty_shard(index.settings, index.model, number).apply(docs, embedder=None, prepared=prepared)
        shard.save(folder / shard_name(number))
    return write_manifest(folder, count)


# ---------------------------------------------------------------------------------------------- searching


class ShardedDense(DenseIndex):
    """Searches every shard's FAISS index and keeps the best ``k`` by score."""

    def __init__(self, parts: Sequence[DenseIndex], key_ranges: Sequence[tuple[int, int]] | None = None) -> None:
        kinds = sorted({p.kind for p in parts})
        super().__init__(kind="+".join(kinds) or "flat", dim=parts[0].dim if parts else 384, params={})
        self.params = {"shards": len(parts)}
        self.parts = list(parts)
        # The smallest and largest chunk key of each part: a filter's keys go only to the parts that hold them.
        self.key_ranges = list(key_ranges) if key_ranges is not None else None

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    def search(
        self, query: Embeddings, k: int, keys: KeySet | npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if keys is None:
            found = [p.search(query, k) for p in self.parts if p.size]
        else:
            keys = keys if isinstance(keys, KeySet) else KeySet(keys)
            found = []
            for i, part in enumerate(self.parts):
                mine = keys.within(*self.key_ranges[i]) if self.key_ranges is not None else keys
                if part.size and len(mine):
                    found.append(part.search(query, k, keys=mine))
        if not found:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        keys = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        order = np.lexsort((keys, -scores))[:k]  # best score first, ties by key
        return keys[order], scores[order]

    def save(self, path: Path) -> None:
        raise ReadOnlyIndex("a sharded dense index is saved shard by shard")


def _key_range(shard: CorpusIndex) -> tuple[int, int]:
    keys = [c.key for c in shard.chunks]
    return (min(keys), max(keys)) if keys else (0, -1)


def lucene_idf(df: int, n: int) -> float:
    """bm25s's default ('lucene') IDF: log(1 + (N - df + 0.5) / (df + 0.5))."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


class ShardedBM25(BM25Index):
    """BM25 over the shards' arrays, as one ranking. ``global_idf`` (the default) rescales every shard's term
    contributions to the IDF over all shards; ``global_idf=False`` merges raw per-shard scores (for measuring)."""

    def __init__(self, parts: Sequence[BM25Index], offsets: Sequence[int], *, global_idf: bool = True) -> None:
        super().__init__(parts[0].settings if parts else BM25Index().settings)
        self.parts = list(parts)
        self.offsets = list(offsets)
        self.size = sum(p.size for p in self.parts)
        self.global_idf = global_idf

    def search(self, query: str, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        tokens = self.tokenize(query)
        if self.size == 0 or not tokens or (rows is not None and not len(rows)):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        # Each shard scores its own rows and keeps its top k (what a shard server would do); the global top k is
        # inside the union of those. A repeated query term counts again, as in bm25s's own get_scores.
        postings = {term: [p.postings(term) for p in self.parts] for term in set(tokens)}
        idf = {t: lucene_idf(sum(len(rows) for rows, _ in ps), self.size) for t, ps in postings.items()}
        found_rows, found_scores = [], []
        kept = None if rows is None else np.asarray(rows, dtype=np.int64)
        for i, (part, offset) in enumerate(zip(self.parts, self.offsets, strict=True)):
            scores = np.zeros(part.size, dtype=np.float32)
            for term in tokens:
                hit_rows, contrib = postings[term][i]
                if len(hit_rows):
                    scale = idf[term] / lucene_idf(len(hit_rows), part.size) if self.global_idf else 1.0
                    scores[hit_rows] += contrib * np.float32(scale)
            mine = None  # a filter's rows in this part, counted from the part's first row
            if kept is not None:
                mine = kept[np.searchsorted(kept, offset) : np.searchsorted(kept, offset + part.size)] - offset
            top, top_scores = top_rows(scores, k, mine)
            found_rows.append(offset + top)
            found_scores.append(top_scores)
        rows_all, scores_all = np.concatenate(found_rows), np.concatenate(found_scores)
        order = np.lexsort((rows_all, -scores_all))[:k]  # best first, ties by row as a stable sort over one array
        return rows_all[order], scores_all[order].astype(np.float32)

    def save(self, folder: Path) -> None:
        raise ReadOnlyIndex("a sharded BM25 index is saved shard by shard")


@dataclass
class ShardedIndex(CorpusIndex):
    """Every shard loaded and searched as one read-only snapshot: what retrieval, the pipeline and the service
    read of a ``CorpusIndex`` (documents, chunks, ``chunk(key)``, ``dense``, ``lexical``) spans all shards. No
    float32 copy of the vectors is kept (FAISS holds them; ``vectors`` is empty). Writes go through ``rag ingest``
    (see docs/scaling.md)."""

    shards: list[CorpusIndex] = field(default_factory=list)
    folder: Path | None = None

    @classmethod
    def combine(cls, shards: Sequence[CorpusIndex], *, global_idf: bool = True, generation: int = 0) -> ShardedIndex:
        if not shards:
            raise IndexCorrupt("a sharded index needs at least one shard")
        first = shards[0]
        documents: dict[str, Document] = {}
        checksums: dict[str, str] = {}
        chunks: list[Chunk] = []
        offsets: list[int] = []
        for shard in shards:
            if shard.model.get("checksum") != first.model.get("checksum") or shard.settings != first.settings:
                raise IndexMismatch("the shards were built with different models or settings; rebuild them together")
            offsets.append(len(chunks))
            documents.update(shard.documents)
            checksums.update(shard.checksums)
            chunks.extend(shard.chunks)
        index = cls(
            settings=first.settings,
            model=first.model,
            documents=documents,
            chunks=chunks,
            vectors=np.zeros((0, int(first.model["dim"])), dtype=np.float32),
            next_key=max(s.next_key for s in shards),
            generation=generation,
            checksums=checksums,
            shards=list(shards),
        )
        index.key_to_row = {c.key: i for i, c in enumerate(chunks)}
        index.dense = ShardedDense(
            [s.dense for s in shards if s.dense is not None],
            [_key_range(s) for s in shards if s.dense is not None],
        )
        index.lexical = ShardedBM25(
            [s.lexical for s in shards if s.lexical is not None], offsets, global_idf=global_idf
        )
        return index

    @classmethod
    def load(  # type: ignore[override]
        cls,
        folder: str | Path,
        *,
        settings: IndexSettings | None = None,
        model: dict[str, Any] | None = None,
        verify: bool | str = True,
        global_idf: bool = True,
    ) -> ShardedIndex:
        """Load every shard the manifest lists; refuse a shard whose live generation is not the one listed."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        rebuild = f"re-run the ingest that wrote it (rag ingest ... --index {folder} --shards N)"
        shards = []
        for entry in manifest["shards"]:
            shard_dir = folder / entry["name"]
            current = _read_current(shard_dir)
            if current != entry["generation"]:
                raise IndexCorrupt(
                    f"shard {shard_dir} is at generation {current}, the manifest lists {entry['generation']} "
                    f"(a write was interrupted or is in progress); {rebuild}"
                )
            if verify and _sha256(shard_dir / current / "manifest.json") != entry["manifest_sha256"]:
                raise IndexCorrupt(f"shard {shard_dir} does not match its checksum in {folder / MANIFEST}; {rebuild}")
            shard = CorpusIndex.load(shard_dir, settings=settings, model=model, verify=verify)
            # Served read-only, a shard never re-embeds or rebuilds FAISS: its float32 copy (1,536 bytes per
            # chunk beside FAISS's own) is not kept.
            shard.vectors = np.zeros((0, int(shard.model["dim"])), dtype=np.float32)
            shards.append(shard)
        index = cls.combine(shards, global_idf=global_idf, generation=int(manifest["generation"]))
        index.folder = folder
        return index

    def apply(self, *args: Any, **kwargs: Any) -> tuple[CorpusIndex, Any]:  # type: ignore[override]
        raise ReadOnlyIndex(
            "this index is sharded and served read-only; add or delete documents with "
            f"rag ingest PATH... --index {self.folder or 'DIR'} --engine ray --shards N (then restart the service)"
        )

    def save(self, folder: str | Path, *, locked: bool = False) -> Path:
        raise ReadOnlyIndex(f"a sharded index is written shard by shard (rag.shards.split_index), not into {folder}")
