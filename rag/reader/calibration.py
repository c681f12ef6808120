"""From reader and retrieval evidence to a calibrated probability that an answer is right.

Each candidate answer is described by a few features (the reader's span score and its margin over the
[CLS] no-answer score, its share of the reader's probability mass across passages, how many passages agree,
the passage's dense and BM25 evidence and rank). A logistic regression, fitted on held-out *training*
articles only (``rag/reader/fit_calibration.py``), turns them into P(right); the answer is given when that
probability reaches the threshold that maximised SQuAD 2.0 F1 on the same held-out questions, and the
probability itself is the answer's score.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag.errors import ModelError
from rag.evaluation.metrics import normalize_answer
from rag.types import Hit

#: Every feature is independent of the corpus's size and make-up (no raw BM25 scores, whose scale follows the
#: corpus statistics), so a calibration fitted on one corpus carries over to another.
FEATURES = (
    "span_score",
    "margin",
    "best_margin",
    "span_share",
    "agreement",
    "passage_dense",
    "top_dense",
    "question_coverage",
    "inverse_rank",
    "log_length",
    "answer_in_question",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A span in one of the retrieved passages, with its evidence."""

    hit_index: int
    start: int  # into the passage (the hit's chunk text)
    end: int
    reader_score: float
    null_score: float
    features: tuple[float, ...] = ()


def candidate_features(
    candidates: Sequence[Candidate],
    hits: Sequence[Hit],
    passages: Sequence[str],
    question: str,
    tokenize: Callable[[str], list[str]],
) -> list[tuple[float, ...]]:
    """The FEATURES of every candidate, computed against all the others (agreement, share of mass).

    ``tokenize`` turns text into the terms BM25 uses (stemmed, no stop words)."""
    if not candidates:
        return []
    scores = np.array([c.reader_score for c in candidates], dtype=np.float64)
    weights = np.exp(scores - scores.max())
    share = weights / weights.sum()
    texts = [normalize_answer(passages[c.hit_index][c.start : c.end]) for c in candidates]
    best_per_passage: dict[int, str] = {}
    for c, text in sorted(zip(candidates, texts, strict=True), key=lambda ct: -ct[0].reader_score):
        best_per_passage.setdefault(c.hit_index, text)
    best_margin = max(c.reader_score - c.null_score for c in candidates)
    top_dense = max((h.dense_score for h in hits if h.dense_score is not None), default=0.0)
    read = max(1, len(best_per_passage))
    q_terms = set(tokenize(question))
    coverage = {
        i: len(q_terms & set(tokenize(passages[i]))) / max(1, len(q_terms)) for i in {c.hit_index for c in candidates}
    }
    out: list[tuple[float, ...]] = []
    for c, text, s in zip(candidates, texts, share, strict=True):
        hit = hits[c.hit_index]
        mass = float(sum(sh for t, sh in zip(texts, share, strict=True) if t == text))
        agree = sum(1 for t in best_per_passage.values() if t == text) / read
        a_terms = tokenize(passages[c.hit_index][c.start : c.end])
        echo = sum(1 for t in a_terms if t in q_terms) / len(a_terms) if a_terms else 0.0
        out.append(
            (
                c.reader_score,
                c.reader_score - c.null_score,
                best_margin,
                max(float(s), mass),
                agree,
                hit.dense_score if hit.dense_score is not None else 0.0,
                top_dense,
                coverage[c.hit_index],
                1.0 / (c.hit_index + 1),
                math.log(1 + c.end - c.start),
                echo,
            )
        )
    return out


@dataclass
class Calibrator:
    """Logistic regression over standardised features, and the answer/no-answer threshold."""

    features: tuple[str, ...] = FEATURES
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    bias: float = 0.0
    threshold: float = 0.5
    fitted_on: dict = field(default_factory=dict)

    def probability(self, rows: Sequence[Sequence[float]]) -> npt.NDArray[np.float64]:
        if not rows:
            return np.zeros(0)
        x = (np.asarray(rows, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(x @ np.asarray(self.weights) + self.bias)))

    @classmethod
    def fit(
        cls, rows: Sequence[Sequence[float]], labels: Sequence[int], l2: float = 1.0, features=FEATURES
    ) -> Calibrator:
        """Maximum-likelihood logistic regression (Newton's method) with a small L2 penalty."""
        x = np.asarray(rows, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-9] = 1.0
        z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
        w = np.zeros(z.shape[1])
        penalty = np.full(z.shape[1], l2)
        penalty[-1] = 0.0
        for _ in range(50):
            p = 1.0 / (1.0 + np.exp(-(z @ w)))
            grad = z.T @ (p - y) + penalty * w
            hess = (z * (p * (1 - p))[:, None]).T @ z + np.diag(penalty) + 1e-9 * np.eye(len(w))
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(
            features=tuple(features),
            mean=mean.tolist(),
            scale=scale.tolist(),
            weights=w[:-1].tolist(),
            bias=float(w[-1]),
        )

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "features": list(self.features),
                    "mean": self.mean,
                    "scale": self.scale,
                    "weights": self.weights,
                    "bias": self.bias,
                    "threshold": self.threshold,
                    "fitted_on": self.fitted_on,
                },
                indent=2,
            )
            + "\n"
        )

    @classmethod
    def load(cls, path: Path) -> Calibrator:
        data = json.loads(path.read_text())
        if tuple(data["features"]) != FEATURES:
            raise ModelError(
                f"calibration {path} was fitted on features {data['features']}, this program computes "
                f"{list(FEATURES)}; refit it with: rag fit-calibration --reader <trained|heuristic>"
            )
        return cls(
            features=tuple(data["features"]),
            mean=data["mean"],
            scale=data["scale"],
            weights=data["weights"],
            bias=data["bias"],
            threshold=data["threshold"],
            fitted_on=data.get("fitted_on", {}),
        )
