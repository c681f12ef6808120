"""`make bench-ray`: ingest on Ray (1 and 2 workers) against the local path, Ray's own costs named, and a
sharded index against the unsharded one (query latency, agreement of the top 10, gold-paragraph recall@10).

    .venv/bin/python eval/benchmark/ray_bench.py [--articles 8] [--runs 3] [--shards 2 4]

The corpus is the first ``--articles`` SQuAD 2.0 dev articles, one SQuAD JSON file per article (so Ray reads
several files). Every path does the whole job from files to a saved index, loading the model included; each
Ray run starts and stops its own local Ray (num_cpus=2), so start-up is inside its time and also shown apart.
Writes eval/results/ray-bench.md and ray-bench.json (medians over ``--runs``; each run's figures in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.distributed import STAGING, RayOptions, Staging, ingest, start_ray
from rag.embedding import Embedder
from rag.engine import Engine, model_record
from rag.loaders import load_paths, slug_id
from rag.retrieval import RetrievalSettings, retrieve
from rag.settings import Settings
from rag.shards import ShardedIndex, split_index
from rag.squad import iter_questions, load_squad
from rag.store import CorpusIndex

ROOT = Path(__file__).resolve().parents[2]
CPUS = 2  # this machine; Ray is never given more


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_corpus(squad: Path, articles: int, folder: Path) -> list[dict[str, Any]]:
    payload = load_squad(squad)
    chosen = payload["data"][:articles]
    folder.mkdir(parents=True, exist_ok=True)
    for i, article in enumerate(chosen):
        (folder / f"{i:03d}.json").write_text(json.dumps({"version": "v2.0", "data": [article]}), encoding="utf-8")
    return chosen


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


def run_single(name: str, corpus: Path, folder: Path) -> dict[str, Any]:
    """One path in a fresh process, as `rag ingest` runs: ``process`` is its wall time from the outside
    (interpreter start and imports included), the rest are the figures it reports from the inside."""
    import subprocess

    cmd = [sys.executable, __file__, "--single", name, "--corpus", str(corpus), "--index", str(folder)]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - t0
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"process": seconds, **result}


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


def single(name: str, corpus: Path, folder: Path) -> None:
    import logging

    logging.getLogger("ray").setLevel(logging.WARNING)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    if name == "memory":  # --corpus: the sharded copy of the --index folder
        result = memory(folder, corpus)
    elif name == "local":
        result = run_local(corpus, folder, settings)
    else:
        result = run_ray(corpus, folder, settings, int(name.removeprefix("ray-")))
    print(json.dumps(result))


class NullActor:
    """The pipeline's shape without its work: returns payloads of the real size (spans, vectors) at once."""

    def __init__(self, chunks_per_doc: float) -> None:
        self.chunks_per_doc = chunks_per_doc

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(batch["id"])
        k = max(1, round(self.chunks_per_doc))
        return {
            "id": batch["id"],
            "checksum": batch["checksum"],
            "spans": np.array([np.zeros((k, 2), np.int64).tobytes()] * n, dtype=object),
            "vectors": np.array([np.zeros((k, 384), np.float32).tobytes()] * n, dtype=object),
        }


def run_null(corpus: Path, folder: Path, workers: int, chunks_per_doc: float) -> dict[str, float]:
    """Ray's cost of moving the documents to actors and the results back and staging them, with no model."""
    import ray
    import ray.data

    init = start_ray(RayOptions(workers=workers, cpus_per_worker=CPUS / workers, num_cpus=CPUS))
    docs = load_paths([corpus]).documents
    staging = Staging(folder / STAGING, {"null": True})
    t0 = time.perf_counter()
    ds = ray.data.from_items([{"id": d.id, "checksum": d.checksum, "title": d.title, "text": d.text} for d in docs])
    out = ds.map_batches(
        NullActor,
        fn_constructor_kwargs={"chunks_per_doc": chunks_per_doc},
        batch_size=RayOptions().batch_docs,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=CPUS / workers,
    )
    for batch in out.iter_batches(batch_size=RayOptions().batch_docs, batch_format="numpy"):
        staging.write(list(batch["id"]), list(batch["checksum"]), list(batch["spans"]), list(batch["vectors"]), 384)
    seconds = time.perf_counter() - t0
    staging.remove()
    ray.shutdown()
    return {"ray_init": init, "pipeline": seconds}


