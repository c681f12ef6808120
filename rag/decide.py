"""The decide stage: from reader and retrieval evidence to a calibrated probability that an answer is right.

Each candidate answer is described by corpus-independent features: the reader's span and no-answer
log-probabilities under the question's shared normalisation (every window of every passage read together),
the span's margin over its own passage's [CLS] score, its share of the probability mass and how many passages
agree on it, whether it looks like the kind of thing the question asks for (a date for "when", a number for
"how many", a name for "who"...), how well the question lines up with the sentence around the span (its terms
and term pairs found there: an adversarial unanswerable question often asks about something the sentence does
not say, "Who is Japan's defence minister?" against "Prime Minister Shigeru Ishiba said..."), and retrieval
evidence for "does the corpus cover this at all" (dense similarity of its passage and of the best passage,
question-word coverage, rank).

A logistic regression over these features, fitted on held-out *training* articles only
(``rag/offline/fit_calibration.py``, the trust benchmark's questions): ``ranker`` (every candidate: is this span
right?) orders a question's candidates and gives each its score; the best one is the answer when its score
reaches ``threshold`` (its rule is in ``fitted_on["threshold_rule"]``). A second model on two of the features,
``coverage``, says whether the passages read are about the question at all (``no_answer_reason``).
``reader_sha256`` ties a calibration to the reader weights it was fitted on.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag.errors import ModelError
from rag.question_types import expected_labels
from rag.sentences import sentence_around
from rag.text import normalize_answer
from rag.types import Hit

#: Every feature is independent of the corpus's size and make-up (no raw BM25 scores, whose scale follows the
#: corpus statistics), so a calibration fitted on one corpus carries over to another.
FEATURES = (
    "span_score",
    "span_logprob",
    "null_logprob",
    "margin",
    "best_margin",
    "span_share",
    "agreement",
    "passage_dense",
    "top_dense",
    "question_coverage",
    "best_coverage",
    "inverse_rank",
    "log_length",
    "answer_in_question",
    "type_asked",
    "type_match",
    "sentence_coverage",
    "window_coverage",
    "sentence_missing",
    "sentence_bigrams",
)
#: What says whether the passages read are about the question at all (the coverage model behind
#: ``no_answer_reason``): the best passage's similarity to the question and its share of the question's terms.
COVERAGE_FEATURES = ("top_dense", "best_coverage")
#: Question words: what a question asks with, never what it asks about.
_WH_WORDS = frozenset({"what", "when", "where", "which", "who", "whom", "whose", "why", "how"})
#: How far either side of the span ``window_coverage`` looks for the question's terms, in characters.
ALIGN_WINDOW = 150

_MONTHS = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_SHAPES = {
    "DATE": re.compile(
        rf"\b(?:1[0-9]{{3}}|20[0-9]{{2}}|[0-9]{{1,4}}s|{_MONTHS}|monday|tuesday|wednesday|thursday|friday|saturday|"
        r"sunday|today|yesterday|tomorrow|century|centuries|decade|years?|months?|weeks?|days?|bc|ad|bce|ce)\b",
        re.I,
    ),
    "TIME": re.compile(
        r"\b(?:[0-9]{1,2}[:.][0-9]{2}|[0-9]{1,2}\s?(?:a\.?m|p\.?m)\.?|noon|midnight|hours?|minutes?)\b", re.I
    ),
    "NUMBER": re.compile(
        r"[0-9]|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
        r"hundred|thousand|million|billion|trillion|dozen|half|several|few)\b",
        re.I,
    ),
    "MONEY": re.compile(r"[$€£¥₩]|\b(?:dollars?|euros?|pounds?|yen|won|yuan|cents?|usd|eur)\b", re.I),
    "PERCENT": re.compile(r"%|\bper ?cent\b", re.I),
    "NAME": re.compile(r"\b[A-Z][\w'’.-]*"),
}
#: Which shapes fit each spaCy label the question may ask for (rag.question_types.expected_labels).
_LABEL_SHAPES = {
    "DATE": ("DATE",),
    "TIME": ("TIME", "DATE"),
    "CARDINAL": ("NUMBER",),
    "QUANTITY": ("NUMBER",),
    "MONEY": ("MONEY", "NUMBER"),
    "PERCENT": ("PERCENT", "NUMBER"),
    "PERSON": ("NAME",),
    "ORG": ("NAME",),
    "NORP": ("NAME",),
    "GPE": ("NAME",),
    "LOC": ("NAME",),
    "FAC": ("NAME",),
}


def type_match(labels: Sequence[str], span: str) -> float:
    """1.0 when the span has the shape of one of the asked-for entity labels, 0.0 when it has none of them,
    0.5 when the question asks for no particular type."""
    if not labels:
        return 0.5
    shapes = {shape for label in labels for shape in _LABEL_SHAPES.get(label, ())}
    return float(any(_SHAPES[shape].search(span) for shape in shapes))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A span in one of the retrieved passages, with its evidence."""

    hit_index: int
    start: int  # into the passage (the hit's chunk text)
    end: int
    reader_score: float
    null_score: float
    span_logprob: float = 0.0  # under the question's shared normalisation (trained reader; 0 otherwise)
    null_logprob: float = 0.0


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
    q_sequence = tokenize(question)
    q_terms = set(q_sequence)
    q_bigrams = set(pairwise(q_sequence))
    coverage = {i: len(q_terms & set(tokenize(p))) / max(1, len(q_terms)) for i, p in enumerate(passages)}
    best_coverage = max(coverage.values(), default=0.0)
    labels = expected_labels(question)
    typed = float(bool(labels))
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
                c.span_logprob,
                c.null_logprob,
                c.reader_score - c.null_score,
                best_margin,
                max(float(s), mass),
                agree,
                hit.dense_score if hit.dense_score is not None else 0.0,
                top_dense,
                coverage[c.hit_index],
                best_coverage,
                1.0 / (c.hit_index + 1),
                math.log(1 + c.end - c.start),
                echo,
                typed,
                type_match(labels, passages[c.hit_index][c.start : c.end]),
                *alignment(q_terms, q_bigrams, set(a_terms), passages[c.hit_index], c.start, c.end, tokenize),
            )
        )
    return out


