"""Results as bench.json (every record, plus the ratios) and as tables: printed with rich, written as Markdown.

Both renderings read the JSON form, so a `--scale` run can merge into a main run's file (and back) and the
Markdown always shows everything measured so far, each part with its own date.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------------------------------------ formatting


def num(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value:,}{suffix}"


def times(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}x"


def mib(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"


def stage_text(stages: dict | None) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in (stages or {}).items() if k != "total") or "–"


def check(ok: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "not measured"}[ok]


@dataclass
class Table:
    title: str
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.rows:
            out.append("| " + " | ".join(self.headers) + " |")
            out.append("|" + "|".join("---" for _ in self.headers) + "|")
            out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in self.rows]
            out.append("")
        out += [f"- {n}" for n in self.notes]
        if self.notes:
            out.append("")
        return "\n".join(out)

    def rich(self):
        from rich.table import Table as RichTable

        table = RichTable(
            *self.headers,
            title=self.title,
            title_justify="left",
            caption="\n".join(self.notes) or None,
            caption_justify="left",
        )
        for row in self.rows:
            table.add_row(*(str(c).replace("**", "") for c in row))
        return table


# ------------------------------------------------------------------------------------------------ JSON


def plain(value: Any) -> Any:
    """Records (dataclasses) as dicts, with each record's computed properties (ratios) added; NaN as null."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        for name, attr in vars(type(value)).items():
            if isinstance(attr, property):
                out[name] = plain(getattr(value, name))
        return out
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def merge_previous(result: dict, path: Path, *, scale_only: bool) -> dict:
    """Keep the part of an earlier bench.json this run did not measure (the scale part, or the main part)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return result
    if scale_only:
        return {**previous, "scale": result["scale"], "targets": None}
    if previous.get("scale") and not result.get("scale"):
        result["scale"] = previous["scale"]
    return result


def merge_batch(result: dict, path: Path) -> dict:
    """A --batch-only run: its part replaces the earlier file's /ask/batch part, the rest is kept."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return result
    return {**previous, "batch": result["batch"], "targets": None}


# ------------------------------------------------------------------------------------------------ targets


def targets(r: dict) -> list[dict]:
    out: list[dict] = []

    def add(name: str, goal: str, measured: str, ok: bool | None) -> None:
        out.append({"name": name, "goal": goal, "measured": measured, "ok": ok})

    lat = {(x["endpoint"], x["where"]): x for x in r.get("latency") or []}
    for endpoint, bound in (("/search", 1.5), ("/ask", 1.3)):
        x = lat.get((endpoint, "http")) or {}
        fr = x.get("floor_ratio")
        note = x.get("note") or ""  # a fallback reader: shown, not judged
        add(
            f"{endpoint} p50 over HTTP vs its floor",
            f"<= {bound}x",
            (times(fr) + (f" ({note})" if note else "")) if fr else "–",
            None if not fr or note else fr <= bound,
        )
    ingest = r.get("ingest") or []
    if ingest:
        worst = min(i["floor_ratio"] for i in ingest)
        add(
            "ingest vs raw embedding throughput",
            ">= 0.9x",
            ", ".join(f"{i['corpus']} {times(i['floor_ratio'])}" for i in ingest),
            worst >= 0.9,
        )
    rows = (r.get("batch") or {}).get("rows") or []
    if rows:
        exact = next((x for x in rows if x["mode"] == "exact"), rows[0])
        add(
            f"/ask/batch ({exact['batch_size']} a batch) vs one question per /ask, questions/s",
            ">= 1.5x",
            ", ".join(f"{x['mode']} {times(x['speedup'])}" for x in rows) + " (judged: exact, the default)",
            None if exact["speedup"] is None else exact["speedup"] >= 1.5,
        )
    tp = r.get("throughput") or []
    if tp:
        errors = sum(t["errors"] for t in tp)
        add("HTTP errors under load (c = 1, 8, 32)", "0", str(errors), errors == 0)
    for key, goal, bound in (
        ("haystack_search_speedup", ">= 6x lower latency", 6.0),
        ("haystack_query_speedup", ">= 3x lower latency", 3.0),
        ("haystack_ingest_speedup", ">= 1x (at least as fast)", 1.0),
    ):
        value = r.get(key)
        name = {
            "haystack_search_speedup": "Haystack / ours, hybrid search p50",
            "haystack_query_speedup": "Haystack / ours, /ask p50",
            "haystack_ingest_speedup": "Haystack / ours, ingest time",
        }[key]
        add(name, goal, times(value, 1) if value else "–", None if value is None else value >= bound)
    scale = (r.get("scale") or {}).get("best") or []
    big = [p for p in scale if p["kind"] == "ivf-sq8" and p["vectors"] >= 10_000_000]
    if big:
        p = big[0]
        add(
            f"{p['vectors'] / 1e6:.0f}M vectors, IVF-SQ8",
            "p95 <= 10 ms at recall@10 >= 0.95; <= 5 GB; built < 20 min",
            f"p95 {num(p['p95_ms'], 2)} ms at recall {num(p['recall_at_10'], 3)} (nprobe {p['params'].get('nprobe')}); "
            f"{mib(p['index_bytes'])}; built in {num(p['build_s'] / 60, 1)} min",
            p["p95_ms"] <= 10 and p["recall_at_10"] >= 0.95 and p["index_bytes"] <= 5e9 and p["build_s"] < 1200,
        )
    return out


