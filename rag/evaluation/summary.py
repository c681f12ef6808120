"""A scored run's numbers: answer quality (EM, F1, abstentions, citations), retrieval (hit@k, MRR, recall,
nDCG), calibration, selective-QA figures and latency, as the dict that ``summary.json`` holds."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

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


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


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
