"""Aggregate a scored run and write it out: ``summary.json``, ``results.jsonl``, ``report.png``, a terminal
table, and the ``eval/results/README.md`` table that collects the headline numbers of every run."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rag.evaluation.metrics import (
    hit_at,
    percentile,
    recall_at,
    reciprocal_rank,
    risk_coverage_curve,
    roc_auc,
    selective_figures,
)
from rag.evaluation.results import EvalRun, QuestionResult

HIT_KS = (1, 3, 5, 10)
CALIBRATION_BINS = 10
README_NAME = "README.md"

log = logging.getLogger(__name__)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


# ---------------------------------------------------------------------------------------------- summary


def retrieval_summary(results: Sequence[QuestionResult], kind: str) -> dict[str, Any]:
    """hit@k and MRR@10 over items that have a gold passage; BEIR adds nDCG@10, recall@100 and a recall
    curve for k = 1..100 (QA: the hit@k curve for k = 1..10)."""
    scored = [r for r in results if r.item.has_gold_passage]
    out: dict[str, Any] = {"n": len(scored)}
    for k in HIT_KS:
        out[f"hit@{k}"] = _mean(hit_at(r.rank, k) for r in scored)
    out["mrr@10"] = _mean(reciprocal_rank(r.rank, 10) for r in scored)
    if kind == "retrieval":
        out["ndcg@10"] = _mean(r.ndcg10 or 0.0 for r in scored)
        out["recall@100"] = _mean(r.recall100 or 0.0 for r in scored)
        out["recall_curve"] = [
            _mean(recall_at(r.ranked_documents, dict(r.item.relevance), k) for r in scored) for k in range(1, 101)
        ]
    else:
        out["recall_curve"] = [_mean(hit_at(r.rank, k) for r in scored) for k in range(1, 11)]
    return out


def calibration_table(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """Reliability of the top answer's score: per score bin, how often that answer is right; plus ECE and
    the AUC of the score as a right/wrong classifier."""
    scored = [r for r in results if r.score is not None]
    bins = []
    for b in range(CALIBRATION_BINS):
        lo, hi = b / CALIBRATION_BINS, (b + 1) / CALIBRATION_BINS
        members = [r for r in scored if min(int(r.score * CALIBRATION_BINS), CALIBRATION_BINS - 1) == b]  # type: ignore[operator]
        bins.append(
            {
                "lo": lo,
                "hi": hi,
                "count": len(members),
                "mean_score": _mean(r.score for r in members),  # type: ignore[misc]
                "accuracy": _mean(float(bool(r.correct)) for r in members),
            }
        )
    n = len(scored)
    ece = sum(b["count"] / n * abs(b["accuracy"] - b["mean_score"]) for b in bins if b["count"]) if n else math.nan
    return {
        "n": n,
        "bins": bins,
        "ece": ece,
        "auc": roc_auc([r.score for r in scored], [bool(r.correct) for r in scored]),  # type: ignore[misc]
    }


def latency_summary(results: Sequence[QuestionResult], wall_s: float) -> dict[str, Any]:
    ok = [r for r in results if r.error is None]
    latencies = [r.latency_ms for r in ok]
    keys = sorted({k for r in ok for k in r.timings_ms})
    return {
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": _mean(latencies),
        "wall_s": wall_s,
        "throughput_qps": len(ok) / wall_s if wall_s > 0 else math.nan,
        "server_timings_ms": {k: _mean(r.timings_ms[k] for r in ok if k in r.timings_ms) for k in keys},
    }


def summarize(run: EvalRun) -> dict[str, Any]:
    """Everything ``summary.json`` holds. Questions the service failed on are counted in ``errors`` and left
    out of every metric."""
    ok = [r for r in run.results if r.error is None]
    summary: dict[str, Any] = {
        "name": None,
        "dataset": run.gold.name,
        "format": run.gold.format,
        "kind": run.gold.kind,
        "gold": run.gold.source,
        "split": run.gold.split,
        "reader": run.reader if run.gold.kind == "qa" else None,
        "mode": run.mode,
        "url": run.url,
        "index": run.index,
        "concurrency": run.concurrency,
        "batch_size": run.batch_size,  # questions per request (> 1: POST /ask/batch; latencies are batch round trips)
        "top_k": run.top_k,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "n": len(run.results),
        "errors": len(run.results) - len(ok),
        "gold_issues": list(run.gold_issues),
        "retrieval": retrieval_summary(ok, run.gold.kind),
        "latency": latency_summary(run.results, run.wall_s),
    }
    if run.gold.kind == "qa":
        answerable = [r for r in ok if r.item.answerable]
        unanswerable = [r for r in ok if not r.item.answerable]
        answered = [r for r in answerable if not r.no_answer]
        given = [c for r in ok for c in r.citations_ok]
        tops = [r.top_document_gold for r in answerable if r.top_document_gold is not None]
        right = [r for r in answerable if r.correct]
        in_passage = [r.cites_gold_passage for r in right if r.cites_gold_passage is not None]
        summary["answers"] = {
            "n_answerable": len(answerable),
            "has_ans_em": _mean(r.em for r in answerable),
            "has_ans_f1": _mean(r.f1 for r in answerable),
            "n_answered": len(answered),
            "answered_em": _mean(r.em for r in answered),
            "answered_f1": _mean(r.f1 for r in answered),
        }
        summary["abstention"] = {
            "n_unanswerable": len(unanswerable),
            "no_ans_accuracy": _mean(float(r.no_answer) for r in unanswerable),
            "false_abstention_rate": _mean(float(r.no_answer) for r in answerable),
            "overall_em": _mean(r.em for r in ok),
            "overall_f1": _mean(r.f1 for r in ok),
        }
        # contract_accuracy cannot fail unless the service has a bug (it slices answers from the document it
        # cites); passage_accuracy can: a right answer whose citation lies outside the gold passage (null: the
        # gold set records no gold passage, or nothing was answered right).
        summary["citations"] = {
            "n_answers": len(given),
            "contract_accuracy": _mean(float(c) for c in given),
            "n_right_answers": len(right),
            "n_right_with_gold_passage": len(in_passage),
            "passage_accuracy": _mean(float(c) for c in in_passage),
            "n_top_answers": len(tops),
            "document_accuracy": _mean(float(t) for t in tops),
        }
        summary["calibration"] = calibration_table(ok)
        summary["selective"] = selective_summary(ok)
    return summary


def selective_summary(results: Sequence[QuestionResult]) -> dict[str, Any]:
    """The selective-QA figures (rag.evaluation.metrics.selective_figures) of the top candidate of every
    question, given or not (the service lists what it declined as possible answers): a question with no candidate
    counts as scored 0 and not right. ``answered_below_*``: how the service's own threshold compares."""
    scores = [r.candidate_score if r.candidate_score is not None else 0.0 for r in results]
    right = [bool(r.candidate_right) for r in results]
    figures: dict[str, Any] = dict(selective_figures(scores, right))
    answered = [r for r in results if not r.no_answer]
    figures["coverage"] = len(answered) / len(results) if results else math.nan
    figures["precision"] = _mean(float(bool(r.correct)) for r in answered)
    figures["curve"] = [
        {"coverage": round(c, 4), "risk": round(risk, 4), "threshold": round(t, 4)}
        for c, risk, t in risk_coverage_curve(scores, right)
    ]
    return figures


