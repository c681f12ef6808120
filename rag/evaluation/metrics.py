"""Answer and retrieval metrics, with the official SQuAD normalisation.

``normalize_answer``, ``exact_match`` and ``f1`` follow the official SQuAD 2.0 evaluation script: lower-case,
drop punctuation and the articles a/an/the, collapse whitespace; an empty gold list means "no answer", which
only an empty prediction matches.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from rag.text import normalize_answer

__all__ = ["exact_match", "f1", "normalize_answer"]


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold; no gold means 'no answer'."""
    if not golds:
        return float(not _tokens(prediction))
    return max(float(normalize_answer(prediction) == normalize_answer(g)) for g in golds)


def _f1_one(prediction: str, gold: str) -> float:
    pred, ref = _tokens(prediction), _tokens(gold)
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def f1(prediction: str, golds: Sequence[str]) -> float:
    """Token F1 against the best-matching gold; no gold means 'no answer'."""
    if not golds:
        return float(not _tokens(prediction))
    return max(_f1_one(prediction, g) for g in golds)


def hit_at(rank: int | None, k: int) -> float:
    """1.0 when the first relevant item sits at 1-based ``rank`` <= k."""
    return float(rank is not None and rank <= k)


def reciprocal_rank(rank: int | None, k: int = 10) -> float:
    return 1.0 / rank if rank is not None and rank <= k else 0.0


def ndcg_at(ranked_ids: Sequence[str], relevance: dict[str, int], k: int = 10) -> float:
    """nDCG@k with graded relevance, as BEIR computes it (gain = relevance, log2 discount)."""
    dcg = sum(relevance.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked_ids[:k]))
    ideal = sorted((r for r in relevance.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked_ids: Sequence[str], relevance: dict[str, int], k: int = 100) -> float:
    relevant = {doc for doc, r in relevance.items() if r > 0}
    if not relevant:
        return 0.0
    return len(relevant & set(ranked_ids[:k])) / len(relevant)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (probability a positive outranks a negative; ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    ranked = sorted((s, y) for s, y in zip(scores, labels, strict=True))
    # Mann-Whitney U with average ranks for ties.
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j + 1 < len(ranked) and ranked[j + 1][0] == ranked[i][0]:
            j += 1
        avg = (i + j) / 2 + 1
        rank_sum += avg * sum(1 for t in range(i, j + 1) if ranked[t][1])
        i = j + 1
    return (rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def weighted_auc(scores: Sequence[float], labels: Sequence[bool], weights: Sequence[float]) -> float:
    """ROC AUC where each question counts with its weight (ties count half): the weighted probability that a
    positive outranks a negative."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    below_neg = 0.0  # weight of negatives scored strictly lower than the current group
    total = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        group = order[i : j + 1]
        pos = sum(weights[k] for k in group if labels[k])
        neg = sum(weights[k] for k in group if not labels[k])
        total += pos * (below_neg + neg / 2)
        below_neg += neg
        i = j + 1
    pos_all = sum(w for w, y in zip(weights, labels, strict=True) if y)
    neg_all = sum(w for w, y in zip(weights, labels, strict=True) if not y)
    return total / (pos_all * neg_all) if pos_all > 0 and neg_all > 0 else float("nan")


def risk_coverage_curve(
    scores: Sequence[float], right: Sequence[bool], weights: Sequence[float] | None = None
) -> list[tuple[float, float, float]]:
    """Selective answering (Geifman & El-Yaniv 2017; Kamath et al. 2020): answer the questions scored highest
    first. One point per cut, ``(coverage, risk, threshold)``: the share of questions answered, the share of
    those answered wrongly, and the lowest score answered (tied scores are answered together). ``weights``
    make each question count for its weight (a mix of question kinds in chosen proportions)."""
    w = [1.0] * len(scores) if weights is None else list(weights)
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    total = sum(w)
    points: list[tuple[float, float, float]] = []
    answered = wrong = 0.0
    for k, i in enumerate(order, 1):
        answered += w[i]
        wrong += w[i] * (not right[i])
        if k < len(order) and scores[order[k]] == scores[i]:
            continue  # a threshold cannot split tied scores
        if answered > 0:
            points.append((answered / total, wrong / answered, float(scores[i])))
    return points


def selective_figures(
    scores: Sequence[float], right: Sequence[bool], weights: Sequence[float] | None = None
) -> dict[str, float]:
    """The selective-QA figures of one question set: ``scores[i]`` is the top answer's score (whether or not
    it was given), ``right[i]`` whether that answer is right (any answer to an unanswerable question is wrong).

    ``auroc``: how well the score separates right top answers from everything else; ``coverage_at_80`` and
    ``_90``: the largest share of questions that can be answered with at least 80% / 90% of the answers right;
    ``aurc``: the area under the risk-coverage curve (lower is better)."""
    w = [1.0] * len(scores) if weights is None else list(weights)
    curve = risk_coverage_curve(scores, right, w)
    if not curve:
        nan = float("nan")
        return {"auroc": nan, "coverage_at_80": nan, "coverage_at_90": nan, "aurc": nan, "questions": 0}

    def coverage_at(precision: float) -> float:
        return max((c for c, r, _ in curve if 1 - r >= precision - 1e-12), default=0.0)

    previous, area = 0.0, 0.0
    for coverage, risk, _ in curve:
        area += (coverage - previous) * risk
        previous = coverage
    return {
        "auroc": weighted_auc(scores, [bool(r) for r in right], w),
        "coverage_at_80": coverage_at(0.8),
        "coverage_at_90": coverage_at(0.9),
        "aurc": area,
        "questions": len(scores),
    }