def alignment(
    q_terms: set[str],
    q_bigrams: set[tuple[str, str]],
    span_terms: set[str],
    passage: str,
    start: int,
    end: int,
    tokenize: Callable[[str], list[str]],
) -> tuple[float, float, float, float]:
    """How the question lines up with the text around the span ``passage[start:end]`` (whose terms are
    ``span_terms``): the share of the question's terms (less question words and the span's own terms) found in the
    span's sentence and within ``ALIGN_WINDOW`` characters of it, log(1 + how many are missing from the sentence),
    and the share of the question's adjacent term pairs found in the sentence."""
    s_start, s_end = sentence_around(passage, start, end)
    asked = q_terms - _WH_WORDS - span_terms
    sentence = set(tokenize(f"{passage[s_start:start]} {passage[end:s_end]}"))
    window = set(tokenize(f"{passage[max(0, start - ALIGN_WINDOW) : start]} {passage[end : end + ALIGN_WINDOW]}"))
    terms = tokenize(passage[s_start:s_end])
    n = max(1, len(asked))
    return (
        len(asked & sentence) / n,
        len(asked & window) / n,
        math.log1p(len(asked - sentence)),
        len(q_bigrams & set(pairwise(terms))) / max(1, len(q_bigrams)),
    )


@dataclass
class Logistic:
    """Logistic regression over standardised features."""

    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float

    def probability(self, rows: Sequence[Sequence[float]]) -> npt.NDArray[np.float64]:
        if not rows:
            return np.zeros(0)
        x = (np.asarray(rows, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(x @ np.asarray(self.weights) + self.bias)))

    @classmethod
    def fit(cls, rows: Sequence[Sequence[float]], labels: Sequence[int], l2: float = 1.0) -> Logistic:
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
        return cls(mean=mean.tolist(), scale=scale.tolist(), weights=w[:-1].tolist(), bias=float(w[-1]))

    def as_dict(self) -> dict:
        return {"mean": self.mean, "scale": self.scale, "weights": self.weights, "bias": self.bias}


