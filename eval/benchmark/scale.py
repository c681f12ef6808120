"""`--scale`: the dense index at 1M and 10M vectors, on synthetic unit vectors of dimension 384.

Two generators (scale_vectors.py): ``fitted`` (the default; fitted_vectors.py: a model fitted to real chunk
embeddings of our model) and ``isotropic`` (``Synthetic``: isotropic clusters around random well-separated
centres, the first generator, which flatters IVF).

The data never exists whole: chunk ``i`` of the base set is generated from its own seed, so one pass can
ground-truth it (chunked brute force for a fixed set of queries) and add it to the indexes. Sizes up to
``IN_MEMORY_LIMIT`` are built with ``rag.dense.DenseIndex.build`` (exact, IVF-SQ8, IVF-PQ, HNSW); larger ones
stream into FAISS IVF-SQ8 and IVF-PQ built directly with the same index types (a float copy of 10M x 384 is
15 GB, so exact search and HNSW, which keeps floats, are not built there).

Latency is one query at a time (what a service request does) on one thread, recall@10 against the exact
top 10; builds use every core.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from benchmark.records import ScalePoint
from benchmark.scale_vectors import CHUNK, DIM, Synthetic, TopK, VectorSource
from rag.dense import DenseIndex
from rag.evaluation.metrics import percentile

IN_MEMORY_LIMIT = 2_000_000
ISOTROPIC = Synthetic()  # run_scale's default data (frozen)
RECALL_TARGET = 0.95
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EF_SEARCHES = (16, 32, 64, 128, 256)
PQ_M = 48  # rag.dense's default for ivf-pq: 48 sub-quantizers of 8 dimensions, 8 bits each


def nlist_for(n: int) -> int:
    """A power of two near sqrt(n): 1,024 lists at 1M, 4,096 at 10M."""
    return int(2 ** round(math.log2(math.sqrt(n))))


def index_bytes(index) -> int:
    """The serialised size of a FAISS index, counted without writing it anywhere."""
    import faiss

    total = 0

    def count(chunk: bytes) -> int:
        nonlocal total
        total += len(chunk)
        return len(chunk)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))  # type: ignore[attr-defined]
    return total


def search_point(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, truth: np.ndarray
) -> tuple[float, float, float]:
    """(p50 ms, p95 ms, recall@10) over single-query searches, on one OpenMP thread: a single query gains
    little from more, and on a busy machine OpenMP's spinning threads cost 10x (2.8 ms -> 35 ms, flat 50k)."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return _search_point(search, queries, truth)
    finally:
        faiss.omp_set_num_threads(threads)


def _search_point(
    search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, truth: np.ndarray
) -> tuple[float, float, float]:
    for q in queries[:10]:
        search(q[None, :])
    times, hits = [], 0
    for q, gt in zip(queries, truth, strict=True):
        t0 = time.perf_counter()
        ids = search(q[None, :])
        times.append((time.perf_counter() - t0) * 1000)
        hits += len(set(ids[0].tolist()) & set(gt.tolist()))
    return percentile(times, 50), percentile(times, 95), hits / truth.size


def sweep(
    n: int,
    kind: str,
    params: dict,
    build_s: float,
    size: int,
    knob: str,
    values: Sequence[int],
    apply,
    search,
    queries,
    truth,
    log,
) -> list[ScalePoint]:
    """Search at each knob value, up to the first that reaches the recall target (and one step past it)."""
    points: list[ScalePoint] = []
    past = 0
    for value in values:
        apply(value)
        p50, p95, recall = search_point(search, queries, truth)
        points.append(ScalePoint(n, kind, {**params, knob: value}, build_s, size, p50, p95, recall))
        log(f"scale {n:,} {kind} {knob}={value}: recall@10 {recall:.3f}, p50 {p50:.2f} ms, p95 {p95:.2f} ms")
        if recall >= RECALL_TARGET:
            past += 1
            if past > 1:
                break
    return points