# ------------------------------------------------------------------------------------------------ tables


def header(r: dict) -> Table:
    env = r["environment"]
    v = env["versions"]
    t = Table("Machine and versions", ["", ""])
    rows = [
        ("date", env["date"]),
        ("mode", env["mode"]),
        ("cores", f"{env['cores']} ({env['cores_usable']} usable by this process)"),
        ("CPU", env["cpu_model"]),
        ("memory", f"{env['memory_gib']:.1f} GiB"),
        ("load average at start", " ".join(f"{x:.2f}" for x in env["load_average"])),
        ("python", v.get("python", "?")),
        ("torch / onnxruntime / faiss", f"{v.get('torch')} / {v.get('onnxruntime')} / {v.get('faiss-cpu')}"),
        ("sentence-transformers / transformers", f"{v.get('sentence-transformers')} / {v.get('transformers')}"),
        (
            "numpy / bm25s / fastapi / uvicorn",
            f"{v.get('numpy')} / {v.get('bm25s')} / {v.get('fastapi')} / {v.get('uvicorn')}",
        ),
    ]
    peer = r.get("peer") or {}
    if peer.get("versions"):
        pv = peer["versions"]
        rows.append(
            (
                "peer (own venv)",
                f"haystack-ai {pv.get('haystack-ai')}, torch {pv.get('torch')}, "
                f"sentence-transformers {pv.get('sentence-transformers')}",
            )
        )
    s = env["settings"]
    rows.append(("service settings", ", ".join(f"{k} {val}" for k, val in s.items())))
    t.rows = [list(row) for row in rows]
    return t


def tables(r: dict) -> list[Table]:
    out = [header(r)]
    if r.get("targets"):
        t = Table("Targets", ["target", "goal", "measured", "met"])
        t.rows = [[x["name"], x["goal"], x["measured"], check(x["ok"])] for x in r["targets"]]
        out.append(t)
    if r.get("ingest"):
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
        out.append(t)
    if r.get("latency"):
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
        out.append(t)
    if r.get("throughput"):
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
        out.append(t)
    if r.get("server"):
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
        out.append(t)
    if r.get("filtered"):
        out.append(filtered_table(r["filtered"]))
    if r.get("batch"):
        out.append(batch_table(r["batch"]))
    if r.get("cache"):
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
        out.append(t)
    if r.get("quality"):
        t = Table(
            "Quality on the same questions",
            ["system", "questions", "recall@5 (gold paragraph)", "F1 answerable", "F1 SQuAD 2.0", "answered", "note"],
        )
        for q in r["quality"]:
            t.rows.append(
                [
                    q["system"],
                    str(q["questions"]),
                    num(q["recall_at_5"], 3),
                    num(q["f1_answerable"], 3),
                    num(q["f1_squad2"], 3),
                    num(q["answered"], 2),
                    q.get("note", ""),
                ]
            )
        t.notes.append(
            "recall@5 over the /search questions; F1 over the /ask questions (top answer; an abstention is an"
            " empty answer)."
        )
        out.append(t)
    if r.get("peer"):
        out.append(peer_table(r))
    if r.get("embed_backends"):
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
        out.append(t)
    if r.get("reader_backends") is not None:
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
        out.append(t)
    if r.get("scale"):
        out.append(scale_table(r["scale"]))
    notes = list(r.get("notes") or [])
    if r.get("section_seconds"):
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in r["section_seconds"].items())
        notes.append(f"Run time: {r.get('total_seconds', 0):.0f} s in all ({parts}).")
    if notes:
        out.append(Table("Notes", [], notes=notes))
    return out


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


