"""`make bench-ray`'s search figures: a sharded index against the unsharded one (latency, agreement of the top
10, gold-paragraph recall@10) on SQuAD questions, flat FAISS in shards at a larger synthetic size, and the bytes
per vector of each FAISS index type rag.dense builds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ray_ingest import CPUS

from rag.embedding import Embedder
from rag.loaders import slug_id
from rag.retrieval import RetrievalSettings, retrieve
from rag.shards import ShardedIndex, split_index
from rag.squad import iter_questions
from rag.store import CorpusIndex


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random unit vectors of dimension 384 (isotropic)."""
    vectors = rng.standard_normal((n, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def gold_hit(index: CorpusIndex, hits, q) -> bool:
    doc = slug_id(q.title)
    spots = [q.paragraph_start + a.start for a in q.answers]
    return any(h.chunk.doc_id == doc and any(h.chunk.start <= s < h.chunk.end for s in spots) for h in hits)


def search_bench(index_dir: Path, articles, shard_counts: list[int], runs: int, work: Path) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(1)  # as the service searches
    embedder = Embedder().load()
    base = CorpusIndex.load(index_dir)
    questions = [q for q in iter_questions(articles) if q.answers][:300]
    vectors = embedder.encode([q.question for q in questions])
    variants: dict[str, CorpusIndex] = {"unsharded": base}
    for n in shard_counts:
        split_index(base, n, work / f"shards-{n}")
        variants[f"{n} shards"] = ShardedIndex.load(work / f"shards-{n}")
        variants[f"{n} shards, per-shard IDF"] = ShardedIndex.load(work / f"shards-{n}", global_idf=False)
    fusions = {"hybrid": RetrievalSettings(), "dense": RetrievalSettings(fusion="dense")}
    fusions["bm25"] = RetrievalSettings(fusion="lexical")
    reference: dict[str, list[list[str]]] = {}
    out: dict[str, Any] = {"questions": len(questions), "chunks": len(base.chunks), "variants": {}}
    for name, index in variants.items():
        row: dict[str, Any] = {}
        for fname, fset in fusions.items():
            latencies: list[float] = []
            tops: list[list[str]] = []
            gold = 0
            for run in range(runs):
                per_run = []
                for q, v in zip(questions, vectors, strict=True):
                    t0 = time.perf_counter()
                    hits = retrieve(index, q.question, v[None, :], 10, fset)
                    per_run.append((time.perf_counter() - t0) * 1000)
                    if run == 0:
                        tops.append([h.chunk.chunk_id for h in hits])
                        gold += gold_hit(index, hits, q)
                latencies.append(statistics.median(per_run))
                latencies.append(float(np.percentile(per_run, 95)))
            if name == "unsharded":
                reference[fname] = tops
            agree = [len(set(t) & set(r)) / max(1, len(r)) for t, r in zip(tops, reference[fname], strict=True)]
            row[fname] = {
                "p50_ms": statistics.median(latencies[0::2]),
                "p95_ms": statistics.median(latencies[1::2]),
                "top10_agreement": statistics.mean(agree),
                "top1_same": statistics.mean(
                    float(t[:1] == r[:1]) for t, r in zip(tops, reference[fname], strict=True)
                ),
                "gold_recall_at_10": gold / len(questions),
            }
        out["variants"][name] = row
    return out


def dense_scale(n: int, shard_counts: list[int], queries: int = 50) -> dict[str, Any]:
    """Flat FAISS at ``n`` synthetic vectors: one index against the same vectors in shards, merged by score."""
    import faiss

    from rag.dense import DenseIndex
    from rag.shards import ShardedDense

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    vectors = unit_vectors(rng, n)
    keys = np.arange(n, dtype=np.int64)
    q = vectors[rng.choice(n, queries, replace=False)] + 0.05 * rng.standard_normal((queries, 384), dtype=np.float32)
    whole = DenseIndex.build(vectors, keys, kind="flat")
    out: dict[str, Any] = {"vectors": n, "queries": queries, "ms_p50": {}, "top10_agreement": {}}

    def timed(index) -> tuple[float, list[set[int]]]:
        times, tops = [], []
        for row in q:
            t0 = time.perf_counter()
            found, _ = index.search(row[None, :], 10)
            times.append((time.perf_counter() - t0) * 1000)
            tops.append(set(found.tolist()))
        return statistics.median(times), tops

    out["ms_p50"]["unsharded"], ref = timed(whole)
    for s in shard_counts:
        parts = [DenseIndex.build(vectors[i::s], keys[i::s], kind="flat") for i in range(s)]
        ms, tops = timed(ShardedDense(parts))
        out["ms_p50"][f"{s} shards"] = ms
        out["top10_agreement"][f"{s} shards"] = statistics.mean(len(a & b) / 10 for a, b in zip(tops, ref, strict=True))
    return out


def index_bytes(n: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Bytes per vector of each FAISS index type rag.dense builds (serialised size / n; ids included), at ``n``
    synthetic vectors, and the seconds each took to build on this machine."""
    import faiss

    from rag.dense import DenseIndex

    faiss.omp_set_num_threads(CPUS)
    vectors = unit_vectors(np.random.default_rng(1), n)
    out: dict[str, Any] = {"vectors": n, "kinds": {}}
    for kind in ("flat", "ivf-sq8", "ivf-pq", "hnsw"):
        t0 = time.perf_counter()
        index = DenseIndex.build(vectors, np.arange(n, dtype=np.int64), kind=kind)
        seconds = time.perf_counter() - t0
        size = len(faiss.serialize_index(index.index))
        out["kinds"][index.kind] = {"bytes_per_vector": size / n, "build_s": seconds}
        log(f"{kind}: {size / n:.1f} bytes per vector, built in {seconds:.1f} s")
    faiss.omp_set_num_threads(1)
    return out
