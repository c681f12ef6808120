"""Write a scored run out: ``summary.json`` (the numbers from ``summary``), ``results.jsonl``, ``report.png``
(``plots``), a terminal table, and the ``eval/results/README.md`` table that collects the headline numbers of
every run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rag.evaluation.plots import plot_report
from rag.evaluation.results import EvalRun, QuestionResult
from rag.evaluation.summary import HIT_KS, finite, summarize

README_NAME = "README.md"


# ---------------------------------------------------------------------------------------------- files


def result_record(r: QuestionResult) -> dict[str, Any]:
    """One line of ``results.jsonl``."""
    record: dict[str, Any] = {"id": r.item.id, "question": r.item.question}
    if r.item.rule == "relevance":
        record |= {
            "relevant": dict(r.item.relevance),
            "ranked": list(r.ranked_documents[:10]),
            "rank": r.rank,
            "ndcg@10": r.ndcg10,
            "recall@100": r.recall100,
        }
    else:
        record |= {
            "answerable": r.item.answerable,
            "gold_answers": list(r.item.answer_texts),
            "gold_document": r.item.document_id,
            "prediction": r.prediction,
            "score": r.score,
            "no_answer": r.no_answer,
            "candidate_score": r.candidate_score,
            "candidate_right": r.candidate_right,
            "em": r.em,
            "f1": r.f1,
            "rank": r.rank,
            "citations_ok": list(r.citations_ok),
            "top_document_gold": r.top_document_gold,
            "cites_gold_passage": r.cites_gold_passage,
        }
    record |= {"latency_ms": round(r.latency_ms, 2), "timings_ms": dict(r.timings_ms), "error": r.error}
    return finite(record)


def write_run(run: EvalRun, out_dir: str | Path, name: str | None = None) -> dict[str, Any]:
    """Write summary.json, results.jsonl and report.png into ``out_dir``; returns the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(run)
    summary["name"] = name or out.name
    summary = finite(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (out / "results.jsonl").open("w", encoding="utf-8") as fh:
        for r in run.results:
            fh.write(json.dumps(result_record(r), ensure_ascii=False) + "\n")
    plot_report(summary, run.results, out / "report.png")
    return summary


# ---------------------------------------------------------------------------------------------- terminal


def _fmt(value: Any, pct: bool = True, missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    if isinstance(value, float):
        return f"{100 * value:.1f}" if pct else f"{value:.1f}"
    return str(value)


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """The headline numbers as a rich table (percentages unless a unit is given)."""
    table = Table(title=f"{summary['name']} ({summary['n']} questions)", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    ret = summary["retrieval"]
    rows: list[tuple[str, str]] = [(f"hit@{k} (%)", _fmt(ret[f"hit@{k}"])) for k in HIT_KS]
    rows.append(("MRR@10 (%)", _fmt(ret["mrr@10"])))
    if summary["kind"] == "retrieval":
        rows += [("nDCG@10 (%)", _fmt(ret["ndcg@10"])), ("recall@100 (%)", _fmt(ret["recall@100"]))]
    else:
        a, ab, c, cal = summary["answers"], summary["abstention"], summary["citations"], summary["calibration"]
        rows += [
            ("HasAns EM (%)", _fmt(a["has_ans_em"])),
            ("HasAns F1 (%)", _fmt(a["has_ans_f1"])),
            ("NoAns accuracy (%)", _fmt(ab["no_ans_accuracy"])),
            ("false abstention (%)", _fmt(ab["false_abstention_rate"])),
            ("overall EM (%)", _fmt(ab["overall_em"])),
            ("overall F1 (%)", _fmt(ab["overall_f1"])),
            (escape("citation contract: text == document[start:end] (%)"), _fmt(c["contract_accuracy"])),
            ("right answers citing the gold passage (%)", _fmt(c["passage_accuracy"], missing="n/a")),
            ("top answer cites the gold document (%)", _fmt(c["document_accuracy"])),
            ("calibration ECE (%)", _fmt(cal["ece"])),
            ("score AUC (%)", _fmt(cal["auc"])),
        ]
        sel = summary.get("selective")
        if sel:
            rows += [
                ("selective: AUROC right vs rest (%)", _fmt(sel["auroc"])),
                ("selective: coverage at 80% right (%)", _fmt(sel["coverage_at_80"])),
                ("selective: coverage at 90% right (%)", _fmt(sel["coverage_at_90"])),
                ("selective: area under risk-coverage (%)", _fmt(sel["aurc"])),
            ]
    lat = summary["latency"]
    qps = lat["throughput_qps"]
    rows += [
        ("latency p50 (ms)", _fmt(lat["p50_ms"], pct=False)),
        ("latency p95 (ms)", _fmt(lat["p95_ms"], pct=False)),
        ("latency p99 (ms)", _fmt(lat["p99_ms"], pct=False)),
        ("throughput (q/s)", f"{qps:.2f}" if isinstance(qps, float) and math.isfinite(qps) else _fmt(qps)),
    ]
    for label, value in rows:
        table.add_row(label, value)
    if summary["errors"]:
        table.add_row("[red]failed questions[/red]", str(summary["errors"]))
    console.print(table)


# ---------------------------------------------------------------------------------------------- README table

_COLUMNS = (
    "run", "dataset", "reader", "n", "hit@1", "hit@5", "MRR@10", "nDCG@10", "R@100", "HasAns EM", "HasAns F1",
    "NoAns acc", "overall F1", "cite contract", "cite passage", "cite doc", "p50 ms", "p95 ms",
)  # fmt: skip


def _row(folder: Path, s: dict[str, Any]) -> list[str]:
    ret, lat = s.get("retrieval", {}), s.get("latency", {})
    a, ab, c = s.get("answers", {}), s.get("abstention", {}), s.get("citations", {})
    qa = s.get("kind") == "qa"
    return [
        f"[{folder.name}]({folder.name}/summary.json)",
        s.get("dataset", "?"),
        s.get("reader") or "– (search)",
        str(s.get("n", "?")),
        _fmt(ret.get("hit@1")),
        _fmt(ret.get("hit@5")),
        _fmt(ret.get("mrr@10")),
        _fmt(ret.get("ndcg@10")),
        _fmt(ret.get("recall@100")),
        _fmt(a.get("has_ans_em")) if qa else "–",
        _fmt(a.get("has_ans_f1")) if qa else "–",
        _fmt(ab.get("no_ans_accuracy")) if qa else "–",
        _fmt(ab.get("overall_f1")) if qa else "–",
        _fmt(c.get("contract_accuracy", c.get("offset_accuracy"))) if qa else "–",  # offset_accuracy: older runs
        _fmt(c.get("passage_accuracy"), missing="n/a" if "passage_accuracy" in c else "–") if qa else "–",
        _fmt(c.get("document_accuracy")) if qa else "–",
        _fmt(lat.get("p50_ms"), pct=False),
        _fmt(lat.get("p95_ms"), pct=False),
    ]


_TRUST_COLUMNS = (
    "run", "answerable F1", "answerable declined", "adversarial declined", "near miss declined",
    "not covered declined", "right among given", "AUROC", "cov@80", "cov@90", "AURC",
)  # fmt: skip


def _trust_row(folder: Path, s: dict[str, Any]) -> list[str]:
    kinds, sel = s["kinds"], s["selective_mix"]

    def declined(kind: str) -> str:
        return _fmt(kinds[kind]["declined"]) if kind in kinds else "–"

    return [
        f"[{folder.name}]({folder.name}/summary.json)",
        _fmt(kinds.get("answerable", {}).get("f1"), pct=False),
        declined("answerable"),
        declined("unanswerable"),
        declined("near_miss"),
        declined("not_covered"),
        _fmt(s.get("given_precision_mix")),
        f"{sel['auroc']:.3f}" if sel.get("auroc") is not None else "–",
        _fmt(sel.get("coverage_at_80")),
        _fmt(sel.get("coverage_at_90")),
        f"{sel['aurc']:.3f}" if sel.get("aurc") is not None else "–",
    ]


def write_results_table(results_dir: str | Path = "eval/results") -> Path:
    """(Re)write ``results_dir/README.md``: one row per ``*/summary.json`` found under ``results_dir``."""
    root = Path(results_dir)
    root.mkdir(parents=True, exist_ok=True)
    rows, trust_rows = [], []
    for path in sorted(root.glob("*/summary.json")):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            if "kinds" in summary:  # a trust benchmark (rag trust), tabled on its own
                trust_rows.append(_trust_row(path.parent, summary))
            else:
                rows.append(_row(path.parent, summary))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            rows.append([f"{path.parent.name}", f"unreadable summary: {exc}"] + ["–"] * (len(_COLUMNS) - 2))
    lines = [
        "# Evaluation results",
        "",
        "Written by `make eval` (`eval/run_all.sh`) from every `*/summary.json` here; rerun it rather than",
        "editing by hand. Percentages, except latency (client-measured ms). SQuAD rows use the fixed validation",
        "split; HasAns = answerable questions, NoAns acc = unanswerable ones correctly declined, overall F1 =",
        "SQuAD 2.0 style over both. cite contract = answers whose text == document[start:end] of the cited",
        "document (a contract check: the service slices answers from the document it cites, so below 100 is a",
        "bug); cite passage = right answers (F1 >= 0.5) whose citation lies inside the gold passage (SQuAD: the",
        "question's paragraph; n/a where the gold set records no passage, as our JSONL does); cite doc = top",
        "answers citing the gold document. SciFact (BEIR) rows are retrieval-only.",
        "",
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "|".join("---" if i < 3 else "---:" for i in range(len(_COLUMNS))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if not rows:
        lines.append("| " + " | ".join(["(no runs yet)"] + [""] * (len(_COLUMNS) - 1)) + " |")
    if trust_rows:
        lines += [
            "",
            "## Trust benchmark (`rag trust`)",
            "",
            "Held-out SQuAD 2.0 *training* articles (never the validation ones), each scored by a calibration fitted",
            "on the other held-out articles (cross-fit). Declined: share of each kind of question the service",
            "declines at its threshold; the selective figures are on the mix of 2 answerable questions for 1",
            "unanswerable (adversarial, near miss, not covered equally): AUROC of the top answer being right",
            "against everything else, coverage at 80% / 90% of answers right, area under the risk-coverage curve.",
            "",
            "| " + " | ".join(_TRUST_COLUMNS) + " |",
            "|" + "|".join("---" if i < 1 else "---:" for i in range(len(_TRUST_COLUMNS))) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in trust_rows]
    path = root / README_NAME
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
