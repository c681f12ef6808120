"""`make bench-ray`'s ingest paths, each from files to a saved index: the local one (one process) and Ray's, with
the costs Ray names; and what the built index holds: resident memory and disk per chunk, and how close the Ray
build's vectors are to the local one's."""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.distributed import RayOptions, ingest
from rag.embedding import Embedder
from rag.engine import Engine, model_record
from rag.loaders import load_paths
from rag.settings import Settings
from rag.shards import ShardedIndex
from rag.store import CorpusIndex

CPUS = 2  # this machine; Ray is never given more


def run_local(corpus: Path, folder: Path, settings: Settings) -> dict[str, float]:
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    embedder = Embedder(backend=settings.embed_backend).load()
    t1 = time.perf_counter()
    docs = load_paths([corpus]).documents
    engine = Engine(settings.model_copy(update={"index_dir": folder}), embedder)
    engine.reload(create=True)
    report = engine.upsert(docs)
    total = time.perf_counter() - t0
    return {"total": total, "model_load": t1 - t0, "chunks": report.chunks_embedded, "documents": len(docs)}


def run_ray(corpus: Path, folder: Path, settings: Settings, workers: int) -> dict[str, Any]:
    import ray

    shutil.rmtree(folder, ignore_errors=True)
    options = RayOptions(
        workers=workers,
        cpus_per_worker=CPUS / workers,
        threads=CPUS // workers,
        num_cpus=CPUS,
        embed_backend=settings.embed_backend,
    )
    model = model_record(Embedder(backend=settings.embed_backend))
    t0 = time.perf_counter()
    report, stats = ingest([corpus], folder, settings=settings.index_settings(), model=model, options=options)
    total = time.perf_counter() - t0
    ray.shutdown()
    return {
        "total": total,
        "ray_init": stats.ray_init,
        "load": stats.load,
        "pipeline": stats.pipeline,
        "assemble": stats.assemble,
        "actor_compute": stats.actor_compute,
        "actor_model_load": statistics.median(stats.actor_model_load) if stats.actor_model_load else None,
        "actors_used": len(stats.actor_model_load),
        "chunks": report.chunks_embedded,
        "parts": stats.parts,
    }


def rss_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory(unsharded: Path, sharded: Path) -> dict[str, Any]:
    """Resident memory of one loaded index (a second copy, so imports and first-use costs are left out), and the
    bytes per chunk of each file of the index folder."""
    import gc

    keep = [CorpusIndex.load(unsharded), ShardedIndex.load(sharded)]  # imports, caches
    chunks = len(keep[0].chunks)
    out: dict[str, Any] = {"chunks": chunks}
    for name, load in (
        ("unsharded", lambda: CorpusIndex.load(unsharded)),
        ("sharded", lambda: ShardedIndex.load(sharded)),
    ):
        gc.collect()
        before = rss_bytes()
        keep.append(load())
        gc.collect()
        out[f"rss_per_chunk_{name}"] = (rss_bytes() - before) / chunks
    gen = unsharded / (unsharded / "CURRENT").read_text().strip()
    files: dict[str, int] = {}
    for path in gen.rglob("*"):
        if path.is_file():
            top = path.relative_to(gen).parts[0]
            files[top] = files.get(top, 0) + path.stat().st_size
    out["disk_bytes_per_chunk"] = {k: v / chunks for k, v in sorted(files.items())}
    out["document_chars_per_chunk"] = sum(len(d.text) for d in keep[0].documents.values()) / chunks
    out["chunks_per_document"] = chunks / len(keep[0].documents)
    return out


def vector_agreement(a: Path, b: Path) -> dict[str, Any]:
    x, y = CorpusIndex.load(a), CorpusIndex.load(b)
    same = [(c.key, c.chunk_id, c.start, c.end) for c in x.chunks] == [
        (c.key, c.chunk_id, c.start, c.end) for c in y.chunks
    ]
    cosine = np.sum(x.vectors * y.vectors, axis=1) if same else np.zeros(1)
    return {"same_chunks": same, "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}
