"""The README's result tables, written from the results files they cite (never typed by hand).

Each table sits between ``<!-- table: NAME ... -->`` and ``<!-- /table -->`` in README.md; this script renders
NAME from ``eval/results`` and replaces the block. ``make eval`` runs it after the evaluation; ``--check``
(run by the test suite) exits 1, naming the tables, when the README differs from what the results files say.

    .venv/bin/python eval/readme_tables.py [--check] [--readme README.md] [--results eval/results]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from rag.evaluation.report import _COLUMNS, _row

#: The evaluation runs the README shows, in its order, with the label it gives each.
EVAL_RUNS = (
    ("squad-validation-trained", "SQuAD 2.0 validation"),
    ("squad-validation-heuristic", "SQuAD 2.0 validation"),
    ("seed-trained", "seed gold set (development)"),
    ("seed-heuristic", "seed gold set (development)"),
    ("offtopic-trained", "off-topic (40)"),
    ("offtopic-heuristic", "off-topic (40)"),
    ("scifact-test", "SciFact test (search)"),
)
EVAL_COLUMNS = (
    "reader",
    "n",
    "hit@1",
    "hit@5",
    "MRR@10",
    "nDCG@10",
    "R@100",
    "HasAns EM",
    "HasAns F1",
    "NoAns acc",
    "overall F1",
    "cite passage",
    "cite doc",
    "p50 ms",
)
KIND_LABELS = (
    ("answerable", "answerable"),
    ("unanswerable", "adversarial unanswerable"),
    ("near_miss", "near miss"),
    ("not_covered", "not covered"),
)
#: The min_score rows of the operating table (and the shipped threshold, marked as the default).
OPERATING_POINTS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.6)
RUNTIMES = (("torch", "torch fp32"), ("onnx", "ONNX Runtime fp32"), ("onnx-int8", "ONNX Runtime int8 (default)"))
_BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+)[^>]*-->\n)(?P<body>.*?)(<!-- /table -->)", re.DOTALL)


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def eval_table(results: Path) -> str:
    rows = []
    for run, label in EVAL_RUNS:
        summary = json.loads((results / run / "summary.json").read_text())
        cells = dict(zip(_COLUMNS, _row(results / run, summary), strict=True))
        rows.append(
            [label, *(cells[c] if c != "reader" else cells[c].replace("– (search)", "–") for c in EVAL_COLUMNS)]
        )
    return _table(["run", *EVAL_COLUMNS], rows, left=2)


def _trust(results: Path) -> dict:
    return json.loads((results / "trust-trained" / "summary.json").read_text())


def trust_kinds_table(results: Path) -> str:
    s = _trust(results)
    rows = []
    for kind, label in KIND_LABELS:
        k = s["kinds"][kind]
        f1 = f"{k['f1']:.1f}" if "f1" in k else ""
        right = _pct(k["right_among_given"]) if "right_among_given" in k else ""
        rows.append([label, str(k["questions"]), _pct(k["declined"]), f1, right])
    rows.append(["all, on the 2:1 mix", "", "", "", f"**{_pct(s['given_precision_mix'])}**"])
    return _table(["kind", "questions", "declined", "answerable F1", "right among answers given"], rows)


def trust_operating_table(results: Path) -> str:
    s = _trust(results)
    by_threshold = {round(p["threshold"], 3): p for p in s["operating_curve"]}
    shipped = round(s["shipped_threshold"], 3)
    rows = []
    for t in sorted({*OPERATING_POINTS, shipped}):
        p = by_threshold[round(t, 3)]
        rows.append(
            [
                f"**{t:g}** (default)" if t == shipped else f"{t:g}",
                _pct(p["declined_answerable"]),
                f"{p['answerable_f1']:.1f}",
                _pct(p["declined_unanswerable"]),
                _pct(p["declined_near_miss"]),
                _pct(p["declined_not_covered"]),
                _pct(p["precision_mix"]),
            ]
        )
    header = [
        "min_score",
        "answerable declined",
        "answerable F1",
        "adversarial declined",
        "near miss declined",
        "not covered declined",
        "right among given (mix)",
    ]
    return _table(header, rows)


def reader_gold_table(results: Path) -> str:
    runtimes = json.loads((results / "reader-gold.json").read_text())["runtimes"]
    rows = []
    for key, label in RUNTIMES:
        r = runtimes[key]
        rows.append(
            [
                label,
                f"{r['has_answer_em_forced']:.1f}",
                f"{r['has_answer_f1_forced']:.2f}",
                f"{r['null_margin_auc']:.3f}",
                f"{r['ms_per_question']:.1f}",
            ]
        )
    return _table(["runtime", "HasAns EM", "HasAns F1", "null AUC", "ms per question"], rows)


def bench_targets_table(results: Path) -> str:
    targets = json.loads((results / "bench.json").read_text())["targets"]
    rows = [[t["name"], t["goal"], t["measured"], "yes" if t["ok"] else "**no**"] for t in targets]
    return _table(["target", "goal", "measured", "met"], rows)


def _bench(results: Path) -> dict:
    return json.loads((results / "bench.json").read_text())


def _ms(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"


def bench_latency_table(results: Path) -> str:
    """Query latency per endpoint and place (in-process, over HTTP), against the floor."""
    rows = []
    for x in _bench(results)["latency"]:
        if x["where"] not in ("in-process", "http"):
            continue  # the torch rows belong to the Haystack comparison
        floor = x.get("floor") or {}
        stages = ", ".join(f"{k} {v:.1f}" for k, v in (x.get("stages") or {}).items() if k != "total")
        rows.append(
            [
                x["endpoint"],
                x["where"],
                _ms(x["latency"]["p50"]),
                _ms(x["latency"]["p95"]),
                _ms(floor.get("p50")),
                f"{x['floor_ratio']:.2f}x" if x.get("floor_ratio") else "–",
                stages,
            ]
        )
    return _table(["endpoint", "where", "p50", "p95", "floor p50", "p50 / floor", "stages p50 (service)"], rows, 2)


def bench_throughput_table(results: Path) -> str:
    """Requests a second over HTTP per endpoint and concurrency, with errors; the server's start-up and memory."""
    r = _bench(results)
    rows = [
        [x["endpoint"], str(x["concurrency"]), f"{x['rps']:.1f}", _ms(x["p50"]), _ms(x["p95"]), str(x["errors"])]
        for x in r["throughput"]
    ]
    server = r.get("server") or {}
    rows.append(
        [
            "(server)",
            "",
            f"ready in {server.get('startup_s', float('nan')):.1f} s",
            f"RSS ready {_ms(server.get('rss_ready_mib'), 0)} MiB",
            f"peak {_ms(server.get('rss_peak_mib'), 0)} MiB",
            "",
        ]
    )
    return _table(["endpoint", "concurrency", "requests/s", "p50 ms", "p95 ms", "errors"], rows)


