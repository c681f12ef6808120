"""Fit the calibration on held-out *training* articles (never the validation ones): the trust benchmark's questions.

The reader reads every question of the benchmark (rag/evaluation/trust.py: answerable and adversarial
unanswerable questions over the seed and all training articles, near misses whose answer sentence was removed,
questions whose article is left out of the corpus) open, with the service's own retrieval, and each candidate
becomes a row of features (rag/decide.py) labelled right or not (F1 >= 0.5 against a gold answer of
an answerable question). One logistic model over every row gives candidates their score; the threshold follows
``rag.evaluation.trust.THRESHOLD_RULE``; a second small model on one row per question says whether the passages
were about the question at all (``no_answer_reason``). The benchmark's figures come from a cross-fit: each
article's questions scored by a calibration fitted on the other articles. Reader outputs are cached per reader,
``RAG_READ_K`` and feature list, so a refit does not read every question again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.decide import Calibrator, Logistic, candidate_features, coverage_row
from rag.evaluation.metrics import f1 as f1_score
from rag.loaders import load_paths
from rag.offline.train import calibration_titles
from rag.pipeline import QAPipeline
from rag.sentences import sentence_around
from rag.squad import SquadQuestion, iter_questions, load_squad, select_articles
from rag.store import CorpusIndex, IndexSettings

RIGHT_F1 = 0.5  # an answer counts as right when its SQuAD F1 against a gold answer reaches this


@dataclass(frozen=True, slots=True)
class QuestionRows:
    rows: list[tuple[float, ...]]
    texts: list[str]
    labels: list[int]
    golds: tuple[str, ...]  # empty: the right response is no answer
    kind: str = "answerable"  # rag.evaluation.trust.KINDS
    article: str = ""  # the held-out article the question comes from (the folds of the cross-fit)
    question: str = ""
    # Each candidate's sentence and the span's place in it (for experiments with a sentence-level verifier).
    sentences: list[tuple[str, int, int]] = field(default_factory=list)


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
    kinds: Sequence[str],
    log: Callable[[str], None],
) -> list[QuestionRows]:
    """The reader's candidates for each question, with their features and labels (right or not)."""
    out = []
    started = time.perf_counter()
    for i, q in enumerate(questions):
        hits, _ = pipeline.search(index, q.question, pipeline.settings.read_k)
        passages = [h.chunk.text for h in hits]
        candidates = pipeline.read(q.question, passages)
        rows = candidate_features(candidates, hits, passages, q.question, pipeline.terms.tokenize)
        texts = [passages[c.hit_index][c.start : c.end] for c in candidates]
        golds = tuple(a.text for a in q.answers) if kinds[i] == "answerable" else ()
        labels = [int(bool(golds) and f1_score(t, golds) >= RIGHT_F1) for t in texts]
        sentences = []
        for c in candidates:
            passage = passages[c.hit_index]
            s_start, s_end = sentence_around(passage, c.start, c.end)
            sentences.append((passage[s_start:s_end], c.start - s_start, c.end - s_start))
        out.append(QuestionRows(rows, texts, labels, golds, kinds[i], q.title, q.question, sentences))
        if (i + 1) % 200 == 0:
            log(f"  {i + 1}/{len(questions)} questions, {(time.perf_counter() - started) / (i + 1) * 1000:.0f} ms each")
    return out


_DECIDED: dict[tuple[int, int], tuple[Calibrator, QuestionRows, int, float]] = {}


def decision(calibrator: Calibrator, q: QuestionRows) -> tuple[int, float]:
    """(the answer's row, its score): the best-ranked candidate and the decider's probability for it
    (memoised per calibrator and question: the threshold grid asks the same thing many times; each entry holds
    its calibrator and question, so their ids cannot be reused by new objects while the entry is there)."""
    key = (id(calibrator), id(q))
    entry = _DECIDED.get(key)
    if entry is None or entry[0] is not calibrator or entry[1] is not q:
        if not q.rows:
            best, prob = -1, 0.0
        else:
            best = int(np.argmax(calibrator.rank(q.rows)))
            prob = float(calibrator.probability([q.rows[best]])[0])
        entry = _DECIDED[key] = (calibrator, q, best, prob)
    return entry[2], entry[3]


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


