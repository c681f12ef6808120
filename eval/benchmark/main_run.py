"""`make bench`'s main run, section by section on the served corpus: ingest (against the raw embedding floor),
queries in-process (latency against the floor of the model passes, quality, the query cache), filtered search,
HTTP (latency, throughput, the serving process), /ask/batch, the embedder's and reader's backends, and the
Haystack peer. Every figure goes into ``result``, the future bench.json."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from benchmark import report
from benchmark.batch_run import batch_section
from benchmark.machine import environment
from benchmark.peer_run import PEER_KEYS, PEER_SETUPS, peer_section
from benchmark.plan import Plan, reader_choice
from benchmark.progress import log
from benchmark.records import PeerResult, QueryLatency, Server


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
