"""The tables of our service's own figures, one function a section of bench.md: ingest, query latency,
throughput, the serving process, filtered search, /ask/batch, the query cache, and the embedder's and reader's
backends. Each reads the section's part of bench.json."""

from __future__ import annotations

from benchmark.report.format import Table, mib, num, stage_text, times


def ingest_table(r: dict) -> Table:
    """Ingest: full builds per corpus against the raw embedding throughput (the floor), and one article added."""
    t = Table(
        "Ingest (full build: chunk, embed, BM25, FAISS, save)",
        [
            "corpus",
            "docs",
            "chunks",
            "build s (save)",
            "docs/s",
            "chunks/s",
            "raw embedding chunks/s",
            "ingest / raw",
            "index on disk",
            "add one article",
        ],
    )
    for i in r["ingest"]:
        inc = i.get("incremental")
        t.rows.append(
            [
                i["corpus"],
                num(i["documents"]),
                num(i["chunks"]),
                f"{num(i['seconds'], 1)} ({num(i.get('save_seconds'), 1)})",
                num(i["docs_per_s"], 1),
                num(i["chunks_per_s"], 1),
                num(i["floor_chunks_per_s"], 1)
                + ("" if i["floor_chunks"] == i["chunks"] else f" ({i['floor_chunks']:,}-chunk sample)"),
                times(i["floor_ratio"]),
                mib(i["index_bytes"]),
                f"{inc['seconds']:.2f} s ({inc['chunks']} chunks into {inc['base_chunks']:,})" if inc else "–",
            ]
        )
    t.notes.append(
        "Medians of the runs shown in bench.json; each build is followed by its floor run (embedder.encode on"
        " the same chunk texts), so background load falls on both."
    )
    t.notes += [f"{c['name']}: {c['description']}" for c in r.get("corpora", [])]
    return t


def latency_table(r: dict) -> Table:
    """Query latency per endpoint and place (in-process, HTTP), against the floor of the model passes alone."""
    t = Table(
        f"Query latency, ms ({r.get('serve_corpus', 'squad')} index, SQuAD validation questions, each asked once)",
        [
            "endpoint",
            "where",
            "p50",
            "p95",
            "floor p50",
            "p50 / floor",
            "stages p50 (service)",
            "floor parts p50",
            "n x runs",
        ],
    )
    for x in r["latency"]:
        f = x.get("floor") or {}
        t.rows.append(
            [
                x["endpoint"] + (f" ({x['note']})" if x.get("note") else ""),
                x["where"],
                num(x["latency"]["p50"]),
                num(x["latency"]["p95"]),
                num(f.get("p50")),
                times(x.get("floor_ratio")),
                stage_text(x.get("stages")),
                stage_text(x.get("floor_stages")),
                f"{x['latency']['n']} x {x['latency']['runs']}",
            ]
        )
    t.notes += [
        "Floor /search: encode the query (no cache) + one FAISS search at the retrieval depth, on one thread."
        " Floor /ask: that"
        " + the reader's tokenisation and one forward pass over the passages /ask read.",
        "Stages: the timings_ms the service reports (over HTTP: measured inside the server), p50 of each.",
        "p50/p95: median over runs of each run's percentile; runs use disjoint questions, so the query-embedding"
        " cache never hits.",
    ]
    return t


def throughput_table(r: dict) -> Table:
    """Requests per second over HTTP at each concurrency level."""
    t = Table(
        "Throughput over HTTP (uvicorn, 127.0.0.1)",
        ["endpoint", "concurrency", "requests x runs", "req/s", "p50 ms", "p95 ms", "errors"],
    )
    for x in r["throughput"]:
        errs = str(x["errors"]) + (f" {x['error_kinds']}" if x["error_kinds"] else "")
        t.rows.append(
            [
                x["endpoint"],
                str(x["concurrency"]),
                f"{x['requests']} x {x['runs']}",
                num(x["rps"], 1),
                num(x["p50"]),
                num(x["p95"]),
                errs,
            ]
        )
    return t


def server_table(r: dict) -> Table:
    """The serving process: start-up time, memory and the index on disk."""
    s = r["server"]
    t = Table(
        "Serving process (`rag serve`)",
        ["corpus", "reader", "start-up s", "RSS when ready", "peak RSS (VmHWM)", "index on disk"],
    )
    t.rows.append(
        [
            s["corpus"],
            s["reader"],
            num(s["startup_s"], 1),
            f"{s['rss_ready_mib']:.0f} MiB",
            f"{s['rss_peak_mib']:.0f} MiB",
            mib(s["index_bytes"]),
        ]
    )
    return t