def bench_haystack_table(results: Path) -> str:
    """Speed against Haystack in two columns (same runtime, as deployed)."""
    r = _bench(results)
    peer = r.get("peer") or {}
    same, default = peer.get("same_runtime") or {}, peer.get("default") or {}
    lat = {(x["endpoint"], x["where"]): x["latency"] for x in r["latency"]}

    def ratio(v: float | None) -> str:
        return "" if v is None else f"{v:.2f}x"

    rows = []
    for endpoint, key in (("/search", "search"), ("/ask", "ask")):
        ours_same, ours_default = lat.get((endpoint, "in-process, torch fp32")), lat.get((endpoint, "in-process"))
        rows.append(
            [
                f"{endpoint} p50 ms",
                _ms(ours_same and ours_same["p50"]),
                _ms((same.get(key) or {}).get("p50")),
                ratio(r.get(f"haystack_same_runtime_{key}_speedup")),
                _ms(ours_default and ours_default["p50"]),
                _ms((default.get(key) or {}).get("p50")),
                ratio(r.get(f"haystack_default_{key}_speedup")),
            ]
        )
    squad = next((i for i in r.get("ingest") or [] if i["corpus"] == r.get("serve_corpus", "squad")), None)
    rows.append(
        [
            f"ingest s ({r.get('serve_corpus', 'squad')})",
            _ms((r.get("ours_same_runtime") or {}).get("ingest_seconds")),
            _ms(same.get("ingest_seconds")),
            "",
            _ms(squad and squad["seconds"]),
            _ms(default.get("ingest_seconds")),
            ratio(r.get("haystack_ingest_speedup")),
        ]
    )
    rows.append(
        [
            "peak RSS MiB (not like for like: ours serves a built index, Haystack's process also embedded the corpus)",
            "",
            "",
            "",
            _ms((r.get("server") or {}).get("rss_peak_mib"), 0),
            _ms(default.get("rss_peak_mib"), 0),
            "no ratio",
        ]
    )
    header = ["figure", "same runtime: ours", "Haystack", "Haystack / ours", "as deployed: ours", "Haystack"]
    return _table([*header, "Haystack / ours"], rows)


