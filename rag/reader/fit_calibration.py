"""Fit the no-answer calibrator on held-out *training* articles (never the validation ones).

Two settings are measured, both with the service's own retrieval and reader:

A. covered: the corpus holds the seed, the 24 articles the reader trained on, and the 4 held-out calibration
   articles; the questions are the calibration articles' own (answerable and unanswerable, SQuAD 2.0 style).
B. not covered: the same corpus without the 4 calibration articles, asked a sample of the same questions,
   none of which it can answer any more (the articles do not cover the topic: the "off-topic" case). The corpus
   is as large as A's, and every feature is corpus-independent, so B teaches topic evidence, not corpus size.

The logistic regression is fitted on every candidate answer of A and B (label: F1 >= 0.5 against a gold answer
of an answerable question in A). The threshold follows ``choose_threshold``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.evaluation.metrics import f1 as f1_score
from rag.loaders import load_paths, squad_documents
from rag.pipeline import QAPipeline
from rag.reader.calibration import Calibrator, candidate_features
from rag.reader.train import calibration_titles
from rag.squad import SquadQuestion, iter_questions, load_squad, select_articles
from rag.store import CorpusIndex, IndexSettings

RIGHT_F1 = 0.5  # an answer counts as right when its SQuAD F1 against a gold answer reaches this
NOT_COVERED_DECLINED = 0.95
THRESHOLD_RULE = (
    f"the lowest threshold that declines at least {NOT_COVERED_DECLINED:.0%} of the questions the corpus does "
    "not cover (B); the threshold that maximises SQuAD 2.0 F1 on A is kept as the strict alternative"
)


def choose_threshold(curve: Sequence[dict]) -> float:
    """The answer/no-answer policy: decline what the articles do not cover, answer the rest with its score.

    On SQuAD 2.0's adversarial unanswerable questions our reader's evidence separates right from wrong only
    weakly, so the F1-maximising threshold there declines most answerable questions for a gain of about three
    points over never answering; a user asking about their own articles is served better by a threshold that
    turns away off-topic questions and answers the rest, with a calibrated score to judge them by.
    """
    ordered = sorted(curve, key=lambda row: row["threshold"])
    for row in ordered:
        if row["declined_not_covered"] >= NOT_COVERED_DECLINED:
            return float(row["threshold"])
    return float(ordered[-1]["threshold"])


@dataclass(frozen=True, slots=True)
class QuestionRows:
    rows: list[tuple[float, ...]]
    texts: list[str]
    labels: list[int]
    golds: tuple[str, ...]  # empty: the right response is no answer


def build_index(docs, pipeline: QAPipeline, settings: IndexSettings, folder: Path | None) -> CorpusIndex:
    from rag.engine import model_record

    model = model_record(pipeline.embedder)
    if folder is not None and (folder / "CURRENT").exists():
        index = CorpusIndex.load(folder, settings=settings, model=model)
    else:
        index = CorpusIndex.empty(settings, model)
    index, report = index.apply(docs, embedder=pipeline.embedder)
    if folder is not None and report.changed:
        index.save(folder)
    return index


def collect(
    pipeline: QAPipeline,
    index: CorpusIndex,
    questions: Sequence[SquadQuestion],
    covered: bool,
    log: Callable[[str], None],
) -> list[QuestionRows]:
    out = []
    started = time.perf_counter()
    for i, q in enumerate(questions):
        hits, _ = pipeline.search(index, q.question, pipeline.settings.read_k)
        passages = [h.chunk.text for h in hits]
        candidates = pipeline.read(q.question, passages)
        rows = candidate_features(candidates, hits, passages, q.question, pipeline.terms.tokenize)
        texts = [passages[c.hit_index][c.start : c.end] for c in candidates]
        golds = tuple(a.text for a in q.answers) if covered and not q.is_impossible else ()
        labels = [int(bool(golds) and f1_score(t, golds) >= RIGHT_F1) for t in texts]
        out.append(QuestionRows(rows, texts, labels, golds))
        if (i + 1) % 200 == 0:
            log(f"  {i + 1}/{len(questions)} questions, {(time.perf_counter() - started) / (i + 1) * 1000:.0f} ms each")
    return out


def squad2_f1(calibrator: Calibrator, data: Sequence[QuestionRows], threshold: float) -> float:
    total = 0.0
    for q in data:
        if not q.rows:
            total += float(not q.golds)
            continue
        probs = calibrator.probability(q.rows)
        best = int(np.argmax(probs))
        if probs[best] >= threshold:
            total += f1_score(q.texts[best], q.golds) if q.golds else 0.0
        else:
            total += float(not q.golds)
    return 100 * total / max(1, len(data))


def _declined(calibrator: Calibrator, data: Sequence[QuestionRows], threshold: float) -> float:
    if not data:
        return float("nan")
    return float(np.mean([float(not q.rows or calibrator.probability(q.rows).max() < threshold) for q in data]))


def reliability(calibrator: Calibrator, data: Sequence[QuestionRows], bins: int = 10) -> list[dict]:
    """Top answer's probability against how often it is right, in equal-width bins."""
    probs, right = [], []
    for q in data:
        if not q.rows:
            continue
        p = calibrator.probability(q.rows)
        best = int(np.argmax(p))
        probs.append(float(p[best]))
        right.append(q.labels[best])
    table = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, p in enumerate(probs) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if idx:
            table.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "count": len(idx),
                    "mean_score": round(float(np.mean([probs[i] for i in idx])), 3),
                    "share_right": round(float(np.mean([right[i] for i in idx])), 3),
                }
            )
    return table


