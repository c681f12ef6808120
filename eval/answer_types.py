"""What kind of thing a question asks for, and what kind of thing a span is (eval/answer_type_experiment.py).

A span's type comes from spaCy's entities over the text around it (coarse classes: a person, a place, a
date, a number...; ``OTHER`` when no entity covers it). A question's expected type is *learned*: a
logistic regression over the question's words, fitted on training questions labelled with the type of their
gold answer (``QuestionTyper.fit``). Its probabilities are a distribution over ``TYPES``, so "how likely is it
that the question asks for a span of this type" is one number for any candidate.

The fitted model is kept as plain arrays (vocabulary, idf, coefficients) and applied with numpy, so serving
needs neither scikit-learn nor spaCy to type a question.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

#: Coarse answer types; every spaCy label maps to one, a span with no entity is OTHER.
TYPES = ("PERSON", "ORG", "PLACE", "GROUP", "DATE", "NUMBER", "MONEY", "PERCENT", "NAMED", "OTHER")
_COARSE = {
    "PERSON": "PERSON",
    "ORG": "ORG",
    "GPE": "PLACE",
    "LOC": "PLACE",
    "FAC": "PLACE",
    "NORP": "GROUP",
    "DATE": "DATE",
    "TIME": "DATE",
    "CARDINAL": "NUMBER",
    "QUANTITY": "NUMBER",
    "ORDINAL": "NUMBER",
    "MONEY": "MONEY",
    "PERCENT": "PERCENT",
    "EVENT": "NAMED",
    "WORK_OF_ART": "NAMED",
    "LAW": "NAMED",
    "PRODUCT": "NAMED",
    "LANGUAGE": "NAMED",
}
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def coarse(label: str) -> str:
    return _COARSE.get(label, "OTHER")


def span_type(entities: Iterable[tuple[int, int, str]], start: int, end: int) -> str:
    """The coarse type of ``[start, end)`` given entities ``(start, end, spaCy label)`` of the same text: the
    entity that overlaps the span most, when it covers at least half of the span; otherwise OTHER."""
    best, best_overlap = "OTHER", 0
    length = max(1, end - start)
    for e_start, e_end, label in entities:
        overlap = min(end, e_end) - max(start, e_start)
        if overlap > best_overlap and overlap * 2 >= length:
            best, best_overlap = coarse(label), overlap
    return best


def question_terms(question: str) -> list[str]:
    """Lower-cased words, their first three words as one more feature ("how many years"), and word pairs."""
    words = _WORD.findall(question.lower())
    out = words + [f"{a}_{b}" for a, b in zip(words, words[1:], strict=False)]
    if words:
        out.append("^" + "_".join(words[:3]))
        out.append("^" + words[0])
    return out


@dataclass(frozen=True)
class QuestionTyper:
    """P(answer type | question): tf-idf of ``question_terms`` and a multinomial logistic regression."""

    vocabulary: dict[str, int]
    idf: npt.NDArray[np.float64]
    coef: npt.NDArray[np.float64]  # (types, terms)
    intercept: npt.NDArray[np.float64]
    fitted_on: dict

    def probabilities(self, questions: Sequence[str]) -> npt.NDArray[np.float64]:
        """(questions, len(TYPES)) rows summing to one."""
        x = np.zeros((len(questions), len(self.vocabulary)))
        for i, q in enumerate(questions):
            for term in question_terms(q):
                j = self.vocabulary.get(term)
                if j is not None:
                    x[i, j] += 1.0
        x = np.where(x > 0, 1.0 + np.log(np.maximum(x, 1.0)), 0.0) * self.idf
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
        z = x @ self.coef.T + self.intercept
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    @classmethod
    def fit(cls, questions: Sequence[str], types: Sequence[str], c: float = 4.0, min_df: int = 2) -> QuestionTyper:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vectorizer = TfidfVectorizer(analyzer=question_terms, sublinear_tf=True, min_df=min_df)
        x = vectorizer.fit_transform(questions)
        y = [TYPES.index(t) for t in types]
        model = LogisticRegression(C=c, max_iter=2000).fit(x, y)
        coef = np.zeros((len(TYPES), x.shape[1]))
        intercept = np.full(len(TYPES), -30.0)  # a type never seen in training gets (almost) no mass
        for row, k in enumerate(model.classes_):
            coef[k] = model.coef_[row]
            intercept[k] = model.intercept_[row]
        counts = {t: types.count(t) for t in TYPES}
        return cls(
            {t: int(j) for t, j in vectorizer.vocabulary_.items()},
            np.asarray(vectorizer.idf_, dtype=np.float64),
            coef,
            intercept,
            {"questions": len(questions), "types": counts, "c": c, "min_df": min_df},
        )

    def save(self, path: Path) -> None:
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        data = {
            "types": list(TYPES),
            "terms": terms,
            "idf": [round(float(v), 5) for v in self.idf],
            "coef": [[round(float(v), 5) for v in row] for row in self.coef],
            "intercept": [round(float(v), 5) for v in self.intercept],
            "fitted_on": self.fitted_on,
        }
        path.write_text(json.dumps(data) + "\n")

    @classmethod
    def load(cls, path: Path) -> QuestionTyper:
        data = json.loads(path.read_text())
        if tuple(data["types"]) != TYPES:
            raise ValueError(f"{path} was fitted for the types {data['types']}, not {list(TYPES)}")
        return cls(
            {t: j for j, t in enumerate(data["terms"])},
            np.asarray(data["idf"], dtype=np.float64),
            np.asarray(data["coef"], dtype=np.float64),
            np.asarray(data["intercept"], dtype=np.float64),
            data["fitted_on"],
        )


def type_evidence(probabilities: Sequence[float], span_types: Sequence[str]) -> list[tuple[float, float, float]]:
    """For each candidate of one question: (P(its type), the best such probability over all the question's
    candidates: "is any candidate of the expected type", and the question's surest type's probability)."""
    p = [float(probabilities[TYPES.index(t)]) for t in span_types]
    best = max(p, default=0.0)
    sure = float(max(probabilities)) if len(probabilities) else 0.0
    return [(math.log(max(v, 1e-4)), math.log(max(best, 1e-4)), sure) for v in p]
