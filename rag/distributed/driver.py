"""The Ray ingest's driver: start Ray, read the files on it, stream the actors' chunks and vectors into the
staging folder, then apply what is staged to the index (or its shards) and swap a rebuilt index in."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rag.distributed.staging import STAGING, Staging
from rag.distributed.workers import ChunkEmbedActor, document_of_row, load_rows, skip_row
from rag.errors import LoadError, RagError, ValidationError
from rag.loaders import DEFAULT_MAX_BYTES, SUPPORTED_SUFFIXES, plan_files
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
from rag.store import CorpusIndex, IndexSettings, Prepared, read_current, stored_checksums
from rag.store.files import fsync_dir
from rag.types import Document, IngestReport

log = logging.getLogger("rag.distributed")

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
            # "local": a Ray of its own, even where `ray start` runs one on this machine (join that: --address auto)
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False)
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
        rows = items.flat_map(functools.partial(load_rows, max_bytes=max_bytes)).take_all()
    else:  # only missing paths (or none): no need to start Ray to say so
        rows = [skip_row(i, 0, str(path), "no such file or folder") for i, (path, _) in enumerate(planned)]
    rows.sort(key=lambda r: (int(r["order"]), r["kind"] != "skip", int(r["pos"])))
    by_id: dict[str, Document] = {}
    for row in rows:
        if row["kind"] == "skip":
            skipped.append((str(row["source"]), str(row["text"])))
            continue
        doc = document_of_row(row)
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
