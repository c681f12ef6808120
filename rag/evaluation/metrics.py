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