def finite(value: Any) -> Any:
    """JSON has no NaN: undefined metrics (no questions of that kind) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


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


def plot_report(summary: dict[str, Any], results: Sequence[QuestionResult], path: Path) -> None:
    """Recall@k curve, latency histogram and (QA) the risk-coverage curve, written with the Agg backend; skipped
    with a note when matplotlib (the eval extra) is not installed."""
    from rag.extras import have

    if not have("matplotlib"):
        log.warning("%s not drawn: matplotlib is not installed (pip install -e '.[eval]')", path)
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = summary["retrieval"]["recall_curve"]
    selective = summary.get("selective")
    fig, axes = plt.subplots(1, 3 if selective else 2, figsize=(16.5 if selective else 11, 4))
    left, right = axes[0], axes[1]
    if selective:
        plot_risk_coverage(axes[2], [(summary["name"] or "run", selective["curve"])])
        if selective.get("coverage") is not None:
            axes[2].scatter(
                [selective["coverage"]], [1 - (selective.get("precision") or 0.0)], color="tab:red", zorder=3,
                label="at the service's threshold",
            )  # fmt: skip
            axes[2].legend()
        auroc, aurc = selective["auroc"], selective["aurc"]
        axes[2].set_title(
            "risk-coverage"
            + (f" (AUROC {auroc:.2f}, AURC {aurc:.3f})" if auroc is not None and aurc is not None else "")
        )
    ks = list(range(1, len(curve) + 1))
    left.plot(ks, curve, marker="o" if len(ks) <= 10 else None)
    left.set_xlabel("k")
    left.set_ylabel("recall@k" if summary["kind"] == "retrieval" else "hit@k (gold passage in top k)")
    left.set_ylim(0, 1.02)
    left.grid(alpha=0.3)
    left.set_title(f"{summary['dataset']}: retrieval (n={summary['retrieval']['n']})")
    latencies = [r.latency_ms for r in results if r.error is None]
    right.hist(latencies, bins=min(40, max(5, len(latencies) // 5)), color="tab:gray")
    for key, style in (("p50_ms", "-"), ("p95_ms", "--")):
        value = summary["latency"][key]
        if value is not None and math.isfinite(value):
            right.axvline(value, color="tab:red", linestyle=style, label=f"{key[:3]} {value:.0f} ms")
    right.set_xlabel("latency (ms, client-measured)")
    right.set_ylabel("questions")
    right.legend()
    right.set_title(f"latency ({summary['latency']['throughput_qps']:.2f} q/s)")
    fig.suptitle(summary["name"] or summary["dataset"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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


def plot_risk_coverage(ax, curves: Sequence[tuple[str, Sequence[dict]]]) -> None:
    """Risk (share of the answers given that are wrong) against coverage (share of questions answered), one
    line per named curve of ``{"coverage", "risk"}`` points."""
    for label, points in curves:
        ax.plot([p["coverage"] for p in points], [p["risk"] for p in points], label=label)
    ax.axhline(0.2, color="tab:gray", linestyle=":", linewidth=1)
    ax.set_xlabel("coverage (share of questions answered)")
    ax.set_ylabel("risk (share of answers wrong)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)


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
