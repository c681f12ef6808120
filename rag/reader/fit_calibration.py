"""Fit the no-answer calibrator on held-out *training* articles (never the validation ones).

Two settings are measured, both with the service's own retrieval and reader:

A. covered: the corpus holds the seed, the 24 articles the reader trained on, and the 4 held-out calibration
   articles; the questions are the calibration articles' own (answerable and unanswerable, SQuAD 2.0 style).
B. not covered: the same corpus without the 4 calibration articles, asked a sample of the same questions,
   none of which it can answer any more (the articles do not cover the topic: the "off-topic" case). The corpus
   is as large as A's, and every feature is corpus-independent, so B teaches topic evidence, not corpus size.

The ranker is fitted on every candidate answer of A and B, the decider on each question's best-ranked one
(label: F1 >= 0.5 against a gold answer of an answerable question in A). The threshold follows
``choose_threshold``: the best expected SQuAD 2.0 F1 over A and B together, among thresholds that decline at
most ``MAX_WRONG_ABSTENTIONS`` of A's answerable questions.
"""

from __future__ import annotations

import hashlib
import json
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
MAX_WRONG_ABSTENTIONS = 0.10
THRESHOLD_RULE = (
    "the threshold with the best SQuAD 2.0 F1 over the held-out questions (A: answerable and adversarial "
    "unanswerable; B: not covered by the corpus) among those that decline at most "
    f"{MAX_WRONG_ABSTENTIONS:.0%} of A's answerable questions"
)


def choose_threshold(curve: Sequence[dict]) -> float:
    """The answer/no-answer policy: the best expected F1 on a mix of answerable, adversarial unanswerable and
    not-covered questions, under a cap on wrong abstentions (a user is served worse by a declined answerable
    question than the F1 arithmetic says: they have nothing to read)."""
    allowed = [row for row in curve if row["answerable_declined_covered"] <= MAX_WRONG_ABSTENTIONS]
    if not allowed:
        allowed = [min(curve, key=lambda row: row["threshold"])]
    return float(max(allowed, key=lambda row: (row["squad2_f1_mix"], -row["threshold"]))["threshold"])


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


_DECIDED: dict[tuple[int, int], tuple[int, float]] = {}


def decision(calibrator: Calibrator, q: QuestionRows) -> tuple[int, float]:
    """(the answer's row, its score): the best-ranked candidate and the decider's probability for it
    (memoised per calibrator and question: the threshold grid asks the same thing many times)."""
    key = (id(calibrator), id(q))
    if key not in _DECIDED:
        if not q.rows:
            _DECIDED[key] = (-1, 0.0)
        else:
            best = int(np.argmax(calibrator.rank(q.rows)))
            _DECIDED[key] = (best, float(calibrator.probability([q.rows[best]])[0]))
    return _DECIDED[key]


def squad2_f1(calibrator: Calibrator, data: Sequence[QuestionRows], threshold: float) -> float:
    total = 0.0
    for q in data:
        best, prob = decision(calibrator, q)
        if best >= 0 and prob >= threshold:
            total += f1_score(q.texts[best], q.golds) if q.golds else 0.0
        else:
            total += float(not q.golds)
    return 100 * total / max(1, len(data))


def _declined(calibrator: Calibrator, data: Sequence[QuestionRows], threshold: float) -> float:
    if not data:
        return float("nan")
    return float(np.mean([float(decision(calibrator, q)[1] < threshold or not q.rows) for q in data]))


def risk_coverage(calibrator: Calibrator, data: Sequence[QuestionRows], thresholds: Sequence[float]) -> list[dict]:
    """For answerable questions: the share answered at each threshold, and the share of those answered right."""
    decided = [decision(calibrator, q) for q in data if q.golds]
    right = [bool(q.rows) and q.labels[b] == 1 for q, (b, _) in zip([q for q in data if q.golds], decided, strict=True)]
    out = []
    for t in thresholds:
        answered = [r for (b, p), r in zip(decided, right, strict=True) if b >= 0 and p >= t]
        out.append(
            {
                "threshold": t,
                "answered": round(len(answered) / max(1, len(decided)), 4),
                "accuracy": round(float(np.mean(answered)), 4) if answered else None,
            }
        )
    return out


