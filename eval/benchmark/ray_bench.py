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
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# This script's parts, beside it in eval/benchmark/ (a script's folder is first on sys.path): the ingest paths,
# the search figures, the report.
from ray_ingest import CPUS, memory, run_local, run_ray, vector_agreement
from ray_report import report_md
from ray_search import dense_scale, index_bytes, search_bench

from rag.distributed import STAGING, RayOptions, Staging, start_ray
from rag.loaders import load_paths
from rag.settings import Settings
from rag.squad import load_squad

ROOT = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def write_corpus(squad: Path, articles: int, folder: Path) -> list[dict[str, Any]]:
    payload = load_squad(squad)
    chosen = payload["data"][:articles]
    folder.mkdir(parents=True, exist_ok=True)
    for i, article in enumerate(chosen):
        (folder / f"{i:03d}.json").write_text(json.dumps({"version": "v2.0", "data": [article]}), encoding="utf-8")
    return chosen


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


# The null pipeline stays in the script: Ray's workers receive NullActor pickled by value, as a class of
# __main__, so they need not import anything from eval/benchmark/.
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
        res["index_bytes"] = index_bytes(args.bytes_vectors, log)
    res["seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    text = report_md(res)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