def _in_memory(n: int, data: VectorSource, queries: np.ndarray, log) -> list[ScalePoint]:
    import faiss

    x = np.concatenate([c for _, c in data.chunks(n)])
    keys = np.arange(n, dtype=np.int64)
    truth = TopK(queries)
    truth.add(0, x)
    gt = truth.ids
    points: list[ScalePoint] = []
    nlist = nlist_for(n)
    for kind, params in (
        ("flat", {}),
        ("ivf-sq8", {"nlist": nlist, "nprobe": 1}),
        ("ivf-pq", {"nlist": nlist, "nprobe": 1, "m": PQ_M}),
        ("hnsw", {}),  # rag.dense defaults: M=32, efConstruction=80
    ):
        t0 = time.perf_counter()
        dense = DenseIndex.build(x, keys, kind=kind, **params)
        build_s = time.perf_counter() - t0
        size = index_bytes(dense.index)
        shown = {k: v for k, v in dense.params.items() if k not in ("trained_on", "nprobe", "ef_search")}
        log(f"scale {n:,} {kind}: built in {build_s:.1f} s, {size / 2**20:.0f} MiB")

        def search(q: np.ndarray, dense=dense) -> np.ndarray:
            return dense.index.search(q, 10)[1]

        if kind == "flat":
            p50, p95, recall = search_point(search, queries, gt)
            points.append(ScalePoint(n, kind, {}, build_s, size, p50, p95, recall))
        elif kind.startswith("ivf"):

            def set_nprobe(v: int, dense=dense) -> None:
                dense.index.nprobe = v

            points += sweep(
                n,
                kind,
                shown,
                build_s,
                size,
                "nprobe",
                [v for v in NPROBES if v <= nlist],
                set_nprobe,
                search,
                queries,
                gt,
                log,
            )
        else:

            def set_ef(v: int, dense=dense) -> None:
                faiss.downcast_index(dense.index.index).hnsw.efSearch = v  # type: ignore[attr-defined]

            points += sweep(n, kind, shown, build_s, size, "efSearch", EF_SEARCHES, set_ef, search, queries, gt, log)
        del dense
        gc.collect()
    return points