def bench_quality_table(results: Path) -> str:
    """Retrieval and answer quality of both systems on the benchmark's questions, and the paired differences."""
    r = _bench(results)
    columns = {"same_runtime": "same runtime", "default": "as deployed"}

    def iv(x: dict | None, scale: float, digits: int, signed: bool = False) -> str:
        if not x:
            return ""
        sign = "+" if signed else ""
        v, lo, hi = (x[k] * scale for k in ("value", "lo", "hi"))
        text = f"{v:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"
        return f"**{text}**" if signed and lo > 0 else text

    rows = []
    for column in columns:
        for q in (q for q in r.get("quality") or [] if q.get("column") == column):
            ans = q.get("f1_answerable")
            rows.append(
                [
                    columns[column],
                    q["system"],
                    iv(q["recall_at_5"], 1, 3),
                    iv(q["f1_squad2"], 100, 1),
                    iv(ans, 100, 1),
                ]
            )
        diffs = {
            d["metric"]: d["ours_minus_haystack"] for d in r.get("quality_differences") or [] if d["column"] == column
        }
        if diffs:
            rows.append(
                [
                    columns[column],
                    "ours - Haystack",
                    iv(diffs.get("recall_at_5"), 1, 3, True),
                    iv(diffs.get("f1_squad2"), 100, 1, True),
                    iv(diffs.get("f1_answerable"), 100, 1, True),
                ]
            )
    n = max((q.get("f1_answerable") or {}).get("n", 0) for q in r.get("quality") or [{}])
    return _table(["column", "system", "recall@5", "SQuAD 2.0 F1", f"answerable F1 ({n})"], rows, 2)


def feedback_curve_table(results: Path) -> str:
    """The learning curve of adaptation from feedback (eval/feedback_curve.py) on the held-out Reddit posts."""
    result = json.loads((results / "feedback-curve" / "summary.json").read_text())
    rows = []
    for p in result["points"]:
        t = p["test"]
        vs = t.get("f1_vs_shipped")
        rows.append(
            [
                str(p["annotated"]),
                p["reader"],
                f"{t['f1']} [{t['f1_interval'][0]}, {t['f1_interval'][1]}]",
                str(t["em"]),
                str(t["forced_f1"]),
                f"{t['answered']}%",
                "–" if t["right_among_given"] is None else f"{t['right_among_given']}%",
                "" if vs is None else f"{vs[0]:+.1f} [{vs[1]:+.1f}, {vs[2]:+.1f}]",
                p.get("trained_on", ""),
                "" if p.get("training_seconds") is None else f"{p['training_seconds']:.0f}",
            ]
        )
    header = ["annotated", "reader", "F1 [95%]", "EM", "F1 forced", "answered", "right among given"]
    return _table([*header, "F1 vs shipped [95%]", "trained on (annotated + replayed)", "training s"], rows)


