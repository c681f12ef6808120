"""Ingest on Ray Data: files are read and parsed by Ray tasks, chunked and embedded by a pool of actors that
each load the model once, and the results are written as the same index folder ``rag ingest`` writes (or as a
sharded index, rag/shards.py). Needs the ``ray`` extra (``pip install '.[ray]'``); nothing else imports it.

The driver streams the actors' output into a staging folder (``DIR/.staging/``), one file per batch of
documents, before anything else happens. An interrupted run leaves those files; the next run with the same
settings skips every document already staged (or already in the index with the same checksum) and embeds only
the rest. Once all is staged the driver applies it to the index (``CorpusIndex.apply(prepared=...)``, the
local path's own incremental update, so keys, offsets and manifests come out as the local path writes them),
saves, and removes the staging folder.

Paths must be readable from every Ray node (a shared file system) when ``address`` names a cluster.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import ChunkerSettings, chunk_text
from rag.errors import LoadError, RagError, ValidationError
from rag.lexical import LexicalSettings
from rag.loaders import DEFAULT_MAX_BYTES, SUPPORTED_SUFFIXES, load_file, plan_files
from rag.shards import (
    check_shard_count,
    empty_shard,
    is_sharded,
    load_shard_checksums,
    read_manifest,
    shard_name,
    shard_of,
    write_manifest,
)
from rag.store import EMBED_BATCH, CorpusIndex, IndexSettings, Prepared, indexed_text, read_current, stored_checksums
from rag.store.files import fsync_dir
from rag.types import Document, IngestReport

log = logging.getLogger("rag.distributed")

STAGING = ".staging"
INSTALL_HINT = "the ray engine needs Ray: pip install '.[ray]' (or: pip install 'ray[data]==2.60.0')"


@dataclass(frozen=True, slots=True)
class RayOptions:
    address: str | None = None  # None: start a local Ray on this machine
    workers: int = 2  # embedding actors, each loading the model once
    cpus_per_worker: float = 1.0  # Ray CPUs reserved per actor
    threads: int | None = None  # ONNX threads per actor (default: cpus_per_worker, at least 1)
    num_cpus: int | None = None  # CPUs a local Ray may use (default: workers * cpus_per_worker)
    batch_docs: int = 8  # documents per actor call, and per staged file
    embed_backend: str = "onnx-int8"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValidationError(f"workers must be at least 1, got {self.workers}")
        if self.batch_docs < 1:
            raise ValidationError(f"batch_docs must be at least 1, got {self.batch_docs}")


@dataclass
class RayStats:
    """Where a distributed ingest spent its time (seconds): Ray's own costs named apart from the work."""

    ray_init: float = 0.0
    load: float = 0.0  # reading and parsing files on Ray, until the driver holds every document
    pipeline: float = 0.0  # chunk + embed on the actors, wall, until every result is staged
    actor_model_load: list[float] = field(default_factory=list)  # per actor
    actor_compute: float = 0.0  # chunk + embed inside the actors, summed over calls
    assemble: float = 0.0  # apply the staged results to the index, build BM25/FAISS, save
    total: float = 0.0
    documents_staged: int = 0  # by this run
    documents_resumed: int = 0  # found staged by an earlier, interrupted run
    parts: int = 0


# ---------------------------------------------------------------------------------------------- Ray stages


def _load_rows(row: dict[str, Any], max_bytes: int) -> list[dict[str, Any]]:
    """One planned file (path and the id ``plan_files`` gave it) -> one row per document (or per skipped
    item), in file order."""
    path = Path(row["file"])
    if not path.exists():
        return [_skip_row(row["order"], 0, str(path), "no such file or folder")]
    result = load_file(path, max_bytes, doc_id=row["doc_id"])
    out = [_skip_row(row["order"], i, where, why) for i, (where, why) in enumerate(result.skipped)]
    for pos, doc in enumerate(result.documents):
        out.append(
            {
                "kind": "doc",
                "order": row["order"],
                "pos": pos,
                "id": doc.id,
                "title": doc.title,
                "text": doc.text,
                "url": doc.url or "",
                "published": doc.published or "",
                "meta": json.dumps(dict(doc.meta), ensure_ascii=False),
                "source": doc.source or "",
                "checksum": doc.checksum,
            }
        )
    return out