def collect_benchmark(
    pipeline: QAPipeline,
    squad_path: str,
    seeds: str | Path,
    *,
    cache: Path | None = None,
    not_covered_sample: int = 400,
    seed: int = 13,
    reader_sha256: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[QuestionRows], list[str]]:
    """The reader's rows on every question of the trust benchmark (rag/evaluation/trust.py), read open over
    each kind's corpus as the service reads; and the held-out article titles. Cached per reader and settings."""
    from rag.evaluation.trust import TrustCorpus, build_corpora

    payload = load_squad(squad_path)
    train = select_articles(payload, "train")
    held_out = set(calibration_titles([a["title"] for a in train]))
    questions = list(iter_questions([a for a in train if a["title"] in held_out]))
    seed_docs = load_paths([seeds]).documents
    corpora = build_corpora(train, held_out, seed_docs, questions, not_covered_sample=not_covered_sample, seed=seed)
    settings = IndexSettings()
    key = _rows_key(pipeline, reader_sha256)
    data: list[QuestionRows] = []
    covered_index: CorpusIndex | None = None
    for corpus in corpora:
        log(f"{corpus.name}: {len(corpus.documents)} documents, {len(corpus.questions)} questions")
        if corpus.name in ("covered", "not-covered"):
            index = build_index(list(corpus.documents), pipeline, settings, cache / corpus.name if cache else None)
            if corpus.name == "covered":
                covered_index = index
        else:  # the covered corpus with a few articles changed: only those are embedded again
            assert covered_index is not None
            index, _ = covered_index.apply(list(corpus.documents), embedder=pipeline.embedder)

        def compute(index: CorpusIndex = index, corpus: TrustCorpus = corpus) -> list[QuestionRows]:
            return collect(pipeline, index, corpus.questions, corpus.kinds, log)

        data += _cached(cache, f"rows-{corpus.name}-{key}.json", compute, log)
    return data, sorted(held_out)