def reliability(calibrator: Calibrator, data: Sequence[QuestionRows], bins: int = 10) -> list[dict]:
    """Top answer's probability against how often it is right, in equal-width bins."""
    probs, right = [], []
    for q in data:
        best, prob = decision(calibrator, q)
        if best < 0:
            continue
        probs.append(prob)
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
    reader_sha256: str | None = None,
    log: Callable[[str], None] = print,
) -> Calibrator:
    _DECIDED.clear()  # keyed by object ids, which a new fit may reuse
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
    key = _rows_key(pipeline, reader_sha256)
    data_a = _cached(cache, f"rows-covered-{key}.json", lambda: collect(pipeline, index_a, questions, True, log), log)

    rng = random.Random(seed)
    sample = rng.sample(questions, min(not_covered_sample, len(questions)))
    fit_only = [a for a in train if a["title"] not in held_out]
    log(f"B (not covered): corpus = seed + the {len(fit_only)} other training articles; {len(sample)} of the questions")
    index_b = build_index(
        seed_docs + squad_documents({"data": fit_only}), pipeline, settings, cache / "not-covered" if cache else None
    )
    data_b = _cached(cache, f"rows-not-covered-{key}.json", lambda: collect(pipeline, index_b, sample, False, log), log)

    rows = [r for q in data_a + data_b for r in q.rows]
    labels = [y for q in data_a + data_b for y in q.labels]
    owners = [i for i, q in enumerate(data_a + data_b) for _ in q.rows]
    calibrator = Calibrator.fit(rows, labels, owners)
    calibrator.reader_sha256 = reader_sha256
    grid = [round(float(t), 3) for t in np.arange(0.01, 0.951, 0.005)]
    scores = {t: squad2_f1(calibrator, data_a, t) for t in grid}
    mix = {t: squad2_f1(calibrator, data_a + data_b, t) for t in grid}
    curve = [
        {
            "threshold": t,
            "squad2_f1_mix": round(mix[t], 2),
            "squad2_f1_covered": round(scores[t], 2),
            "answerable_declined_covered": round(_declined(calibrator, [q for q in data_a if q.golds], t), 4),
            "unanswerable_declined_covered": round(_declined(calibrator, [q for q in data_a if not q.golds], t), 4),
            "declined_not_covered": round(_declined(calibrator, data_b, t), 4),
        }
        for t in grid
    ]
    calibrator.threshold = choose_threshold(curve)
    strict = max(grid, key=lambda t: (scores[t], -abs(t - 0.5)))
    declined_b = _declined(calibrator, data_b, calibrator.threshold)
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
        "risk_coverage_covered": risk_coverage(calibrator, data_a, grid),
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
    from rag.checksums import sha256_file

    return sha256_file(path)


def _rows_key(pipeline: QAPipeline, reader_sha256: str | None) -> str:
    """What the collected rows depend on: the reader, its weights, the passages read, the feature set."""
    from rag.reader.calibration import FEATURES

    raw = json.dumps([pipeline.reader_kind, reader_sha256, pipeline.settings.read_k, list(FEATURES)])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _cached(
    cache: Path | None, name: str, compute: Callable[[], list[QuestionRows]], log: Callable[[str], None]
) -> list[QuestionRows]:
    """The reader's outputs for a question set, kept in ``cache`` so that a refit (another threshold rule,
    another regulariser) does not read every question again."""
    path = cache / name if cache else None
    if path is not None and path.is_file():
        log(f"  reader outputs read back from {path}")
        return [
            QuestionRows([tuple(r) for r in q["rows"]], q["texts"], q["labels"], tuple(q["golds"]))
            for q in json.loads(path.read_text())
        ]
    data = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps([{"rows": q.rows, "texts": q.texts, "labels": q.labels, "golds": q.golds} for q in data])
        )
        tmp.replace(path)
    return data