def bench_writes_table(results: Path) -> str:
    """The index's write path (writes.json: synthetic), a search under writes over HTTP, and two writers."""
    sizes = json.loads((results / "writes.json").read_text())
    under = json.loads((results / "search_under_writes.json").read_text())
    two = json.loads((results / "two_writers.json").read_text())
    largest = sizes[-1]

    def per_size(key: str) -> str:
        return " / ".join(f"{w[key + '_p50_ms']:.1f} ({w[key + '_max_ms']:.1f})" for w in sizes) + " ms"

    def yes(ok: bool) -> str:
        return "yes" if ok else "**no**"

    counts = " / ".join(f"{w['chunks']:,}" for w in sizes)
    adds_ok = all(w["add_p50_ms"] <= 50 for w in sizes)
    total = 2 * two["documents_per_writer"]
    listed = two.get("documents_listed_by_workers") or []
    rows = [
        [
            f"add one 10-chunk document, excluding embedding: p50 (max) at {counts} chunks",
            per_size("add"),
            "p50 <= 50 ms",
            yes(adds_ok),
        ],
        ["replace one document of the large segment: p50 (max), same sizes", per_size("replace"), "", ""],
        ["delete one document of the large segment: p50 (max), same sizes", per_size("delete"), "", ""],
        [
            "search p50 before / after 10 deletes (tombstones), same sizes",
            ", ".join(
                f"{w['search_p50_before_deletes_ms']:.2f} / {w['search_p50_after_deletes_ms']:.2f}" for w in sizes
            )
            + " ms",
            "",
            "",
        ],
        [
            f"a background merge of 10 small segments, at {largest['chunks']:,}",
            f"{largest['merge_max_ms']:.0f} ms",
            "",
            "",
        ],
        [
            f"load a {largest['chunks']:,}-chunk index in a new process (start to loaded)",
            f"{largest['load_s']:.1f} s",
            "<= 10 s",
            yes(largest["load_s"] <= 10),
        ],
        [
            f"`/search` p99 over HTTP while a client adds a document every second, against idle ({under['index']}, "
            f"{under['chunks']:,} chunks, 1 worker)",
            f"{under['writing']['p99_ms']:.1f} against {under['idle']['p99_ms']:.1f} ms: {under['p99_ratio']:.2f}x",
            "<= 1.5x",
            yes(under["p99_ratio"] <= 1.5),
        ],
        [
            "the same in-process, the writer a thread of the searching process (synthetic, same sizes)",
            " / ".join(f"{w['p99_ratio']:.2f}x" for w in sizes),
            "",
            "",
        ],
        [
            f"`rag serve --workers 2` taking {two['documents_per_writer']} one-document POSTs while `rag ingest` adds "
            f"{two['documents_per_writer']} files",
            f"{two['present']:,} of {total:,} present, {two['missing']} missing; the workers list "
            + " and ".join(f"{n:,}" for n in listed),
            "all present",
            yes(two["present"] == total and two["missing"] == 0),
        ],
    ]
    return _table(["figure", "measured", "target", "met"], rows)


TABLES: dict[str, Callable[[Path], str]] = {
    "bench-writes": bench_writes_table,
    "feedback-curve": feedback_curve_table,
    "bench-targets": bench_targets_table,
    "bench-latency": bench_latency_table,
    "bench-throughput": bench_throughput_table,
    "bench-haystack": bench_haystack_table,
    "bench-quality": bench_quality_table,
    "eval": eval_table,
    "trust-kinds": trust_kinds_table,
    "trust-operating": trust_operating_table,
    "reader-gold": reader_gold_table,
}


def render(readme: str, results: Path) -> tuple[str, list[str]]:
    """The README with every table block re-rendered, and the names of the blocks that changed."""
    changed: list[str] = []

    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in TABLES:
            raise SystemExit(f"README.md names a table this script does not know: {name}")
        body = TABLES[name](results)
        if body != m.group("body"):
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(replace, readme), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--results", type=Path, default=Path("eval/results"))
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table differs")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    new, changed = render(text, args.results)
    if args.check:
        if changed:
            print(f"{args.readme}: these tables differ from the results files: {', '.join(changed)}", file=sys.stderr)
            print("run: .venv/bin/python eval/readme_tables.py", file=sys.stderr)
            return 1
        return 0
    args.readme.write_text(new, encoding="utf-8")
    print(f"{args.readme}: rewrote {', '.join(changed) or 'nothing (already current)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