def _skip_row(order: int, pos: int, where: str, why: str) -> dict[str, Any]:
    empty = {k: "" for k in ("id", "title", "text", "url", "published", "meta", "source", "checksum")}
    return {**empty, "kind": "skip", "order": order, "pos": pos, "source": where, "text": why}


def _document(row: dict[str, Any]) -> Document:
    return Document(
        id=str(row["id"]),
        title=str(row["title"]),
        text=str(row["text"]),
        url=str(row["url"]) or None,
        published=str(row["published"]) or None,
        meta=json.loads(str(row["meta"])),
        source=str(row["source"]) or None,
    )


class ChunkEmbedActor:
    """A Ray actor: loads the embedder once, then chunks and embeds batches of documents exactly as
    ``CorpusIndex.apply`` does (same chunker, same title-in-text, same batches of EMBED_BATCH texts)."""

    def __init__(self, settings: dict[str, Any], backend: str, threads: int) -> None:
        from rag.embedding import Embedder

        started = time.perf_counter()
        self.settings = settings_from_dict(settings)
        self.embedder = Embedder(backend=backend, threads=threads).load()
        self.load_seconds = time.perf_counter() - started
        self.first = True

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        spans_per_doc: list[list[tuple[int, int]]] = []
        texts: list[str] = []
        for title, text in zip(batch["title"], batch["text"], strict=True):
            spans = [
                (s.start, s.end) for s in chunk_text(str(text), self.embedder.token_offsets, self.settings.chunker)
            ]
            spans_per_doc.append(spans)
            texts.extend(indexed_text(str(title), str(text)[a:b], self.settings.title_in_text) for a, b in spans)
        parts = [self.embedder.encode(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)
        out_spans, out_vectors, row = [], [], 0
        for spans in spans_per_doc:
            out_spans.append(np.asarray(spans, dtype=np.int64).reshape(-1, 2).tobytes())
            out_vectors.append(np.ascontiguousarray(vectors[row : row + len(spans)], dtype=np.float32).tobytes())
            row += len(spans)
        n = len(spans_per_doc)
        load_seconds = [self.load_seconds if self.first else -1.0] + [-1.0] * (n - 1)
        self.first = False
        return {
            "id": batch["id"],
            "checksum": batch["checksum"],
            "spans": np.array(out_spans, dtype=object),
            "vectors": np.array(out_vectors, dtype=object),
            "dim": np.full(n, self.embedder.dim, dtype=np.int64),
            "compute_seconds": np.full(n, (time.perf_counter() - started) / max(n, 1)),
            "load_seconds": np.array(load_seconds),
        }


def settings_from_dict(data: dict[str, Any]) -> IndexSettings:
    return IndexSettings(
        chunker=ChunkerSettings(**data["chunker"]),
        lexical=LexicalSettings(**data["lexical"]),
        title_in_text=bool(data["title_in_text"]),
        dense_kind=str(data.get("dense_kind", "auto")),
    )


# ---------------------------------------------------------------------------------------------- staging


class Staging:
    """Results staged by the driver as they stream in: one .npz per batch, written atomically."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]) -> None:
        self.folder = folder
        stamp = folder / "staging.json"
        if folder.is_dir():
            try:
                same = json.loads(stamp.read_text(encoding="utf-8")) == fingerprint
            except (OSError, json.JSONDecodeError):
                same = False
            if not same:  # staged with another model or other settings: useless now
                shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(fingerprint, sort_keys=True), encoding="utf-8")

    def checksums(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in sorted(self.folder.glob("part-*.npz")):
            with np.load(part, allow_pickle=False) as arrays:
                out.update(zip(arrays["id"].tolist(), arrays["checksum"].tolist(), strict=True))
        return out

    def write(
        self, ids: Sequence[str], checksums: Sequence[str], spans: Sequence[bytes], vectors: Sequence[bytes], dim: int
    ) -> None:
        name = hashlib.sha256("\n".join(f"{i}\t{c}" for i, c in zip(ids, checksums, strict=True)).encode()).hexdigest()
        span_arrays = [np.frombuffer(s, dtype=np.int64).reshape(-1, 2) for s in spans]
        tmp = self.folder / f".tmp-{name[:24]}-{os.getpid()}.npz"
        np.savez(
            tmp,
            id=np.array(ids, dtype=str),
            checksum=np.array(checksums, dtype=str),
            count=np.array([len(s) for s in span_arrays], dtype=np.int64),
            spans=np.concatenate(span_arrays) if span_arrays else np.zeros((0, 2), dtype=np.int64),
            vectors=np.frombuffer(b"".join(vectors), dtype=np.float32).reshape(-1, dim),
        )
        with open(tmp, "rb") as fh:  # staged work survives a power loss, not only a crash
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / f"part-{name[:24]}.npz")
        fsync_dir(self.folder)

    def prepared(self) -> dict[str, tuple[str, Prepared]]:
        """doc id -> (checksum, (spans, vectors)) of everything staged."""
        out: dict[str, tuple[str, Prepared]] = {}
        for part in sorted(self.folder.glob("part-*.npz")):
            with np.load(part, allow_pickle=False) as arrays:
                row = 0
                for doc_id, checksum, count in zip(arrays["id"], arrays["checksum"], arrays["count"], strict=True):
                    n = int(count)
                    spans = [(int(a), int(b)) for a, b in arrays["spans"][row : row + n]]
                    out[str(doc_id)] = (str(checksum), (spans, arrays["vectors"][row : row + n]))
                    row += n
        return out

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- the ingest


def start_ray(options: RayOptions) -> float:
    """Join ``options.address`` or start a local Ray (bounded to the CPUs asked for); returns seconds taken."""
    try:
        import ray
    except ImportError as exc:
        raise RagError(INSTALL_HINT) from exc
    started = time.perf_counter()
    if not ray.is_initialized():
        if options.address:
            ray.init(address=options.address, log_to_driver=False)
        else:
            cpus = options.num_cpus or max(1, int(round(options.workers * options.cpus_per_worker)))
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    return time.perf_counter() - started


def ingest(
    paths: Iterable[str | Path],
    index_dir: str | Path,
    *,
    settings: IndexSettings,
    model: dict[str, Any],
    options: RayOptions = RayOptions(),
    shards: int | None = None,
    deletes: Sequence[str] = (),
    sync: bool = False,
    rebuild: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    on_part: Callable[[int], None] | None = None,
) -> tuple[IngestReport, RayStats]:
    """Load, chunk and embed ``paths`` on Ray and apply them to the index in ``index_dir`` (created when missing).

        Documents take the ids ``rag.loaders.plan_files`` gives, as the local path does. ``shards``: write (or
        update) a sharded index with that many shards; None keeps the folder's layout (an ordinary index unless it
        is already sharded). ``rebuild``: build a new index beside the live one (``.NAME.rebuild``), which stays
    live until the new one is complete and is then swapped in.
        ``on_part`` is called with the count of staged files after each one is written (a progress hook; raising
        from it interrupts the run, as a crash would).

        Raises LoadError, and writes nothing, when no usable document is found (unless only ``deletes`` are asked
        for, without ``sync``): ``rebuild`` would remove the index and ``sync`` delete every document for nothing.
    """
    started = time.perf_counter()
    given = list(paths)
    folder = Path(index_dir)
    stats = RayStats()
    if rebuild:
        if shards is not None:
            check_shard_count(shards)
    else:
        _shard_count(folder, shards)  # a bad --shards fails before any work

    # 1. read and parse the files on Ray; the driver holds the documents (the index stores their text anyway)
    t0 = time.perf_counter()
    documents, skipped, ray_init = _load_documents(given, options, max_bytes)
    stats.ray_init += ray_init
    stats.load = time.perf_counter() - t0 - ray_init
    if not documents and (sync or not deletes):
        raise LoadError(_nothing_usable(given, skipped))
    by_id = {d.id: d for d in documents}
    live = folder  # where the finished index is
    first_generation = 0
    if rebuild and ((folder / "CURRENT").exists() or is_sharded(folder)):
        # Built beside the live index, which stays live until the new one is swapped in at the end. A run
        # interrupted before that keeps what it staged there (the next --rebuild resumes from it).
        if (folder / "CURRENT").exists():
            current = read_current(folder)
            first_generation = int(current.removeprefix("gen-")) if current else 0
        folder = folder.parent / f".{folder.name}.rebuild"
        if (folder / "CURRENT").exists() or is_sharded(folder):
            shutil.rmtree(folder)
    shard_count = _shard_count(folder, shards)

    # 2. what is already done: in the index with the same checksum, or staged by an interrupted run
    fingerprint = {"model": model.get("checksum"), "settings": settings.as_dict(), "backend": options.embed_backend}
    staging = Staging(folder / STAGING, fingerprint)
    indexed = _indexed_checksums(folder, shard_count)
    staged = staging.checksums()
    changed = [d for d in documents if indexed.get(d.id) != d.checksum]
    todo = [d for d in changed if staged.get(d.id) != d.checksum]
    stats.documents_resumed = len(changed) - len(todo)

    # 3. chunk + embed the rest on the actor pool, staging each batch as it arrives
    t0 = time.perf_counter()
    if todo:
        import ray.data  # started by _load_documents: there were files to read

        threads = options.threads or max(1, int(options.cpus_per_worker))
        work = ray.data.from_items(
            [{"id": d.id, "checksum": d.checksum, "title": d.title, "text": d.text} for d in todo]
        )
        embedded = work.map_batches(
            ChunkEmbedActor,
            fn_constructor_kwargs={
                "settings": {**settings.as_dict(), "dense_kind": settings.dense_kind},
                "backend": options.embed_backend,
                "threads": threads,
            },
            batch_size=options.batch_docs,
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_cpus=options.cpus_per_worker,
        )
        for batch in embedded.iter_batches(batch_size=options.batch_docs, batch_format="numpy"):
            dim = int(batch["dim"][0])
            if dim != int(model["dim"]):
                raise RagError(f"the workers' model gives {dim}-d vectors, the index expects {model['dim']}")
            staging.write(
                [str(x) for x in batch["id"]],
                [str(x) for x in batch["checksum"]],
                list(batch["spans"]),
                list(batch["vectors"]),
                dim,
            )
            stats.parts += 1
            stats.documents_staged += len(batch["id"])
            stats.actor_compute += float(np.sum(batch["compute_seconds"]))
            stats.actor_model_load.extend(float(x) for x in batch["load_seconds"] if x >= 0)
            if on_part is not None:
                on_part(stats.parts)
    stats.pipeline = time.perf_counter() - t0

    # 4. apply everything staged to the index, the local path's incremental update
    t0 = time.perf_counter()
    ready = staging.prepared()
    prepared = {
        k: v for k, (checksum, v) in ready.items() if by_id.get(k) is not None and by_id[k].checksum == checksum
    }
    missing = [d.id for d in documents if indexed.get(d.id) != d.checksum and d.id not in prepared]
    if missing:
        raise RagError(f"{len(missing)} documents were not embedded (first: {missing[0]!r}); run the ingest again")
    wanted = set(by_id)
    delete_ids = list(dict.fromkeys([*deletes, *([k for k in indexed if k not in wanted] if sync else [])]))
    report = _apply(folder, documents, delete_ids, prepared, skipped, settings, model, shard_count, first_generation)
    staging.remove()
    if folder != live:
        _swap_in(folder, live)
    stats.assemble = time.perf_counter() - t0
    stats.total = time.perf_counter() - started
    return replace(report, seconds=stats.total), stats


def _swap_in(built: Path, live: Path) -> None:
    """Put the index built in ``built`` where ``live`` is.

    An unsharded index takes it as an ordinary commit: its segments are written into ``live`` and ``CURRENT``
    switches to a commit that lists only them, under ``live``'s write lock, so a concurrent ``rag ingest`` waits
    for it (and then starts from it) and a process loading meanwhile sees the old commit or the new one, never
    no index. A sharded index (or one replacing a sharded one) is two renames, each made durable (the folder's
    parent synced) before the old one is removed."""
    if not is_sharded(built) and not is_sharded(live) and (built / "CURRENT").exists():
        CorpusIndex.load(built).save(live)  # takes the write lock; the old segments go with the old commits
        shutil.rmtree(built)
        return
    old = live.parent / f".{live.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if live.exists():
        os.rename(live, old)
    os.rename(built, live)
    fsync_dir(live.parent)
    shutil.rmtree(old, ignore_errors=True)


def _load_documents(
    paths: Sequence[str | Path], options: RayOptions, max_bytes: int
) -> tuple[list[Document], list[tuple[str, str]], float]:
    """The documents under ``paths``, read and parsed on Ray, and what was skipped, with the ids, order,
    duplicate rule and messages of ``rag.loaders.load_paths``; plus the seconds Ray took to start (it is
    started only when there is a file to read)."""
    planned, skipped = plan_files(paths)
    rows: list[dict[str, Any]] = []
    ray_init = 0.0
    if any(path.exists() for path, _ in planned):
        ray_init = start_ray(options)
        import ray.data

        items = ray.data.from_items(
            [{"file": str(path), "doc_id": doc_id, "order": i} for i, (path, doc_id) in enumerate(planned)]
        )
        rows = items.flat_map(functools.partial(_load_rows, max_bytes=max_bytes)).take_all()
    else:  # only missing paths (or none): no need to start Ray to say so
        rows = [_skip_row(i, 0, str(path), "no such file or folder") for i, (path, _) in enumerate(planned)]
    rows.sort(key=lambda r: (int(r["order"]), r["kind"] != "skip", int(r["pos"])))
    by_id: dict[str, Document] = {}
    for row in rows:
        if row["kind"] == "skip":
            skipped.append((str(row["source"]), str(row["text"])))
            continue
        doc = _document(row)
        if (earlier := by_id.get(doc.id)) is not None:
            where = earlier.source or doc.id
            by = "a later record in the same file" if earlier.source == doc.source else doc.source or doc.id
            skipped.append((where, f"duplicate id {doc.id!r}; replaced by {by}"))
        by_id[doc.id] = doc
    return list(by_id.values()), skipped, ray_init


def _nothing_usable(paths: Sequence[str | Path], skipped: Sequence[tuple[str, str]], shown: int = 10) -> str:
    """The local ingest's refusal (cli/documents.py), with the reasons it prints above it folded in."""
    reasons = "".join(f"\n  skipped {where}: {why}" for where, why in skipped[:shown])
    if len(skipped) > shown:
        reasons += f"\n  … and {len(skipped) - shown} more"
    return (
        f"no usable documents found in {', '.join(map(str, paths))} ({len(skipped)} skipped); nothing was "
        f"written. Supported file types: {', '.join(sorted(SUPPORTED_SUFFIXES))}{reasons}"
    )


