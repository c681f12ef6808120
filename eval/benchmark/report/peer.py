"""The Haystack 2.x peer's tables: its two columns (same runtime, as deployed) against ours, and answer quality on
the same questions with paired bootstrap intervals; the notes say what still differs between the sides."""

from __future__ import annotations

from benchmark.report.format import Table, interval, num, times

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
