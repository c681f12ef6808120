"""`make bench`: how fast the service is, against its own floor and against Haystack, on this machine.

    .venv/bin/python eval/bench.py            # the full benchmark (~25 min on 2 cores, both Haystack columns included)
    .venv/bin/python eval/bench.py --quick    # seed + 2 SQuAD articles + 100 SciFact abstracts, < 3 min, no peer
    .venv/bin/python eval/bench.py --scale    # only the dense index at 1M and 10M synthetic vectors (~20 min;
                                              # fitted to real embeddings, --scale-data isotropic: the old ones)
    .venv/bin/python eval/bench.py --quick --batch-only   # only POST /ask/batch against one /ask per question

Prints the tables and writes them to eval/results/bench.md, every figure to eval/results/bench.json (a main run
keeps an earlier --scale part and the other way round). The sections live in eval/benchmark/.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # eval/benchmark/

from benchmark import report  # noqa: E402
from benchmark.records import Environment, PeerResult, QueryLatency, Server, ratio  # noqa: E402
from loadtest import git_commit  # noqa: E402 - eval/, beside us
from rich.console import Console  # noqa: E402

from rag.reader.model import DEFAULT_READER_DIR  # noqa: E402

console = Console(stderr=True, soft_wrap=True)
out = Console(width=None if sys.stdout.isatty() else 160)
STARTED = time.perf_counter()


def log(message: str) -> None:
    console.print(f"[dim]{time.perf_counter() - STARTED:7.1f} s[/dim] {message}", highlight=False, markup=False)


@dataclass(frozen=True)
class Plan:
    """How much of everything a mode measures."""

    mode: str
    squad_articles: int | None  # None: all 35 (+ seed); else the smallest validation articles
    scifact_docs: int | None  # None: all 5,183
    ingest_runs: dict[str, int]
    floor_sample: dict[str, int]  # corpora whose floor embeds a fixed sample of chunks
    incremental_runs: int
    runs: int  # latency runs, each on new questions
    questions: int  # per latency run
    warmup: int
    requests: int  # per throughput run and concurrency level
    throughput_runs: int  # /search
    ask_throughput_runs: int
    concurrency: tuple[int, ...]
    cache_questions: int
    embed_sample: int
    embed_runs: int
    reader_questions: int
    peer_ingest_runs: int
    quality_questions: int  # validation questions scored (search + /ask) on every side, with bootstrap intervals
    calibration_questions: int  # the peer's no-answer threshold: held-out training questions asked in A and B
    calibration_others: int | None  # other training articles in the calibration corpora (None: all 24, as ours)
    batch_size: int = 16  # questions per POST /ask/batch
    batch_questions: int = 64  # per /ask/batch run (each way of asking gets the same ones)
    batch_runs: int = 3


FULL = Plan(
    mode="full",
    squad_articles=None,
    scifact_docs=None,
    ingest_runs={"seed": 3, "squad": 2, "scifact": 1},
    floor_sample={"scifact": 1000},
    incremental_runs=2,
    runs=3,
    questions=40,
    warmup=5,
    requests=200,
    throughput_runs=2,
    ask_throughput_runs=1,
    concurrency=(1, 8, 32),
    cache_questions=30,
    embed_sample=128,
    embed_runs=2,
    reader_questions=100,
    peer_ingest_runs=1,
    quality_questions=500,
    calibration_questions=400,
    calibration_others=None,
)
QUICK = Plan(
    mode="quick",
    squad_articles=2,
    scifact_docs=100,
    ingest_runs={"seed": 2, "squad": 1, "scifact": 1},
    floor_sample={},
    incremental_runs=2,
    runs=2,
    questions=12,
    warmup=3,
    requests=40,
    throughput_runs=1,
    ask_throughput_runs=1,
    concurrency=(1, 8, 32),
    cache_questions=10,
    embed_sample=64,
    embed_runs=2,
    reader_questions=30,
    peer_ingest_runs=1,
    quality_questions=60,
    calibration_questions=40,
    calibration_others=4,
    batch_questions=32,
    batch_runs=2,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="eval/bench.py",
        description="Benchmark ingest, query latency, throughput and memory against the bare model passes and "
        "against Haystack 2.x; or (--scale) the dense index at 1M-10M vectors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small corpora, fewer runs, no peer unless --peer (< 3 min)")
    p.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the Haystack peer [default: on, off with --quick]",
    )
    p.add_argument("--scale", action="store_true", help="only the synthetic dense-index scale benchmark")
    p.add_argument(
        "--batch-only",
        action="store_true",
        help="only POST /ask/batch against one question per /ask (on the served corpus; merged into bench.json)",
    )
    p.add_argument(
        "--scale-sizes", default="1M,10M", help="comma-separated vector counts for --scale (k and M suffixes)"
    )
    p.add_argument("--scale-queries", type=int, default=200, help="queries ground-truthed for --scale")
    p.add_argument(
        "--scale-data",
        choices=("fitted", "isotropic"),
        default="fitted",
        help="--scale's vectors: fitted to real chunk embeddings (eval/benchmark/fitted_vectors.py), or isotropic "
        "clusters around random centres (the first generator; flatters IVF). The other's last figures are kept",
    )
    p.add_argument(
        "--scale-fit-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--scale: first compare IVF recall on the real cached vectors, fitted and isotropic ones (~2 min)",
    )
    p.add_argument(
        "--scale-stream-above",
        default="2M",
        help="--scale sizes above this are streamed into IVF indexes (no float copy, no exact or HNSW index)",
    )
    p.add_argument(
        "--reader",
        choices=("auto", "trained", "heuristic"),
        default="auto",
        help="auto: the trained reader when its weights exist, else /ask is skipped; heuristic: /ask timed with the "
        "heuristic reader, labelled as a fallback",
    )
    p.add_argument(
        "--reader-dir", type=Path, default=DEFAULT_READER_DIR, help="the trained reader's folder (config + weights)"
    )
    p.add_argument(
        "--corpora", default="seed,squad,scifact", help="corpora to ingest (squad is always built: it is served)"
    )
    p.add_argument("--runs", type=int, help="latency runs (each on new questions)")
    p.add_argument("--questions", type=int, help="questions per latency run")
    p.add_argument("--requests", type=int, help="requests per throughput run and concurrency level")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="folder holding data/")
    p.add_argument("--seeds", type=Path, default=ROOT / "seeds", help="the seed article(s)")
    p.add_argument(
        "--cache", type=Path, default=ROOT / "eval" / ".cache" / "bench", help="indexes, logs, peer work files"
    )
    p.add_argument(
        "--peer-venv",
        type=Path,
        default=ROOT / "eval" / ".cache" / "haystack-venv",
        help="the peer's virtual environment",
    )
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results", help="where bench.md and bench.json go")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------ environment


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in (
        "torch",
        "onnxruntime",
        "faiss-cpu",
        "sentence-transformers",
        "transformers",
        "numpy",
        "bm25s",
        "fastapi",
        "uvicorn",
        "httpx",
    ):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def environment(mode: str, settings: dict) -> Environment:
    return Environment(
        commit=git_commit(),
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        mode=mode,
        cores=os.cpu_count() or 1,
        cores_usable=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model(),
        memory_gib=memory_gib(),
        load_average=os.getloadavg(),
        versions=versions(),
        settings=settings,
    )


# ------------------------------------------------------------------------------------------------ main run


def reader_choice(asked: str, folder: Path) -> tuple[str, str | None]:
    """(reader kind for /ask or 'none', a note when /ask is not timed with the trained reader)."""
    weights = folder / "model.safetensors"
    if asked == "heuristic":
        return "heuristic", "heuristic reader, a labelled fallback: not the service's reader"
    if weights.is_file():
        return "trained", None
    if asked == "trained":
        raise SystemExit(f"bench: --reader trained, but there are no weights at {weights}")
    return "none", f"no trained reader at {weights}: /ask and reader figures skipped"


def main_run(args: argparse.Namespace, plan: Plan, result: dict) -> None:
    from benchmark import backends, filtered, ingest, queries, serving
    from benchmark.corpora import QuestionPool, load_data, seed_documents
    from benchmark.peer import ensure_venv

    from rag.embedding import Embedder
    from rag.engine import Engine
    from rag.settings import Settings

    reader_dir = args.reader_dir.resolve()
    reader, reader_note = reader_choice(args.reader, reader_dir)
    notes: list[str] = result.setdefault("notes", [])
    if reader_note:
        notes.append(reader_note)
    base = Settings(reader="heuristic" if reader == "none" else reader, reader_dir=reader_dir)
    result["environment"] = report.plain(
        environment(
            plan.mode,
            {
                "embedding": base.embed_backend,
                "reader": f"{reader} ({base.reader_backend})" if reader == "trained" else reader,
                "fusion": f"{base.fusion} (k {base.rrf_k}, depth {base.retrieval_depth})",
                "read_k": base.read_k,
                "dense index": base.dense_index,
                "threads": base.threads or "all cores",
                "max_concurrency": base.max_concurrency,
            },
        )
    )
    wanted = [c.strip() for c in args.corpora.split(",") if c.strip()]
    data = load_data(
        args.shared, args.seeds, squad_articles=plan.squad_articles, scifact_docs=plan.scifact_docs, corpora=wanted
    )
    result["corpora"] = [
        {"name": c.name, "documents": len(c.documents), "description": c.description} for c in data.corpora
    ]
    result["serve_corpus"] = data.serve
    sections: dict[str, float] = result.setdefault("section_seconds", {})

    def section(name: str, t0: float) -> None:
        sections[name] = round(time.perf_counter() - t0, 1)

    # --------------------------------------------------------------------------------------- ingest
    t0 = time.perf_counter()
    log("loading the models")
    embedder = Embedder(backend=base.embed_backend, threads=base.threads).load()
    embedder.encode(["warm-up"] * 8)
    ingests, built = [], {}
    for corpus in data.corpora:
        folder = args.cache / f"index-{corpus.name}"
        figure, index = ingest.measure_ingest(
            corpus,
            folder,
            embedder,
            base,
            runs=plan.ingest_runs.get(corpus.name, 1),
            floor_sample=plan.floor_sample.get(corpus.name),
            log=log,
        )
        built[corpus.name] = index
        if corpus.name != "seed":  # the big indexes: add the seed article to each
            article = seed_documents(args.seeds)[0]
            inc = ingest.measure_incremental(
                index, folder, article, embedder, base, runs=plan.incremental_runs, log=log
            )
            figure = replace(figure, incremental=inc)
        ingests.append(figure)
    result["ingest"] = report.plain(ingests)
    section("ingest", t0)

    # --------------------------------------------------------------------------------------- queries in-process
    t0 = time.perf_counter()
    index_dir = args.cache / f"index-{data.serve}"
    settings = base.model_copy(update={"index_dir": index_dir})
    log(f"opening the engine on {index_dir} (reader: {reader})")
    engine = Engine.open(settings)
    pool = QuestionPool(data.scored, data.extra)
    warmup = pool.any(plan.warmup)
    search_sets = [pool.scored(plan.questions) for _ in range(plan.runs)]
    ask_sets = [pool.scored(plan.questions) for _ in range(plan.runs)] if reader != "none" else []
    for q in warmup:
        engine.search(q.text, queries.SEARCH_K)
        if reader != "none":
            engine.ask(q.text, queries.ASK_TOP_K)
    ask_note = "heuristic fallback" if reader == "heuristic" else ""
    floors: dict[str, tuple] = {}

    def record(endpoint: str, where: str, observed: list) -> QueryLatency:
        floor, floor_stages = floors[endpoint]
        note = ask_note if endpoint == "/ask" else ""
        x = QueryLatency(
            endpoint, where, queries.latency(observed), floor, note, queries.stages(observed), floor_stages
        )
        log(f"{endpoint} {where} p50 {x.latency.p50:.1f} ms (floor {floor.p50:.1f} ms), stages {x.stages}")
        return x

    searched = queries.search_runs(engine, search_sets)
    floors["/search"] = queries.floor(engine, searched, read=False)
    latency = [record("/search", "in-process", searched)]
    asked = []
    if ask_sets:
        asked = queries.ask_runs(engine, ask_sets)
        floors["/ask"] = queries.floor(engine, asked, read=True)
        latency.append(record("/ask", "in-process", asked))
    quality_set = pool.scored(plan.quality_questions)
    log(f"quality: {len(quality_set)} validation questions through search and /ask")
    ours_quality = queries.ask_questions(engine, quality_set, ask=bool(ask_sets))
    quality = [
        queries.quality(
            "ours" + (" (heuristic reader)" if reader == "heuristic" else f" ({base.reader_backend})"),
            "default",
            *ours_quality,
            no_answer="its calibrated decider and shipped threshold",
        )
    ]
    cache = queries.cache_effect(engine, pool.any(plan.cache_questions))
    result["cache"] = report.plain(cache)
    section("queries in-process", t0)

    # --------------------------------------------------------------------------------------- filtered /search
    t0 = time.perf_counter()
    filter_sets = [pool.any(plan.questions) for _ in range(plan.runs)]
    result["filtered"] = report.plain(filtered.filtered_search(engine, filter_sets, log=log))
    section("filtered search", t0)

    # --------------------------------------------------------------------------------------- HTTP
    t0 = time.perf_counter()
    server_reader = "trained" if reader == "trained" else "heuristic"
    log(f"starting rag serve --index {index_dir} (reader {server_reader})")
    throughputs = []
    with serving.serve(index_dir, server_reader, reader_dir, args.cache / "serve.log") as server:
        rss_ready = server.memory_mib("VmRSS")
        log(f"ready in {server.startup_s:.1f} s, RSS {rss_ready:.0f} MiB")
        latency.append(record("/search", "http", serving.http_runs(server.url, "/search", search_sets, warmup)))
        if ask_sets:
            latency.append(record("/ask", "http", serving.http_runs(server.url, "/ask", ask_sets, warmup)))
        endpoints = ["/search"] + (["/ask"] if ask_sets else [])
        for endpoint in endpoints:
            for c in plan.concurrency:
                n_runs = plan.throughput_runs if endpoint == "/search" else plan.ask_throughput_runs
                runs = [pool.any(plan.requests) for _ in range(n_runs)]
                tp = serving.throughput(server.url, endpoint, c, runs)
                throughputs.append(tp)
                log(f"{endpoint} c={c}: {tp.rps:.1f} req/s, {tp.errors} errors")
        rss_peak = server.memory_mib("VmHWM")
        result["server"] = report.plain(
            Server(
                corpus=data.serve,
                reader=server_reader + (" (loaded for /search only)" if reader == "none" else ""),
                startup_s=server.startup_s,
                rss_ready_mib=rss_ready,
                rss_peak_mib=rss_peak,
                index_bytes=ingest.dir_bytes(ingest.live_generation(index_dir)),
            )
        )
    result["throughput"] = report.plain(throughputs)
    result["latency"] = report.plain(latency)
    section("http", t0)

    # --------------------------------------------------------------------------------------- /ask/batch
    if ask_sets:
        t0 = time.perf_counter()
        result["batch"] = batch_section(index_dir, server_reader, base, reader_dir, args.cache, pool, plan)
        section("batch", t0)

    # --------------------------------------------------------------------------------------- backends
    t0 = time.perf_counter()
    texts = ingest.chunk_texts(built[data.serve])[: plan.embed_sample]
    result["embed_backends"] = report.plain(
        backends.embedder_backends(
            texts, [q.text for q in pool.any(20)], runs=plan.embed_runs, threads=base.threads, log=log
        )
    )
    if reader == "trained":
        result["reader_backends"] = report.plain(
            backends.reader_backends(reader_dir, pool.scored(plan.reader_questions), threads=base.threads, log=log)
        )
    else:
        result["reader_backends"] = []
        result["reader_note"] = "no trained reader: reader backends not compared"
    section("backends", t0)

    # --------------------------------------------------------------------------------------- peer
    peer_on = args.peer if args.peer is not None else plan.mode == "full"
    if peer_on:
        t0 = time.perf_counter()
        try:
            python = ensure_venv(args.peer_venv, log)
        except RuntimeError as exc:
            python, failed = None, PeerResult("failed", str(exc))
        if python is not None:
            del engine  # give the peer the memory back
            peer_section(
                args,
                plan,
                result,
                python=python,
                corpus=data.corpus(data.serve),
                settings=settings,
                embedder=embedder,
                reader=reader,
                sets=(search_sets, ask_sets, warmup, quality_set),
                ours=(latency, ingests, ours_quality),
                quality=quality,
            )
            result["latency"] = report.plain(latency)  # with our torch fp32 rows
        else:
            result["peer"] = {s: report.plain(replace(failed, setup=s)) for s in PEER_SETUPS}
            for key in PEER_KEYS:
                result[key] = None
        section("peer", t0)
    else:
        skipped = "not run (--quick without --peer, or --no-peer)"
        result["peer"] = {s: report.plain(PeerResult("skipped", skipped, s)) for s in PEER_SETUPS}
        for key in PEER_KEYS:
            result[key] = None
    result["quality"] = report.plain(quality)
    if plan.mode == "quick":
        notes.append("--quick: small corpora and few runs; use `make bench` for the figures to quote.")


# ------------------------------------------------------------------------------------------------ peer

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


# ------------------------------------------------------------------------------------------------ batches


def batch_section(index_dir: Path, reader: str, base, reader_dir: Path, cache: Path, pool, plan: Plan) -> dict:
    """POST /ask/batch against one question per POST /ask, same questions, on its own `rag serve` per batch mode."""
    from benchmark import batch

    warmup = pool.any(plan.warmup)
    runs = [pool.any(plan.batch_questions) for _ in range(plan.batch_runs)]
    rows = batch.compare(index_dir, reader, reader_dir, cache, runs, warmup, batch_size=plan.batch_size, log=log)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "reader": f"{reader} ({base.reader_backend})" if reader == "trained" else reader,
        "embedding": base.embed_backend,
        "index": index_dir.name,
        "load_average": os.getloadavg(),
        "rows": report.plain(rows),
    }


def batch_run(args: argparse.Namespace, plan: Plan, result: dict) -> None:
    """--batch-only: just the /ask/batch section, over the corpus the service is timed on (its index in --cache is
    reused; documents it lacks are added first)."""
    from benchmark.corpora import QuestionPool, load_data

    from rag.embedding import Embedder
    from rag.engine import Engine
    from rag.settings import Settings

    reader_dir = args.reader_dir.resolve()
    reader, note = reader_choice(args.reader, reader_dir)
    if reader == "none":
        raise SystemExit(f"bench --batch-only: {note}")
    data = load_data(args.shared, args.seeds, squad_articles=plan.squad_articles, scifact_docs=0, corpora=[])
    index_dir = args.cache / f"index-{data.serve}"
    base = Settings(reader=reader, reader_dir=reader_dir)
    log(f"bringing {index_dir} up to date with {data.corpus(data.serve).description}")
    writer = Engine(base.model_copy(update={"index_dir": index_dir}), Embedder(backend=base.embed_backend).load())
    writer.reload(create=True)
    writer.upsert(data.corpus(data.serve).documents)
    del writer
    pool = QuestionPool(data.scored, data.extra)
    result["environment"] = report.plain(environment(f"{plan.mode} --batch-only", {"reader": reader}))
    result["batch"] = batch_section(index_dir, reader, base, reader_dir, args.cache, pool, plan)


# ------------------------------------------------------------------------------------------------ scale run


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


# ------------------------------------------------------------------------------------------------ entry


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = replace(
        plan,
        runs=args.runs or plan.runs,
        questions=args.questions or plan.questions,
        requests=args.requests or plan.requests,
    )
    args.cache.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    if args.scale:
        result["environment"] = report.plain(environment("scale", {}))
        scale_run(args, result)
        env = result["scale"]["environment"] = result["environment"]
        result["scale"]["notes"].append(
            f"Machine: {env['cores']} cores ({env['cpu_model']}), load average at start "
            + " ".join(f"{x:.2f}" for x in env["load_average"])
            + f"; the whole --scale run took {result['scale']['seconds'] / 60:.1f} min."
        )
        result = report.merge_previous(result, args.out / "bench.json", scale_only=True)
    elif args.batch_only:
        batch_run(args, plan, result)
        result = report.merge_batch(result, args.out / "bench.json")
    else:
        main_run(args, plan, result)
        result = report.merge_previous(result, args.out / "bench.json", scale_only=False)
    result["targets"] = report.targets(result)
    if not (args.scale or args.batch_only):
        result["total_seconds"] = round(time.perf_counter() - STARTED, 1)
    for table in report.tables(result):
        out.print(table.rich())
    json_path, md_path = report.write(result, args.out)
    log(f"wrote {md_path} and {json_path.name} in {time.perf_counter() - STARTED:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
