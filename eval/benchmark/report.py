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
    out += haystack_targets(r)
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


def haystack_targets(r: dict) -> list[dict]:
    """Issue 16: the same-runtime ratios (hybrid search >= 3x on the full corpus; /ask >= 1.2x at equal or better
    F1), and ingest as each is deployed. The as-deployed latency ratios are reported, not judged."""
    full = (r.get("environment") or {}).get("mode") == "full"
    quick = "" if full else " (--quick: not judged, the target is on the full corpus)"
    search = r.get("haystack_same_runtime_search_speedup")
    ask = r.get("haystack_same_runtime_ask_speedup")
    diff = next(
        (
            d["ours_minus_haystack"]
            for d in r.get("quality_differences") or []
            if d["column"] == "same_runtime" and d["metric"] == "f1_squad2"
        ),
        None,
    )
    f1_ok = None if diff is None else diff["hi"] >= 0
    ingest = r.get("haystack_ingest_speedup")
    return [
        {
            "name": "Haystack / ours, hybrid search p50, same runtime (torch fp32)",
            "goal": ">= 3x on the full corpus",
            "measured": (times(search, 1) + quick) if search else "–",
            "ok": None if search is None or not full else search >= 3.0,
        },
        {
            "name": "Haystack / ours, /ask p50, same runtime, at equal or better F1",
            "goal": ">= 1.2x, and ours - Haystack SQuAD 2.0 F1 not below 0 (its 95% interval reaches 0 or above)",
            "measured": (
                f"{times(ask, 2)}; F1 ours - Haystack {interval(diff, 100, signed=True)}" + quick if ask else "–"
            ),
            "ok": None if ask is None or f1_ok is None or not full else ask >= 1.2 and f1_ok,
        },
        {
            "name": "Haystack / ours, ingest time, as each is deployed",
            "goal": ">= 1x (at least as fast)",
            "measured": times(ingest, 1) if ingest else "–",
            "ok": None if ingest is None else ingest >= 1.0,
        },
    ]


def interval(x: dict | None, scale: float = 1.0, digits: int = 1, signed: bool = False) -> str:
    """``value [lo, hi]`` of an Interval record (scaled, e.g. F1 x 100)."""
    if not x:
        return "–"
    sign = "+" if signed else ""
    v, lo, hi = (x[k] * scale for k in ("value", "lo", "hi"))
    return f"{v:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


# ------------------------------------------------------------------------------------------------ tables