def fit(
    pipeline: QAPipeline,
    squad_path: str,
    seeds: str | Path,
    out: Path,
    *,
    cache: Path | None = None,
    not_covered_sample: int = 400,
    seed: int = 13,
    log: Callable[[str], None] = print,
) -> Calibrator:
    payload = load_squad(squad_path)
    train = select_articles(payload, "train")
    held_out = set(calibration_titles([a["title"] for a in train]))
    cal_articles = [a for a in train if a["title"] in held_out]
    questions = list(iter_questions(cal_articles))
    seed_docs = load_paths([seeds]).documents
    settings = IndexSettings()

    log(
        f"A (covered): corpus = seed + {len(train)} training articles; "
        f"{len(questions)} questions from {sorted(held_out)}"
    )
    index_a = build_index(
        seed_docs + squad_documents({"data": train}), pipeline, settings, cache / "covered" if cache else None
    )
    data_a = collect(pipeline, index_a, questions, covered=True, log=log)

    rng = random.Random(seed)
    sample = rng.sample(questions, min(not_covered_sample, len(questions)))
    fit_only = [a for a in train if a["title"] not in held_out]
    log(f"B (not covered): corpus = seed + the {len(fit_only)} other training articles; {len(sample)} of the questions")
    index_b = build_index(
        seed_docs + squad_documents({"data": fit_only}), pipeline, settings, cache / "not-covered" if cache else None
    )
    data_b = collect(pipeline, index_b, sample, covered=False, log=log)

    rows = [r for q in data_a + data_b for r in q.rows]
    labels = [y for q in data_a + data_b for y in q.labels]
    calibrator = Calibrator.fit(rows, labels)
    grid = [round(t, 3) for t in np.arange(0.05, 0.951, 0.025)]
    scores = {t: squad2_f1(calibrator, data_a, t) for t in grid}
    curve = [
        {
            "threshold": t,
            "squad2_f1_covered": round(scores[t], 2),
            "answerable_declined_covered": round(_declined(calibrator, [q for q in data_a if q.golds], t), 4),
            "unanswerable_declined_covered": round(_declined(calibrator, [q for q in data_a if not q.golds], t), 4),
            "declined_not_covered": round(_declined(calibrator, data_b, t), 4),
        }
        for t in grid
    ]
    calibrator.threshold = choose_threshold(curve)
    strict = max(grid, key=lambda t: (scores[t], -abs(t - 0.5)))
    declined_b = np.mean(
        [float(not q.rows or calibrator.probability(q.rows).max() < calibrator.threshold) for q in data_b]
    )
    calibrator.fitted_on = {
        "reader": pipeline.reader_kind,
        "squad_sha256": _sha(squad_path),
        "calibration_articles": sorted(held_out),
        "questions_covered": len(data_a),
        "questions_not_covered": len(data_b),
        "candidates": len(rows),
        "right_means": f"SQuAD F1 >= {RIGHT_F1} against a gold answer",
        "threshold_rule": THRESHOLD_RULE,
        "threshold_f1_covered": round(scores[calibrator.threshold], 2),
        "strict_threshold_max_squad2_f1": strict,
        "strict_threshold_f1_covered": round(scores[strict], 2),
        "always_no_answer_f1_covered": round(100 * np.mean([float(not q.golds) for q in data_a]), 2),
        "declined_not_covered": round(float(declined_b), 4),
        "reliability_covered": reliability(calibrator, data_a),
        "operating_curve": curve,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    calibrator.save(out)
    log(
        f"threshold {calibrator.threshold}: SQuAD 2.0 F1 {scores[calibrator.threshold]:.1f} on A, "
        f"declined {declined_b:.1%} of B"
    )
    return calibrator


def _sha(path: str) -> str:
    from rag.reader.train import sha256_file

    return sha256_file(path)