def _shard_count(folder: Path, shards: int | None) -> int | None:
    if is_sharded(folder):
        existing = int(read_manifest(folder)["partition"]["count"])
        if shards is not None and shards != existing:
            raise ValidationError(
                f"{folder} has {existing} shards, not {shards}; rebuild it with --rebuild to change the count"
            )
        return existing
    if shards is not None:
        check_shard_count(shards)
        if read_current(folder) is not None:
            raise ValidationError(f"{folder} is an unsharded index; rebuild it with --rebuild to shard it")
    return shards


def _indexed_checksums(folder: Path, shard_count: int | None) -> dict[str, str]:
    if shard_count is not None:
        return load_shard_checksums(folder)
    return stored_checksums(folder)


def _apply(
    folder: Path,
    documents: list[Document],
    deletes: list[str],
    prepared: dict[str, Prepared],
    skipped: list[tuple[str, str]],
    settings: IndexSettings,
    model: dict[str, Any],
    shard_count: int | None,
    first_generation: int = 0,
) -> IngestReport:
    """Apply the staged documents; ``first_generation``: number the commits above it (a rebuild built beside a
    live index whose serving processes only move to a newer generation)."""
    if shard_count is None:
        base = CorpusIndex.load(folder, settings=settings, model=model) if read_current(folder) else None
        if base is None:
            base = CorpusIndex.empty(settings, model)
            base.generation = first_generation
        updated, report = base.apply(documents, deletes, embedder=None, prepared=prepared, skipped=skipped)
        if report.changed:
            updated.save(folder)
        return report
    reports = []
    for number in range(shard_count):
        shard_dir = folder / shard_name(number)
        mine = [d for d in documents if shard_of(d.id, shard_count) == number]
        gone = [d for d in deletes if shard_of(d, shard_count) == number]
        base = CorpusIndex.load(shard_dir, settings=settings, model=model) if read_current(shard_dir) else None
        base = base or empty_shard(settings, model, number)
        updated, part = base.apply(mine, gone, embedder=None, prepared=prepared)
        if part.changed or read_current(shard_dir) is None:
            updated.save(shard_dir)
        reports.append(part)
    write_manifest(folder, shard_count)
    return IngestReport(
        added=tuple(x for r in reports for x in r.added),
        replaced=tuple(x for r in reports for x in r.replaced),
        unchanged=tuple(x for r in reports for x in r.unchanged),
        deleted=tuple(x for r in reports for x in r.deleted),
        skipped=tuple(skipped),
        chunks_embedded=sum(r.chunks_embedded for r in reports),
    )