def _streamed(n: int, data: VectorSource, queries: np.ndarray, log) -> list[ScalePoint]:
    """IVF-SQ8 and IVF-PQ, trained on a sample and filled chunk by chunk; the coarse quantizer is an HNSW
    graph over the centroids so that assigning 10M vectors to 4,096 lists stays cheap."""
    import faiss

    nlist = nlist_for(n)
    gen_s = truth_s = 0.0
    chunks = data.chunks(n)
    t0 = time.perf_counter()
    first_id, first = next(chunks)
    gen_s += time.perf_counter() - t0
    sample = first[
        np.random.default_rng(data.seed).choice(len(first), min(len(first), max(32 * nlist, 10_000)), replace=False)
    ]

    t0 = time.perf_counter()
    quantizer = faiss.IndexHNSWFlat(DIM, 32, faiss.METRIC_INNER_PRODUCT)
    sq8 = faiss.IndexIVFScalarQuantizer(
        quantizer, DIM, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    sq8.clustering_index = faiss.IndexFlatIP(DIM)  # exact k-means; the HNSW graph only serves assignment
    sq8.train(sample)
    quantizer.hnsw.efSearch = 64  # type: ignore[attr-defined]
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pq = faiss.IndexIVFPQ(quantizer, DIM, nlist, PQ_M, 8, faiss.METRIC_INNER_PRODUCT)  # shares the trained lists
    pq.train(sample)
    pq_train_s = time.perf_counter() - t0
    log(f"scale {n:,}: trained {nlist} lists in {train_s:.1f} s (sample {len(sample):,}), PQ in {pq_train_s:.1f} s")

    truth = TopK(queries)
    add_s = {"ivf-sq8": 0.0, "ivf-pq": 0.0}
    pending: Iterator[tuple[int, np.ndarray]] = iter([(first_id, first)])
    while True:
        t0 = time.perf_counter()
        nxt = next(pending, None) or next(chunks, None)
        gen_s += time.perf_counter() - t0
        if nxt is None:
            break
        start, x = nxt
        t0 = time.perf_counter()
        truth.add(start, x)
        truth_s += time.perf_counter() - t0
        ids = np.arange(start, start + len(x), dtype=np.int64)
        for name, index in (("ivf-sq8", sq8), ("ivf-pq", pq)):
            t0 = time.perf_counter()
            index.add_with_ids(x, ids)
            add_s[name] += time.perf_counter() - t0
        if (start // CHUNK) % 8 == 0:
            log(f"scale {n:,}: {start + len(x):,} vectors added")
        del x
    log(f"scale {n:,}: generated in {gen_s:.0f} s, ground truth in {truth_s:.0f} s (not part of the build times)")
    points: list[ScalePoint] = []
    for name, index, trained in (("ivf-sq8", sq8, train_s), ("ivf-pq", pq, train_s + pq_train_s)):
        build_s = trained + add_s[name]
        size = index_bytes(index)
        params = {"nlist": nlist, "quantizer": "HNSW32", "train_sample": len(sample)}
        if name == "ivf-pq":
            params["m"] = PQ_M

        def set_nprobe(v: int, index=index) -> None:
            index.nprobe = v
            quantizer.hnsw.efSearch = max(64, 2 * v)  # type: ignore[attr-defined]

        def search(q: np.ndarray, index=index) -> np.ndarray:
            return index.search(q, 10)[1]

        points += sweep(n, name, params, build_s, size, "nprobe", NPROBES, set_nprobe, search, queries, truth.ids, log)
    note = "exact and HNSW not built: both keep float32 vectors (15 GB at 10M); ground truth by chunked brute force"
    points.append(ScalePoint(n, "flat / hnsw", {}, None, None, float("nan"), float("nan"), float("nan"), note))
    return points


def run_scale(
    sizes: Sequence[int], *, queries: int, log, data: VectorSource = ISOTROPIC, stream_above: int = IN_MEMORY_LIMIT
) -> list[ScalePoint]:
    qs = data.queries(queries)
    points: list[ScalePoint] = []
    for n in sizes:
        points += _in_memory(n, data, qs, log) if n <= stream_above else _streamed(n, data, qs, log)
        gc.collect()
    return points


def best_points(points: Sequence[ScalePoint]) -> list[ScalePoint]:
    """Per (size, kind): the first setting that reaches the recall target, else the one with the best recall."""
    groups: dict[tuple[int, str], list[ScalePoint]] = {}
    for p in points:
        groups.setdefault((p.vectors, p.kind), []).append(p)
    out = []
    for group in groups.values():
        good = [p for p in group if p.recall_at_10 >= RECALL_TARGET]
        out.append(good[0] if good else max(group, key=lambda p: (p.recall_at_10 == p.recall_at_10, p.recall_at_10)))
    return out


def parse_size(text: str) -> int:
    text = text.strip().lower().replace("_", "")
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * mult)


def kept_runs(previous: dict | None, current: str) -> dict[str, dict]:
    """The scale parts of earlier runs on other generators, by generator: an earlier bench.json's ``scale`` (a
    run without ``data.generator`` was the isotropic one) and what it had kept itself. A new run replaces only
    its own generator's figures."""
    if not previous:
        return {}
    kept = dict(previous.get("other_data") or {})
    kept[(previous.get("data") or {}).get("generator", "isotropic")] = {
        k: v for k, v in previous.items() if k != "other_data"
    }
    kept.pop(current, None)
    return kept


def kept_notes(kept: dict[str, dict]) -> list[str]:
    """One note line per kept run: its best point per size and kind (bench.md shows the scale section's notes)."""
    lines = []
    for name, run in kept.items():
        rows = []
        for p in run.get("best") or []:
            if p.get("recall_at_10") is None:
                continue
            knob = {k: v for k, v in p["params"].items() if k in ("nprobe", "efSearch")}
            build = p.get("build_s")
            size = p.get("index_bytes")
            built = "" if build is None else f", built {build:.0f} s" if build < 60 else f", built {build / 60:.1f} min"
            rows.append(
                " ".join([f"{p['vectors'] / 1e6:g}M", p["kind"], *(f"{k} {v}" for k, v in knob.items())])
                + f": recall {p['recall_at_10']:.3f}, p95 {p['p95_ms']:.2f} ms"
                + (f", {size / 2**30:.2f} GiB" if size else "")
                + built
            )
        minutes = f", {run['seconds'] / 60:.0f} min" if run.get("seconds") else ""
        lines.append(
            f"For comparison, the {name} generator (run {run.get('date', '?')}{minutes}; every figure in bench.json "
            f"under scale.other_data.{name}): " + "; ".join(rows) + "."
        )
    return lines