def peer_table(r: dict) -> Table:
    p = r["peer"]
    t = Table(
        "Haystack 2.x peer (same corpus, same embedding model, in-process calls)",
        ["figure", "ours", "Haystack", "Haystack / ours"],
    )
    if p["status"] != "ok":
        t.notes.append(f"peer {p['status']}: {p['note']}")
        return t
    lat = {(x["endpoint"], x["where"]): x["latency"] for x in r.get("latency") or []}
    squad = next((i for i in r.get("ingest") or [] if i["corpus"] == r.get("serve_corpus", "squad")), None)
    if squad:
        t.rows.append(
            [
                "ingest s (" + r.get("serve_corpus", "squad") + ")",
                num(squad["seconds"], 1),
                num(p["ingest_seconds"], 1),
                times(r.get("haystack_ingest_speedup")),
            ]
        )
        t.rows.append(["chunks", num(squad["chunks"]), num(p["ingest_chunks"]), ""])
    for endpoint, key, speed in (
        ("/search", "search", "haystack_search_speedup"),
        ("/ask", "ask", "haystack_query_speedup"),
    ):
        ours = lat.get((endpoint, "in-process"))
        theirs = p.get(key)
        if ours and theirs:
            t.rows.append(
                [
                    f"{endpoint} p50 ms",
                    num(ours["p50"]),
                    num(theirs["p50"]),
                    times(r.get(speed) or (theirs["p50"] / ours["p50"] if ours["p50"] else None)),
                ]
            )
            t.rows.append(
                [
                    f"{endpoint} p95 ms",
                    num(ours["p95"]),
                    num(theirs["p95"]),
                    times(theirs["p95"] / ours["p95"] if ours["p95"] else None),
                ]
            )
        http = lat.get((endpoint, "http"))
        if http and theirs:
            t.rows.append(
                [
                    f"{endpoint} p50 ms, ours over HTTP",
                    num(http["p50"]),
                    num(theirs["p50"]),
                    times(theirs["p50"] / http["p50"] if http["p50"] else None),
                ]
            )
    if p.get("rss_peak_mib"):
        server = r.get("server") or {}
        t.rows.append(["peak RSS MiB", num(server.get("rss_peak_mib"), 0), num(p["rss_peak_mib"], 0), ""])
    t.notes.append(
        "Haystack: InMemoryDocumentStore (BM25Okapi k1 1.2, b 0.75), SentenceTransformers embedders from our model"
        " folder, embedding + BM25 retrievers (top 50 each), DocumentJoiner(reciprocal_rank_fusion), ExtractiveReader:"
        f" {p['reader']}. {p['note']}."
    )
    t.notes.append("Ours: the engine in-process; /ask also over HTTP for reference. Ratios > 1 mean we are faster.")
    return t


def scale_table(scale: dict) -> Table:
    t = Table(
        f"Dense index at scale (synthetic, dim 384; {scale.get('date', '')})",
        ["vectors", "kind", "params", "build s", "index size", "p50 ms", "p95 ms", "recall@10"],
    )
    for p in scale["best"]:
        params = ", ".join(f"{k} {v}" for k, v in p["params"].items())
        t.rows.append(
            [
                f"{p['vectors']:,}",
                p["kind"],
                params or p.get("note", ""),
                num(p["build_s"], 1),
                mib(p["index_bytes"]),
                num(p["p50_ms"], 2),
                num(p["p95_ms"], 2),
                num(p["recall_at_10"], 3),
            ]
        )
    t.notes.append(
        "Per kind, the smallest nprobe / efSearch that reaches recall@10 >= 0.95 (else the best reached); the whole"
        " sweep is in bench.json."
    )
    t.notes += scale.get("notes", [])
    return t


def markdown(r: dict) -> str:
    intro = [
        "# Benchmark",
        "",
        "Written by `make bench` (`eval/bench.py`); `bench.json` beside this file holds every figure. Latencies in ms;",
        "each figure is the median of several runs; every ratio compares figures measured in the same run.",
        "",
    ]
    return "\n".join(intro) + "\n" + "\n".join(t.markdown() for t in tables(r))


def write(r: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / "bench.json", out_dir / "bench.md"
    j.write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
    m.write_text(markdown(r))
    return j, m
