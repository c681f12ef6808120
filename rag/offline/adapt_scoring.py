"""How adapting the reader judges a reader (step 3 of ``rag.offline.adapt``): each held-out fold decided by a
calibration fitted without it, each question scored as the service would answer it, and bootstrap intervals
for the figures and for the paired difference between two readers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rag.evaluation.metrics import exact_match
from rag.evaluation.metrics import f1 as f1_score
from rag.offline.adapt_data import UserQuestion
from rag.offline.fit_calibration import QuestionRows, collect, decision, fit_on
from rag.squad import GoldAnswer, SquadQuestion


def as_squad(q: UserQuestion, fold: str) -> SquadQuestion:
    """A held-out question in the shape the calibration's row collection reads (``title``: its fold)."""
    return SquadQuestion(
        id=q.id,
        question=q.question,
        title=fold,
        context="",
        answers=tuple(GoldAnswer(text, start) for start, _, text in q.answers),
        is_impossible=not q.answerable,
        paragraph_index=0,
        paragraph_start=0,
    )


def held_out_rows(pipeline, index, folds: Sequence[Sequence[UserQuestion]], log) -> list[QuestionRows]:
    """The reader's candidates for every held-out question, with features and labels; ``article``: the fold."""
    questions = [as_squad(q, f"user-fold-{i}") for i, fold in enumerate(folds) for q in fold]
    kinds = ["answerable" if q.answers else "unanswerable" for q in questions]
    return collect(pipeline, index, questions, kinds, log)


@dataclass(frozen=True, slots=True)
class Scored:
    """One held-out question as the service would answer it under a cross-fitted calibration."""

    answered: bool
    f1: float  # SQuAD F1 of the response: 0/1 for a decline (1 when the question has no answer)
    em: float
    right: bool  # answered, and right (F1 >= 0.5 against a gold answer)


def cross_fit_user(benchmark: Sequence[QuestionRows], user: Sequence[QuestionRows]) -> list[Scored]:
    """Each held-out fold decided by a calibration (and threshold) fitted on the benchmark and the other folds."""
    from rag.evaluation.trust import operating_threshold
    from rag.offline.fit_calibration import decided_row

    out: dict[int, Scored] = {}
    for fold in sorted({q.article for q in user}):
        train = [*benchmark, *(q for q in user if q.article != fold)]
        calibrator = fit_on(train)
        threshold = operating_threshold([decided_row(calibrator, q) for q in train])
        for i, q in enumerate(user):
            if q.article == fold:
                out[i] = score(q, *decision(calibrator, q), threshold)
    return [out[i] for i in range(len(user))]


def score(q: QuestionRows, best: int, prob: float, threshold: float) -> Scored:
    answered = best >= 0 and prob >= threshold
    if not answered:
        ok = float(not q.golds)
        return Scored(False, ok, ok, False)
    if not q.golds:
        return Scored(True, 0.0, 0.0, False)
    f1 = f1_score(q.texts[best], q.golds)
    return Scored(True, f1, exact_match(q.texts[best], q.golds), f1 >= 0.5)


def figures(scored: Sequence[Scored], samples: int = 1000, seed: int = 13) -> dict:
    """F1, EM (percent), share answered, and share right among answers given, with 95% bootstrap intervals."""
    rng = np.random.default_rng(seed)
    f1 = np.array([s.f1 for s in scored]) * 100
    em = np.array([s.em for s in scored]) * 100
    out: dict = {"questions": len(scored)}
    for name, values in (("f1", f1), ("em", em)):
        draws = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(samples)]
        out[name] = round(float(values.mean()), 2)
        out[f"{name}_interval"] = [
            round(float(np.percentile(draws, 2.5)), 2),
            round(float(np.percentile(draws, 97.5)), 2),
        ]
    given = [s for s in scored if s.answered]
    out["answered"] = round(100 * len(given) / max(1, len(scored)), 1)
    out["right_among_given"] = round(100 * sum(s.right for s in given) / len(given), 1) if given else None
    return out


def paired_difference(a: Sequence[Scored], b: Sequence[Scored], samples: int = 1000, seed: int = 13) -> dict:
    """F1 and EM of ``b`` minus ``a`` on the same questions, with 95% intervals from one resample for both."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("f1", "em"):
        d = (np.array([getattr(s, name) for s in b]) - np.array([getattr(s, name) for s in a])) * 100
        draws = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(samples)]
        out[name] = {
            "difference": round(float(d.mean()), 2),
            "low": round(float(np.percentile(draws, 2.5)), 2),
            "high": round(float(np.percentile(draws, 97.5)), 2),
        }
    return out