def fit(
    pipeline: QAPipeline,
    squad_path: str,
    seeds: str | Path,
    out: Path | None,
    *,
    cache: Path | None = None,
    not_covered_sample: int = 400,
    seed: int = 13,
    reader_sha256: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[Calibrator, dict]:
    """Fit the ranker, the decider and the threshold on every question of the trust benchmark; measure the
    benchmark by a cross-fit (each held-out article scored by a calibration fitted on the other three); write the
    calibration to ``out`` (None: measure only). Returns the calibration and the benchmark report."""
    from rag.evaluation.trust import MIX, THRESHOLD_RULE, operating_threshold, trust_report

    _DECIDED.clear()  # keyed by object ids, which a new fit may reuse
    data, held_out = collect_benchmark(
        pipeline,
        squad_path,
        seeds,
        cache=cache,
        not_covered_sample=not_covered_sample,
        seed=seed,
        reader_sha256=reader_sha256,
        log=log,
    )
    calibrator = fit_on(data)
    calibrator.reader_sha256 = reader_sha256
    decided = [decided_row(calibrator, q) for q in data]
    calibrator.threshold = operating_threshold(decided)
    report = trust_report(cross_fit(data), {"reader": pipeline.reader_kind, "read_k": pipeline.settings.read_k})
    counts = {k: sum(q.kind == k for q in data) for k in MIX}
    calibrator.fitted_on = {
        "reader": pipeline.reader_kind,
        "read_k": pipeline.settings.read_k,
        "reader_backend": reader_runtime(pipeline.reader),
        "squad_sha256": _sha(squad_path),
        "calibration_articles": held_out,
        "questions": counts,
        "candidates": sum(len(q.rows) for q in data),
        "right_means": f"SQuAD F1 >= {RIGHT_F1} against a gold answer",
        "threshold_rule": THRESHOLD_RULE,
        "mix": MIX,
        "reliability": reliability(calibrator, [q for q in data if q.kind in ("answerable", "unanswerable")]),
        "benchmark": {k: v for k, v in report.items() if k != "curve"},
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        calibrator.save(out)
    log(f"threshold {calibrator.threshold} ({THRESHOLD_RULE})")
    return calibrator, report


def reader_runtime(reader) -> str | None:
    """The runtime the reader ran on, as RAG_READER_BACKEND names it (None for the heuristic reader)."""
    if not hasattr(reader, "backend"):
        return None
    return "onnx-int8" if getattr(reader, "int8", False) else reader.backend


def fit_on(data: Sequence[QuestionRows]) -> Calibrator:
    """The ranker on every candidate row, and the coverage model (are the passages about the question?) on one
    row per question: not covered against the rest."""
    rows = [r for q in data for r in q.rows]
    labels = [y for q in data for y in q.labels]
    calibrator = Calibrator.fit(rows, labels)
    asked = [q for q in data if q.rows]
    calibrator.coverage = Logistic.fit(
        [coverage_row(q.rows[0]) for q in asked], [int(q.kind != "not_covered") for q in asked]
    )
    return calibrator


def decided_row(calibrator: Calibrator, q: QuestionRows):
    """The question as the service would answer it: its top answer's score, and whether that answer is right."""
    from rag.evaluation.trust import Decided

    best, prob = decision(calibrator, q)
    right = best >= 0 and q.labels[best] == 1
    f1 = f1_score(q.texts[best], q.golds) if best >= 0 and q.golds else 0.0
    return Decided(q.kind, q.article, prob, bool(right), f1)


def cross_fit(data: Sequence[QuestionRows]) -> list:
    """Each held-out article's questions decided by a calibration (and threshold) fitted on the other
    articles' questions only: the benchmark's figures are held out from the fit that produced them."""
    from dataclasses import replace

    from rag.evaluation.trust import operating_threshold

    out = []
    for article in sorted({q.article for q in data}):
        train = [q for q in data if q.article != article]
        calibrator = fit_on(train)
        threshold = operating_threshold([decided_row(calibrator, q) for q in train])
        out += [replace(decided_row(calibrator, q), threshold=threshold) for q in data if q.article == article]
    return out


def _sha(path: str) -> str:
    from rag.checksums import sha256_file

    return sha256_file(path)


def _rows_key(pipeline: QAPipeline, reader_sha256: str | None) -> str:
    """What the collected rows depend on: the reader, its weights, the passages read, the feature set."""
    from rag.decide import FEATURES

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
            QuestionRows(
                [tuple(r) for r in q["rows"]],
                q["texts"],
                q["labels"],
                tuple(q["golds"]),
                q["kind"],
                q["article"],
                q.get("question", ""),
                [tuple(x) for x in q.get("sentences", [])],  # type: ignore[misc]
            )
            for q in json.loads(path.read_text())
        ]
    data = compute()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                [
                    {
                        "rows": q.rows,
                        "texts": q.texts,
                        "labels": q.labels,
                        "golds": q.golds,
                        "kind": q.kind,
                        "article": q.article,
                        "question": q.question,
                        "sentences": q.sentences,
                    }
                    for q in data
                ]
            )
        )
        tmp.replace(path)
    return data


def cached_rows(cache: Path, key: str) -> list[QuestionRows]:
    """Every question's rows of one reader's collected benchmark (``rows-<corpus>-<key>.json`` under ``cache``),
    in the benchmark's order: for experiments on reader outputs already collected."""
    from rag.evaluation.trust import NEAR_MISS_ROUNDS

    names = ["covered", "not-covered", *(f"near-miss-{r + 1}" for r in range(NEAR_MISS_ROUNDS))]
    data: list[QuestionRows] = []
    for name in names:
        if (cache / f"rows-{name}-{key}.json").is_file():
            data += _cached(cache, f"rows-{name}-{key}.json", list, lambda m: None)
    return data