def cache_table(r: dict) -> Table:
    """The query-embedding cache: the same question searched twice."""
    c = r["cache"]
    t = Table(
        "Query-embedding cache (/search in-process, same question twice)",
        ["questions", "first p50 ms", "repeat p50 ms", "speed-up", "embed first", "embed repeat"],
    )
    t.rows.append(
        [
            str(c["questions"]),
            num(c["first_ms"], 2),
            num(c["repeat_ms"], 2),
            times(c["speedup"], 1),
            num(c["first_embed_ms"], 2),
            num(c["repeat_embed_ms"], 2),
        ]
    )
    return t


def embed_backends_table(r: dict) -> Table:
    """The embedder's backends: throughput, query latency and agreement with torch fp32."""
    t = Table(
        "Embedder backends (floor options)",
        ["backend", "chunks", "chunks/s", "query p50 ms", "cosine to torch fp32 min", "mean"],
    )
    for b in r["embed_backends"]:
        t.rows.append(
            [
                b["backend"],
                str(b["chunks"]),
                num(b["chunks_per_s"], 1),
                num(b["query_p50_ms"], 2),
                num(b["cos_min"], 5),
                num(b["cos_mean"], 5),
            ]
        )
    return t


def reader_backends_table(r: dict) -> Table:
    """The reader's backends: time per passage and F1 against torch fp32."""
    t = Table(
        "Reader backends (question + gold paragraph, answerable validation questions)",
        ["backend", "questions", "ms / passage p50", "F1", "F1 change vs torch"],
    )
    for b in r["reader_backends"]:
        t.rows.append(
            [
                b["backend"],
                str(b["questions"]),
                num(b["ms_per_passage_p50"], 1),
                num(b["f1"], 3),
                f"{b['f1_delta']:+.3f}",
            ]
        )
    if not r["reader_backends"]:
        t.notes.append(r.get("reader_note") or "no trained reader")
    return t


def filtered_table(rows: list[dict]) -> Table:
    t = Table(
        "Filtered /search (in-process Engine.search, same questions, same run)",
        [
            "filter",
            "documents",
            "chunks kept",
            "dense search",
            "selection built ms",
            "p50 ms",
            "p95 ms",
            "retrieve p50 ms",
            "p50 / unfiltered",
            "n x runs",
        ],
    )
    for x in rows:
        t.rows.append(
            [
                x["label"],
                num(x["documents"]),
                f"{x['chunks']:,} ({x['share']:.1%})",
                x["dense_path"],
                num(x["select_ms"], 2),
                num(x["latency"]["p50"], 2),
                num(x["latency"]["p95"], 2),
                num(x["retrieve_p50"], 2),
                times(x["vs_unfiltered"]),
                f"{x['latency']['n']} x {x['latency']['runs']}",
            ]
        )
    t.notes += [
        "Filters by document ids, drawn at random until their chunks come closest to 1%, 10% and 100% of the"
        " index; retrieval searches only the kept chunks (BM25 scores taken over their rows; dense: an exact"
        " product over their vectors up to rag.dense.EXACT_ROWS chunks, from a quarter of the index a deeper"
        " unfiltered search cut to the kept chunks, else FAISS with an id selector; rag/retrieval.py).",
        "Each question is searched once unfiltered first, untimed, so every variant finds its embedding in the"
        " query cache: the variants differ only in retrieval. Selection built: the first call with a new filter"
        " (cached per index snapshot afterwards).",
    ]
    return t


def batch_table(b: dict) -> Table:
    t = Table(
        f"POST /ask/batch against one question per POST /ask (HTTP, same questions, {b['date']})",
        [
            "batch mode",
            "questions x runs",
            "batch size",
            "/ask q/s, 1 at a time",
            "/ask q/s, 4 at a time",
            "/ask/batch q/s",
            "batch / best /ask",
            "top answer as /ask's",
            "errors",
        ],
    )
    for x in b["rows"]:
        t.rows.append(
            [
                x["mode"],
                f"{x['questions'] // max(1, x['runs'])} x {x['runs']}",
                str(x["batch_size"]),
                num(x["ask_qps"], 2),
                num(x["ask_concurrent_qps"], 2),
                num(x["batch_qps"], 2),
                times(x["speedup"]),
                f"{x['same_top_answers']} / {x['questions']}",
                str(x["errors"]),
            ]
        )
    t.notes += [
        f"Reader {b['reader']}, embedding {b['embedding']}, index {b['index']}; load average at start "
        + " ".join(f"{v:.2f}" for v in b["load_average"])
        + ".",
        "exact (the default): a batch answers exactly as /ask; with int8 models each question then keeps its own"
        " forward passes (int8 scales a pass's activations together, so sharing one moves scores by up to a logit)."
        " shared passes: RAG_BATCH_EXACT=false, the reader's passes shared across questions (16 windows a pass).",
        "Each run: the batches first, then the same questions one /ask at a time, then 4 /ask at a time (so the /ask"
        " runs find the questions' embeddings in the service's cache). Medians over the runs.",
    ]
    return t