def vector_agreement(a: Path, b: Path) -> dict[str, Any]:
    x, y = CorpusIndex.load(a), CorpusIndex.load(b)
    same = [(c.key, c.chunk_id, c.start, c.end) for c in x.chunks] == [
        (c.key, c.chunk_id, c.start, c.end) for c in y.chunks
    ]
    cosine = np.sum(x.vectors * y.vectors, axis=1) if same else np.zeros(1)
    return {"same_chunks": same, "cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean())}


# ---------------------------------------------------------------------------------------------- sharded search


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
    vectors = rng.standard_normal((n, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
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


def index_bytes(n: int) -> dict[str, Any]:
    """Bytes per vector of each FAISS index type rag.dense builds (serialised size / n; ids included), at ``n``
    synthetic vectors, and the seconds each took to build on this machine."""
    import faiss

    from rag.dense import DenseIndex

    faiss.omp_set_num_threads(CPUS)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, 384), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
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


# ---------------------------------------------------------------------------------------------- report


def fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def report_md(res: dict[str, Any]) -> str:
    ing = res["ingest"]
    loc = ing["local"]["median"]
    lines = [
        "# Ray ingest and sharded search",
        "",
        "Written by `make bench-ray` (`eval/benchmark/ray_bench.py`); `ray-bench.json` beside this file holds every "
        "run. Medians over runs; every ratio compares figures from the same invocation.",
        "",
        f"- date {res['date']}, {res['cpus']} cores ({platform.processor() or platform.machine()}), "
        f"load average at start {res['load_average']}, Ray {res['ray_version']}, embedding backend "
        f"{res['backend']}; commands ran under `nice -n 19` beside other work, so absolute times are pessimistic",
        f"- corpus: {res['corpus']}",
        "",
        "## Ingest, files to saved index",
        "",
        "Each run is a fresh process, as `rag ingest` is: 'process s' from the outside (interpreter start, imports, "
        "model load included), 'inside s' from the ingest call's start. 'vs local' is local process s / this path's.",
        "",
        "| path | runs | process s | chunks/s | vs local | inside s | Ray start s | read+parse s "
        "| chunk+embed s (wall) | write s | actor compute s | model load s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| local (one process, 2 threads) | {len(ing['local']['runs'])} | {fmt(loc['process'])} | "
        f"{fmt(loc['chunks'] / loc['process'])} | 1.00x | {fmt(loc['total'])} | – | – | – | – | – | "
        f"{fmt(loc['model_load'])} |",
    ]
    for w in res["workers"]:
        r = ing[f"ray-{w}"]["median"]
        lines.append(
            f"| Ray, {w} worker{'s' if w > 1 else ''} ({CPUS // w} thread{'s' if CPUS // w > 1 else ''} each) | "
            f"{len(ing[f'ray-{w}']['runs'])} | {fmt(r['process'])} | {fmt(r['chunks'] / r['process'])} | "
            f"{loc['process'] / r['process']:.2f}x | {fmt(r['total'])} | {fmt(r['ray_init'])} | {fmt(r['load'])} | "
            f"{fmt(r['pipeline'])} | "
            f"{fmt(r['assemble'])} | {fmt(r['actor_compute'])} | {fmt(r['actor_model_load'])} |"
        )
    lines += ["", "Ray's own overhead (same corpus):", ""]
    for w in res["workers"]:
        r, null = ing[f"ray-{w}"]["median"], res["null"][f"ray-{w}"]
        lines.append(
            f"- {w} worker(s): start-up {fmt(r['ray_init'])} s; reading the files as Ray tasks {fmt(r['load'])} s; "
            f"moving documents to the actors and results back and staging them with no model (a null actor, "
            f"same payload sizes) {fmt(null['pipeline'])} s; the actors' own chunk+embed, summed over the actors, "
            f"{fmt(r['actor_compute'])} s within {fmt(r['pipeline'])} s of wall time (model load "
            f"{fmt(r['actor_model_load'])} s per actor, inside that wall)"
        )
    agree = res["agreement"]
    lines += [
        "",
        f"- Ray vs local index: same chunk keys/ids/offsets: {agree['same_chunks']}; embedding cosine min "
        f"{agree['cosine_min']:.5f}, mean {agree['cosine_mean']:.5f} (int8 ONNX quantises activations per batch, "
        "so batch composition moves vectors slightly; with `onnx` fp32 the test shows equality to 1e-5)",
        "",
        f"## Sharded vs unsharded search ({res['search']['questions']} answerable SQuAD questions of the corpus, "
        f"{res['search']['chunks']} chunks, retrieve() in-process, FAISS single-threaded)",
        "",
        "| index | retrieval | p50 ms | p95 ms | top-10 agreement with unsharded | same top 1 | gold recall@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in res["search"]["variants"].items():
        for fname, m in row.items():
            lines.append(
                f"| {name} | {fname} | {m['p50_ms']:.2f} | {m['p95_ms']:.2f} | {m['top10_agreement']:.3f} | "
                f"{m['top1_same']:.3f} | {m['gold_recall_at_10']:.3f} |"
            )
    ds = res["dense_scale"]
    lines += [
        "",
        "- BM25: shards are scored with the whole index's statistics (document frequencies and average length "
        "summed over the shards at query time). 'per-shard IDF' rows merge raw per-shard scores, for comparison.",
        "",
        f"## Dense only, {ds['vectors']:,} synthetic vectors (flat, one thread, {ds['queries']} queries)",
        "",
        "| index | p50 ms | top-10 agreement |",
        "|---|---|---|",
    ]
    for name, ms in ds["ms_p50"].items():
        lines.append(f"| {name} | {ms:.2f} | {ds['top10_agreement'].get(name, 1.0):.3f} |")
    lines += [
        "",
        "- Shards searched one after another in one process: the same vectors scanned plus a merge. Shards on "
        "separate cores or machines would divide the scan time (not measured here: 2 cores, both busy).",
        "",
        f"## Memory and disk per chunk ({res['memory']['chunks']:,} chunks, "
        f"{res['memory']['chunks_per_document']:.1f} per article, "
        f"{res['memory']['document_chars_per_chunk']:.0f} characters of article text per chunk; flat FAISS)",
        "",
        f"- resident memory added by loading the index, per chunk: unsharded "
        f"{res['memory']['rss_per_chunk_unsharded']:,.0f} bytes, sharded ({res['shards'][-1]} shards) "
        f"{res['memory']['rss_per_chunk_sharded']:,.0f} bytes (RSS before and after loading a second copy; the "
        "sharded load frees its float32 vectors after loading, which RSS need not show: the allocator may keep "
        "the pages)",
        "- on disk, per chunk: "
        + ", ".join(f"{k} {v:,.0f} B" for k, v in res["memory"]["disk_bytes_per_chunk"].items()),
        "",
        f"## FAISS bytes per vector ({res['index_bytes']['vectors']:,} synthetic vectors, serialised, ids included)",
        "",
        "| kind | bytes per vector | build s (2 threads) |",
        "|---|---|---|",
        *[
            f"| {kind} | {m['bytes_per_vector']:.1f} | {m['build_s']:.1f} |"
            for kind, m in res["index_bytes"]["kinds"].items()
        ],
        "",
        f"Run time {res['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--articles", type=int, default=35)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--shards", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--scale-vectors", type=int, default=200_000)
    parser.add_argument("--bytes-vectors", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "ray-bench")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    parser.add_argument("--single", help=argparse.SUPPRESS)  # internal: one ingest path in this process
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        single(args.single, args.corpus, args.index)
        return
    if args.report_only:  # re-render the markdown from the JSON of an earlier run
        res = json.loads(args.out.with_suffix(".json").read_text(encoding="utf-8"))
        args.out.with_suffix(".md").write_text(report_md(res), encoding="utf-8")
        return

    import logging

    import ray

    logging.getLogger("ray").setLevel(logging.WARNING)
    started = time.perf_counter()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    res: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "ray_version": ray.__version__,
        "backend": settings.embed_backend,
        "workers": args.workers,
        "shards": args.shards,
        "ingest": {},
        "null": {},
    }
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        work = Path(tmp)
        articles = write_corpus(args.shared / "data" / "squad-v2.0-dev" / "dev-v2.0.json", args.articles, work / "in")
        paragraphs = sum(len(a["paragraphs"]) for a in articles)
        res["corpus"] = f"the first {len(articles)} SQuAD 2.0 dev articles ({paragraphs} paragraphs), one file each"
        paths = {"local": "local"} | {f"ray-{w}": w for w in args.workers}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
        for run in range(args.runs):  # interleaved, so background load falls on every path alike
            for name in paths:
                folder = work / name
                r = run_single(name, work / "in", folder)
                runs[name].append(r)
                log(f"run {run + 1}/{args.runs} {name}: {r['process']:.1f} s, {r['chunks']} chunks")
        for name, rs in runs.items():
            keys = [k for k, v in rs[0].items() if isinstance(v, int | float)]
            median = {k: statistics.median(r[k] for r in rs if r[k] is not None) for k in keys if rs[0][k] is not None}
            median.update({k: None for k in rs[0] if k not in median})
            res["ingest"][name] = {"runs": rs, "median": median}
        res["agreement"] = vector_agreement(work / "local", work / f"ray-{args.workers[-1]}")
        chunks_per_doc = runs["local"][0]["chunks"] / runs["local"][0]["documents"]
        for w in args.workers:
            nulls = [run_null(work / "in", work / "null", w, chunks_per_doc) for _ in range(args.runs)]
            res["null"][f"ray-{w}"] = {k: statistics.median(n[k] for n in nulls) for k in nulls[0]}
            log(f"null pipeline, {w} workers: {res['null'][f'ray-{w}']}")
        res["search"] = search_bench(work / "local", articles, args.shards, args.runs, work)
        log("sharded search measured")
        res["memory"] = run_single("memory", work / f"shards-{args.shards[-1]}", work / "local")
        log(f"memory: {res['memory']}")
        res["dense_scale"] = dense_scale(args.scale_vectors, args.shards)
        log("dense scale measured")
        res["index_bytes"] = index_bytes(args.bytes_vectors)
    res["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    text = report_md(res)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