@dataclass
class Calibrator:
    """``ranker`` gives every candidate its probability of being right: candidates are ordered by it, it is the
    score an answer shows, and the best candidate is the answer when that score reaches ``threshold``.

    ``decider`` (calibrations fitted before 2026-12) was a second model fitted on each question's best-ranked
    candidate only, whose probability was shown instead; on the trust benchmark the ranker's own probability
    separated right answers from the rest as well or better (cross-fitted AUROC on the mix 0.819 against 0.810,
    the same reader outputs), and one model lists answers by the score they show. Such files still load."""

    ranker: Logistic
    decider: Logistic | None = None
    threshold: float = 0.5
    features: tuple[str, ...] = FEATURES
    reader_sha256: str | None = None  # the reader weights this was fitted on (None: the heuristic reader)
    fitted_on: dict = field(default_factory=dict)
    coverage: Logistic | None = None  # P(the passages read are about the question), on COVERAGE_FEATURES

    def covered(self, row: Sequence[float]) -> float:
        """P(the passages read are about the question) from any candidate's row (1.0 without a coverage model)."""
        if self.coverage is None:
            return 1.0
        return float(self.coverage.probability([coverage_row(row)])[0])

    def rank(self, rows: Sequence[Sequence[float]]) -> npt.NDArray[np.float64]:
        return self.ranker.probability(rows)

    def probability(self, rows: Sequence[Sequence[float]]) -> npt.NDArray[np.float64]:
        """P(right) of each row taken as the answer given (the score it shows)."""
        return (self.decider or self.ranker).probability(rows)

    @classmethod
    def fit(
        cls,
        rows: Sequence[Sequence[float]],
        labels: Sequence[int],
        l2: float = 1.0,
    ) -> Calibrator:
        """Fit the ranker on every candidate row (label: the span is right)."""
        return cls(ranker=Logistic.fit(rows, labels, l2))

    def save(self, path: Path) -> None:
        payload = {
            "features": list(self.features),
            "reader_sha256": self.reader_sha256,
            "ranker": self.ranker.as_dict(),
            "decider": self.decider.as_dict() if self.decider else None,
            "threshold": self.threshold,
            "coverage": self.coverage.as_dict() if self.coverage else None,
            "fitted_on": self.fitted_on,
        }
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, reader_sha256: str | None = None) -> Calibrator:
        """Read a calibration; refuse one fitted on other features or on other reader weights."""
        refit = "refit it with: rag fit-calibration --reader <trained|heuristic>"
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read the calibration {path} ({exc}); {refit}") from exc
        if tuple(data.get("features", ())) != FEATURES or "ranker" not in data:
            raise ModelError(
                f"calibration {path} was fitted on features {data.get('features')}, this program computes "
                f"{list(FEATURES)}; {refit}"
            )
        if data.get("reader_sha256") != reader_sha256:
            raise ModelError(
                f"calibration {path} was fitted on reader weights {str(data.get('reader_sha256'))[:12]}, not on "
                f"these ({str(reader_sha256)[:12]}); {refit}"
            )
        return cls(
            ranker=Logistic(**data["ranker"]),
            decider=Logistic(**data["decider"]) if data.get("decider") else None,
            threshold=data["threshold"],
            features=tuple(data["features"]),
            reader_sha256=data.get("reader_sha256"),
            fitted_on=data.get("fitted_on", {}),
            coverage=Logistic(**data["coverage"]) if data.get("coverage") else None,
        )


def coverage_row(row: Sequence[float]) -> tuple[float, ...]:
    """The COVERAGE_FEATURES of a candidate's feature row (the same for every candidate of a question)."""
    return tuple(row[FEATURES.index(name)] for name in COVERAGE_FEATURES)
