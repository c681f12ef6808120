"""The Haystack 2.x peer in two columns: the same runtime (ours rebuilt with torch fp32, Haystack with our chunks
and a no-answer threshold fitted by our rule) and as each is deployed; its latency, ingest and quality against
ours, with the ratios bench.json keeps."""

from __future__ import annotations

import time
from dataclasses import replace

from benchmark import report
from benchmark.plan import Plan
from benchmark.progress import log
from benchmark.records import QueryLatency, ratio

PEER_SETUPS = ("same_runtime", "default")
PEER_KEYS = (
    "haystack_same_runtime_search_speedup",
    "haystack_same_runtime_ask_speedup",
    "haystack_default_search_speedup",
    "haystack_default_ask_speedup",
    "haystack_ingest_speedup",
)
TORCH_WHERE = "in-process, torch fp32"


def ours_on_torch(settings, corpus, sets, *, ask: bool) -> tuple:
    """Our side of the same-runtime column: the served corpus built again with the torch fp32 embedder (so both
    sides search vectors made by the same runtime), then the same questions as every other side, in-process
    with the torch fp32 embedder and reader. Returns (engine, build seconds, latencies, quality results)."""
    import shutil

    from benchmark import queries
    from rag.engine import Engine

    search_sets, ask_sets, warmup, quality_set = sets
    shutil.rmtree(settings.index_dir, ignore_errors=True)
    engine = Engine.open(settings, create=True)
    t0 = time.perf_counter()
    engine.upsert(corpus.documents)
    build_s = time.perf_counter() - t0
    log(f"ours, torch fp32: built {len(engine.snapshot.chunks)} chunks in {build_s:.1f} s")
    for q in warmup:
        engine.search(q.text, queries.SEARCH_K)
        if ask:
            engine.ask(q.text, queries.ASK_TOP_K)
    searched = queries.search_runs(engine, search_sets)
    latency = [QueryLatency("/search", TORCH_WHERE, queries.latency(searched), None, "", queries.stages(searched))]
    if ask:
        asked = queries.ask_runs(engine, ask_sets)
        latency.append(QueryLatency("/ask", TORCH_WHERE, queries.latency(asked), None, "", queries.stages(asked)))
    for x in latency:
        log(f"{x.endpoint} {x.where} p50 {x.latency.p50:.1f} ms, stages {x.stages}")
    return engine, build_s, latency, queries.ask_questions(engine, quality_set, ask=ask)


def peer_section(args, plan: Plan, result: dict, *, python, corpus, settings, embedder, reader, sets, ours, quality):
    """Haystack in two columns: the same runtime as a torch fp32 build of ours, and as each is deployed."""
    from benchmark import queries
    from benchmark.calibration import calibration_set, fit_threshold
    from benchmark.peer import our_chunks, run_peer

    search_sets, ask_sets, warmup, quality_set = sets
    latency, ingests, ours_quality = ours
    notes: list[str] = result.setdefault("notes", [])
    trained = reader == "trained"
    torch_settings = settings.model_copy(
        update={
            "embed_backend": "torch",
            "reader_backend": "torch",
            "index_dir": args.cache / f"index-{corpus.name}-torch",
        }
    )
    engine, torch_build_s, torch_latency, torch_quality = ours_on_torch(
        torch_settings, corpus, sets, ask=bool(ask_sets)
    )
    latency.extend(torch_latency)
    cal = calibration_set(
        args.shared / "data" / "squad-v2.0-dev" / "dev-v2.0.json",
        args.seeds,
        sample=plan.calibration_questions,
        other_articles=plan.calibration_others,
    )
    chunks = our_chunks(engine.snapshot, {"covered": cal.covered, "not_covered": cal.not_covered}, embedder, settings)
    del engine
    common = dict(
        search_runs=search_sets,
        ask_runs=ask_sets,
        warmup=warmup,
        quality=quality_set,
        ingest_runs=plan.peer_ingest_runs,
        reader_dir=settings.reader_dir if trained else None,
        ours=settings,
        max_length=256,
        stride=96,
        log=log,
    )
    runs = {
        "same_runtime": run_peer(
            python,
            args.cache / "peer",
            "same_runtime",
            corpus,
            chunks=chunks,
            calibration={"covered": cal.questions, "not_covered": cal.questions},
            timeout_s=2400,
            **common,
        ),
        "default": run_peer(python, args.cache / "peer", "default", corpus, timeout_s=1800, **common),
    }
    same, default = runs["same_runtime"], runs["default"]
    if same.calibration.get("covered") and same.calibration.get("not_covered"):
        threshold, fit = fit_threshold(same.calibration["covered"], same.calibration["not_covered"])
        fit["questions"] = cal.description
        same.result = replace(same.result, threshold=threshold, threshold_fit=fit)
        log(f"peer (same_runtime): no-answer threshold {threshold:.4f} ({fit})")
    result["peer"] = {name: report.plain(run.result) for name, run in runs.items()}
    for name, run in runs.items():
        log(f"peer ({name}): {run.result.status} {run.result.note}")

    def lat(endpoint: str, where: str):
        return next((x.latency for x in latency if x.endpoint == endpoint and x.where == where), None)

    def p50(x) -> float | None:
        return x.p50 if x is not None else None

    for name, run, where in (("same_runtime", same, TORCH_WHERE), ("default", default, "in-process")):
        ok = run.result.status == "ok"
        result[f"haystack_{name}_search_speedup"] = (
            ratio(p50(run.result.search), p50(lat("/search", where))) if ok else None
        )
        result[f"haystack_{name}_ask_speedup"] = (
            ratio(p50(run.result.ask), p50(lat("/ask", where))) if ok and trained else None
        )
    if not trained:
        notes.append("Haystack /ask ratios not computed: /ask was not timed with the trained reader")
    ours_ingest = next(i for i in ingests if i.corpus == corpus.name)
    result["haystack_ingest_speedup"] = (
        ratio(default.result.ingest_seconds, ours_ingest.seconds) if default.result.status == "ok" else None
    )
    result["ours_same_runtime"] = {
        "embed_backend": torch_settings.embed_backend,
        "reader_backend": torch_settings.reader_backend,
        "ingest_seconds": torch_build_s,
    }

    # quality: each column's pair on the same questions, and ours minus Haystack with paired intervals
    differences = []
    if default.result.status == "ok":
        asked = default.quality_asked if default.scored else []
        quality.append(
            queries.quality(
                "Haystack (defaults)",
                "default",
                default.quality_searched,
                asked,
                "its no-answer entry (ExtractiveReader default)",
            )
        )
        differences += queries.differences("default", ours_quality, (default.quality_searched, asked))
    torch_searched, torch_asked = torch_quality
    quality.append(
        queries.quality(
            "ours (torch fp32)",
            "same_runtime",
            torch_searched,
            torch_asked,
            "its calibrated decider and shipped threshold",
        )
    )
    if same.result.status == "ok":
        fitted = same.result.threshold
        kept = queries.thresholded(same.quality_asked, fitted) if same.scored and fitted is not None else []
        quality.append(
            queries.quality(
                "Haystack (torch fp32, our settings)",
                "same_runtime",
                same.quality_searched,
                kept,
                f"top answer score >= {fitted:.4f}, fitted by our rule" if fitted is not None else "not fitted",
            )
        )
        differences += queries.differences("same_runtime", torch_quality, (same.quality_searched, kept))
    result["quality_differences"] = report.plain(differences)
