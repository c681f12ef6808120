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
rare term in one shard would outweigh the same term in another. A sharded index is therefore searched as the
segments of one index are (rag/store/search.py): the document frequencies and the average chunk length are
summed over every shard's segments at query time, so the scores equal those of one unsharded BM25.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import IndexCorrupt, IndexMismatch, IndexNotFound, ReadOnlyIndex, ValidationError
from rag.store import CURRENT, CorpusIndex, IndexSettings, Prepared, read_current, sha256, stored_checksums
from rag.store.search import MultiBM25, MultiDense
from rag.types import Document

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
        out.update(stored_checksums(shard))
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
        current = read_current(shard)
        if current is None:
            raise IndexCorrupt(f"shard {shard} has no {CURRENT}; re-run the ingest that builds it")
        inner = json.loads((shard / current / "manifest.json").read_text(encoding="utf-8"))
        model, settings = model or inner["model"], settings or inner["settings"]
        entries.append(
            {
                "name": shard.name,
                "generation": current,
                "manifest_sha256": sha256(shard / current / "manifest.json"),
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
    spans: dict[str, list[tuple[int, int]]] = {}
    for row, chunk in enumerate(index.chunks):  # (one pass: a chunk read by row reads its document's text)
        rows.setdefault(chunk.doc_id, []).append(row)
        spans.setdefault(chunk.doc_id, []).append((chunk.start, chunk.end))
    for number, docs in enumerate(groups):
        prepared: dict[str, Prepared] = {}
        for doc in docs:
            doc_rows = rows.get(doc.id, [])
            prepared[doc.id] = (
                spans.get(doc.id, []),
                index.vectors_at(np.asarray(doc_rows, dtype=np.int64)),
            )
        shard, _ = empty_shard(index.settings, index.model, number).apply(docs, embedder=None, prepared=prepared)
        shard.save(folder / shard_name(number))
    return write_manifest(folder, count)


# ---------------------------------------------------------------------------------------------- searching

#: The shards' searchers are the segments' (rag/store/search.py): a sharded index is its shards' segments.
ShardedDense = MultiDense
ShardedBM25 = MultiBM25


@dataclass(eq=False)
class ShardedIndex(CorpusIndex):
    """Every shard loaded and searched as one read-only snapshot: the segments of all the shards, in shard
    order (shard ``i``'s keys start at ``i * KEY_SPACE``, so keys ascend), searched like one index's segments.
    No float32 copy of the vectors is kept (FAISS holds them). Writes go through ``rag ingest`` (see
    docs/scaling.md)."""

    shards: list[CorpusIndex] = field(default_factory=list)
    folder: Path | None = None

    @classmethod
    def combine(cls, shards: Sequence[CorpusIndex], *, global_idf: bool = True, generation: int = 0) -> ShardedIndex:
        if not shards:
            raise IndexCorrupt("a sharded index needs at least one shard")
        first = shards[0]
        for shard in shards:
            if shard.model.get("checksum") != first.model.get("checksum") or shard.settings != first.settings:
                raise IndexMismatch("the shards were built with different models or settings; rebuild them together")
        return cls(
            settings=first.settings,
            model=first.model,
            segments=[segment for shard in shards for segment in shard.segments],
            next_key=max(s.next_key for s in shards),
            generation=generation,
            global_stats=global_idf,
            shards=list(shards),
        )

    @classmethod
    def load(  # type: ignore[override]
        cls,
        folder: str | Path,
        *,
        settings: IndexSettings | None = None,
        model: dict[str, Any] | None = None,
        verify: bool | str = True,
        reuse: CorpusIndex | None = None,
        global_idf: bool = True,
    ) -> ShardedIndex:
        """Load every shard the manifest lists; refuse a shard whose live generation is not the one listed."""
        folder = Path(folder)
        manifest = read_manifest(folder)
        rebuild = f"re-run the ingest that wrote it (rag ingest ... --index {folder} --shards N)"
        shards = []
        for entry in manifest["shards"]:
            shard_dir = folder / entry["name"]
            current = read_current(shard_dir)
            if current != entry["generation"]:
                raise IndexCorrupt(
                    f"shard {shard_dir} is at generation {current}, the manifest lists {entry['generation']} "
                    f"(a write was interrupted or is in progress); {rebuild}"
                )
            if verify and sha256(shard_dir / current / "manifest.json") != entry["manifest_sha256"]:
                raise IndexCorrupt(f"shard {shard_dir} does not match its checksum in {folder / MANIFEST}; {rebuild}")
            shard = CorpusIndex.load(shard_dir, settings=settings, model=model, verify=verify)
            # Served read-only, a shard never re-embeds or rebuilds FAISS: its float32 copy (1,536 bytes per
            # chunk beside FAISS's own) is not kept.
            for segment in shard.segments:
                segment.drop_vectors()
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
