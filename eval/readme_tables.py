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

# The benchmark's tables and the shared cell format are modules of their own beside this script.
from readme_bench_tables import (
    bench_haystack_table,
    bench_latency_table,
    bench_quality_table,
    bench_targets_table,
    bench_throughput_table,
    bench_writes_table,
)
from readme_format import pct, table

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


def eval_table(results: Path) -> str:
    rows = []
    for run, label in EVAL_RUNS:
        summary = json.loads((results / run / "summary.json").read_text())
        cells = dict(zip(_COLUMNS, _row(results / run, summary), strict=True))
        rows.append(
            [label, *(cells[c] if c != "reader" else cells[c].replace("– (search)", "–") for c in EVAL_COLUMNS)]
        )
    return table(["run", *EVAL_COLUMNS], rows, left=2)


def _trust(results: Path) -> dict:
    return json.loads((results / "trust-trained" / "summary.json").read_text())


def trust_kinds_table(results: Path) -> str:
    s = _trust(results)
    rows = []
    for kind, label in KIND_LABELS:
        k = s["kinds"][kind]
        f1 = f"{k['f1']:.1f}" if "f1" in k else ""
        right = pct(k["right_among_given"]) if "right_among_given" in k else ""
        rows.append([label, str(k["questions"]), pct(k["declined"]), f1, right])
    rows.append(["all, on the 2:1 mix", "", "", "", f"**{pct(s['given_precision_mix'])}**"])
    return table(["kind", "questions", "declined", "answerable F1", "right among answers given"], rows)


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
                pct(p["declined_answerable"]),
                f"{p['answerable_f1']:.1f}",
                pct(p["declined_unanswerable"]),
                pct(p["declined_near_miss"]),
                pct(p["declined_not_covered"]),
                pct(p["precision_mix"]),
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
    return table(header, rows)


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
    return table(["runtime", "HasAns EM", "HasAns F1", "null AUC", "ms per question"], rows)


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
    return table([*header, "F1 vs shipped [95%]", "trained on (annotated + replayed)", "training s"], rows)


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
