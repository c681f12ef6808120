"""Reader quality with the gold paragraph given: the reader's own skill, apart from retrieval."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from rag.evaluation.metrics import exact_match, f1, roc_auc
from rag.squad import SquadQuestion


def evaluate_gold_paragraphs(reader, questions: Sequence[SquadQuestion], batch: int = 1) -> dict:
    """HasAns EM/F1 when forced to answer, and how well the null score separates (un)answerable questions."""
    has_em: list[float] = []
    has_f1: list[float] = []
    margins: list[float] = []
    labels: list[bool] = []
    no_ans_right: list[float] = []
    answered_f1: list[float] = []  # SQuAD 2.0 F1 of each question if answered (0 for an unanswerable one)
    started = time.perf_counter()
    for q in questions:
        reading = reader.read(q.question, [q.context], top_n=1)[0]
        best = reading.candidates[0] if reading.candidates else None
        prediction = q.context[best.start : best.end] if best else ""
        margin = (best.score - reading.null_score) if best else float("-inf")
        margins.append(margin)
        labels.append(not q.is_impossible)
        if q.is_impossible:
            no_ans_right.append(float(margin <= 0))
            answered_f1.append(0.0)
        else:
            golds = [a.text for a in q.answers]
            has_em.append(exact_match(prediction, golds))
            has_f1.append(f1(prediction, golds))
            answered_f1.append(has_f1[-1])
    seconds = time.perf_counter() - started
    return {
        "questions": len(questions),
        "has_answer": len(has_f1),
        "has_answer_em_forced": round(100 * float(np.mean(has_em)), 2) if has_em else None,
        "has_answer_f1_forced": round(100 * float(np.mean(has_f1)), 2) if has_f1 else None,
        "null_margin_auc": round(roc_auc(margins, labels), 4),
        "no_answer_accuracy_at_margin_0": round(100 * float(np.mean(no_ans_right)), 2) if no_ans_right else None,
        "best_overall_f1": best_threshold_f1(margins, answered_f1, labels),
        "ms_per_question": round(1000 * seconds / max(1, len(questions)), 1),
    }


def best_threshold_f1(margins: Sequence[float], answered_f1: Sequence[float], answerable: Sequence[bool]) -> float:
    """SQuAD 2.0 overall F1 at the best null-margin threshold (the official script's ``best_f1``): answer when
    the margin is above the threshold, abstain otherwise. A selection metric that rewards both span quality
    and separating answerable from unanswerable questions."""
    if not margins:
        return 0.0
    order = np.argsort(-np.asarray(margins, dtype=np.float64), kind="stable")
    # Abstain on everything, then answer questions one by one in decreasing margin order.
    score = float(sum(1.0 for a in answerable if not a))
    best = score
    for i in order:
        score += answered_f1[i] - (0.0 if answerable[i] else 1.0)
        best = max(best, score)
    return round(100 * best / len(margins), 2)
