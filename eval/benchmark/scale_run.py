"""``--scale``: the dense index at 1M-10M synthetic vectors (scale.py), after the fit check of the generator
(fitted_check.py); the figures of the other generator's last run are kept beside this one's."""

from __future__ import annotations

import argparse
import time

from benchmark import report
from benchmark.progress import log


def scale_run(args: argparse.Namespace, result: dict) -> None:
    import json

    from benchmark import fitted_check, fitted_vectors
    from benchmark.scale import RECALL_TARGET, best_points, kept_notes, kept_runs, parse_size, run_scale
    from benchmark.scale_vectors import data_source

    sizes = [parse_size(s) for s in args.scale_sizes.split(",") if s.strip()]
    try:
        data = data_source(args.scale_data)
    except fitted_vectors.NoRealVectors as exc:
        raise SystemExit(f"--scale-data fitted: no stored parameters ({fitted_vectors.MODEL_FILE}) and {exc}") from exc
    t0 = time.perf_counter()
    check: dict | None = None
    if args.scale_fit_check:
        try:
            check = fitted_check.fit_check(fitted_vectors.load_real(), log=log)
        except fitted_vectors.NoRealVectors as exc:
            check = {"skipped": str(exc)}
            log(f"fit check skipped: {exc}")
        check["seconds"] = round(time.perf_counter() - t0, 1)
    points = run_scale(
        sizes, queries=args.scale_queries, log=log, data=data, stream_above=parse_size(args.scale_stream_above)
    )
    d = data.describe()
    try:
        previous = json.loads((args.out / "bench.json").read_text()).get("scale")
    except (OSError, ValueError):
        previous = None
    kept = kept_runs(previous, data.name)
    result["scale"] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "seconds": round(time.perf_counter() - t0, 1),
        "data": {**d, "queries": args.scale_queries},
        "recall_target": RECALL_TARGET,
        "points": report.plain(points),
        "best": report.plain(best_points(points)),
        "notes": [
            data.note(args.scale_queries),
            "Build time: training + adding (data generation and ground truth excluded). "
            "Index size: FAISS's serialised size.",
            "Latency: one query per call on one thread. Up to 2M vectors: rag.dense.DenseIndex.build; above: FAISS "
            "directly "
            "(same index types, HNSW32 coarse quantizer, trained on a sample, filled in chunks of 250k).",
            *fitted_check.check_notes(check or {}),
            *kept_notes(kept),
        ],
    }
    if check is not None:
        result["scale"]["fit_check"] = check
    if kept:
        result["scale"]["other_data"] = kept