def header(r: dict) -> Table:
    env = r["environment"]
    v = env["versions"]
    t = Table("Machine and versions", ["", ""])
    rows = [
        ("date", env["date"]),
        ("commit", env.get("commit", "unknown")),
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
    peer = next((p for p in peer_columns(r).values() if p.get("versions")), {})
    if peer:
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
        out.append(quality_table(r))
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


COLUMN_LABELS = {"same_runtime": "same runtime", "default": "as deployed"}
COLUMNS = {
    "same_runtime": "both sides torch fp32, the same weights, chunks, BM25 parameters and fields, depth,"
    " k and read_k, the no-answer threshold fitted by the same rule: what the framework itself costs",
    "default": "ours as shipped (int8 ONNX, its calibrated no-answer rule) against Haystack as its"
    " documentation sets it up for CPU (its components' defaults, torch fp32): what a user of each gets",
}
STILL_DIFFERENT = (
    "Still different in the same-runtime column, because Haystack has no setting for it: its BM25 neither stems nor"
    " drops stop words (ours: English stemmer, stop words out); its RRF k is 61 (ours 5; the weights are ours,"
    " dense 0.5 : BM25 1.0); its reader has no answer-length cap (ours 30 tokens) and reads each chunk with its"
    " title line (ours the chunk alone); its no-answer rule thresholds the top answer's score (ours a calibrated"
    " decider over answer features, fitted on all 1,259 held-out questions in A, 400 in B, with int8 reader"
    " outputs, not refitted on torch); our side searches a torch-built copy of the index."
)
DEFAULTS = (
    "Haystack as deployed: DocumentSplitter() (word, 200, no overlap), SentenceTransformers embedders at their"
    " defaults, InMemoryDocumentStore() (BM25L k1 1.5, b 0.75, delta 0.5), retrievers at top_k 10, DocumentJoiner"
    " with reciprocal rank fusion (its default, concatenate, does not rank) keeping 10 passages for search and 3 for"
    " the reader, ExtractiveReader() (384-token windows, stride 128, its no-answer entry). Our models on both sides:"
    " the documented default models would be downloaded, which this machine cannot do."
)


def peer_columns(r: dict) -> dict[str, dict]:
    """The peer's results by setup (an older bench.json held one result: read as the as-deployed column)."""
    peer = r.get("peer") or {}
    if "status" in peer:
        return {"default": peer}
    return peer


def peer_table(r: dict) -> Table:
    cols = peer_columns(r)
    t = Table(
        "Haystack 2.x peer, two columns (same corpus, same questions, in-process calls, Haystack / ours > 1: we are"
        " faster)",
        [
            "figure",
            "same runtime: ours",
            "Haystack",
            "Haystack / ours",
            "as deployed: ours",
            "Haystack",
            "Haystack / ours",
        ],
    )
    if not any(p.get("status") == "ok" for p in cols.values()):
        t.notes += [f"peer ({name}) {p.get('status')}: {p.get('note')}" for name, p in cols.items()]
        return t
    lat = {(x["endpoint"], x["where"]): x["latency"] for x in r.get("latency") or []}
    ours_where = {"same_runtime": "in-process, torch fp32", "default": "in-process"}

    def cells(name: str, endpoint: str, key: str, stat: str) -> list[str]:
        ours, theirs = lat.get((endpoint, ours_where[name])), (cols.get(name) or {}).get(key)
        if not ours or not theirs:
            return ["–", "–", "–"]
        speed = r.get(f"haystack_{name}_{key}_speedup") if stat == "p50" else None
        return [
            num(ours[stat]),
            num(theirs[stat]),
            times(speed or (theirs[stat] / ours[stat] if ours[stat] else None)),
        ]

    for endpoint, key in (("/search", "search"), ("/ask", "ask")):
        for stat in ("p50", "p95"):
            t.rows.append(
                [
                    f"{endpoint} {stat} ms",
                    *cells("same_runtime", endpoint, key, stat),
                    *cells("default", endpoint, key, stat),
                ]
            )
    same, default = cols.get("same_runtime") or {}, cols.get("default") or {}
    squad = next((i for i in r.get("ingest") or [] if i["corpus"] == r.get("serve_corpus", "squad")), None)
    ours_torch = r.get("ours_same_runtime") or {}
    t.rows.append(
        [
            "ingest s",
            num(ours_torch.get("ingest_seconds"), 1),
            num(same.get("ingest_seconds"), 1),
            "",
            num(squad["seconds"], 1) if squad else "–",
            num(default.get("ingest_seconds"), 1),
            times(r.get("haystack_ingest_speedup")),
        ]
    )
    t.rows.append(
        [
            "chunks",
            num(squad["chunks"]) if squad else "–",
            num(same.get("ingest_chunks") or None),
            "",
            num(squad["chunks"]) if squad else "–",
            num(default.get("ingest_chunks") or None),
            "",
        ]
    )
    server = r.get("server") or {}
    t.rows.append(
        ["peak RSS MiB", "", "", "", num(server.get("rss_peak_mib"), 0), num(default.get("rss_peak_mib"), 0), ""]
    )
    t.notes += [f"{COLUMN_LABELS[name].capitalize()}: {text}." for name, text in COLUMNS.items()]
    if same.get("threshold") is not None:
        fit = same.get("threshold_fit") or {}
        t.notes.append(
            f"Haystack's no-answer threshold (same runtime): {same['threshold']:.4f} on its top answer's score,"
            f" chosen by {fit.get('rule', 'our rule')}; fitted on {fit.get('questions', '?')} (held-out training"
            f" articles, no validation question). There: SQuAD 2.0 F1 {num(fit.get('squad2_f1_mix'), 1)} over A and B,"
            f" {num(100 * fit.get('answerable_declined_covered', float('nan')), 1)}% of A's answerable declined,"
            f" {num(100 * fit.get('declined_not_covered', float('nan')), 1)}% of B declined."
        )
    t.notes += [STILL_DIFFERENT, DEFAULTS]
    t.notes.append(
        "Ingest, same runtime: ours chunks, embeds (torch fp32), builds BM25 + FAISS and saves to disk; Haystack embeds"
        " our chunks and fills its in-memory store (no split, nothing saved), so no ratio is given. Peak RSS: ours"
        " over HTTP (rag serve), Haystack's process after its queries."
    )
    reader = default.get("reader") or same.get("reader")
    if reader:
        t.notes.append(f"Haystack's ExtractiveReader in both columns: {reader}.")
    for name, p in cols.items():
        if p.get("status") != "ok":
            t.notes.append(f"peer ({name}) {p.get('status')}: {p.get('note')}")
    return t


def quality_table(r: dict) -> Table:
    rows = r["quality"]
    n = max((q.get("questions") or 0 for q in rows), default=0)
    t = Table(
        f"Quality on the same {n:,} SQuAD 2.0 validation questions (95% bootstrap intervals)",
        ["column", "system", "recall@5", "F1 SQuAD 2.0", "F1 answerable (n)", "answered", "no-answer rule"],
    )
    label = COLUMN_LABELS
    for q in sorted(rows, key=lambda q: q.get("column") != "same_runtime"):
        if "column" not in q:  # an older bench.json
            continue
        ans = q.get("f1_answerable")
        t.rows.append(
            [
                label.get(q["column"], q["column"]),
                q["system"],
                interval(q["recall_at_5"], 1, 3),
                interval(q["f1_squad2"], 100),
                interval(ans, 100) + (f" ({ans['n']})" if ans else ""),
                num(q["answered"], 2),
                q.get("no_answer", "") + (f"; {q['note']}" if q.get("note") else ""),
            ]
        )
    for d in r.get("quality_differences") or []:
        scale, digits = (1, 3) if d["metric"] == "recall_at_5" else (100, 1)
        t.rows.append(
            [
                label.get(d["column"], d["column"]),
                f"ours - Haystack, {d['metric'].replace('_', ' ')}",
                interval(d["ours_minus_haystack"], scale, digits, signed=True) if d["metric"] == "recall_at_5" else "",
                interval(d["ours_minus_haystack"], scale, digits, signed=True) if d["metric"] == "f1_squad2" else "",
                interval(d["ours_minus_haystack"], scale, digits, signed=True)
                if d["metric"] == "f1_answerable"
                else "",
                "",
                "paired bootstrap over the same questions",
            ]
        )
    t.notes += [
        "Every question once through search (recall@5: the gold paragraph among the first 5 passages) and once through"
        " /ask (F1 of the top answer; an abstention is an empty answer, right on an unanswerable question). F1 x 100.",
        "Intervals: percentile bootstrap over the questions, 2,000 resamples, fixed seed; differences resample the"
        " same questions for both sides. Answerable-only F1 resamples the answerable questions.",
        "As deployed: ours on int8 ONNX; Haystack's reader also runs our trained weights (torch fp32).",
    ]
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
