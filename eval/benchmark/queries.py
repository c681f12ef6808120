"""Queries in-process (engine calls), their floors (the bare model passes on the same questions), answer
quality with bootstrap intervals, and the query-embedding cache.

The floors, per question:

- /search: encode the query (tokenise + model + pool, no cache) and one FAISS search at the retrieval depth
  (on one OpenMP thread: the fastest way to run one query);
- /ask: that, plus the reader on the very passages /ask read: tokenise into windows and one forward pass
  (no span decoding, no calibration, no citation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from benchmark.corpora import Question
from benchmark.records import CacheEffect, Interval, Latency, Quality, QualityDifference, timed_ms
from rag.engine import Engine
from rag.evaluation.metrics import f1, percentile
from rag.types import AskResult, Hit

SEARCH_K = 10  # what GET /search returns by default
ASK_TOP_K = 5  # what POST /ask returns by default


@dataclass
class Observed:
    """What one system returned for one question: passages as (doc_id, start, end), top answer or None, and
    the stage timings it reported (ms)."""

    question: Question
    ms: float
    passages: list[tuple[str, int, int]]
    answer: str | None = None
    read: list[str] | None = None  # the passages the reader read (/ask)
    timings: dict[str, float] = field(default_factory=dict)
    score: float | None = None  # the top answer's score, where a threshold is still to be applied (the peer)


def hit_span(hit: Hit) -> tuple[str, int, int]:
    return hit.chunk.doc_id, hit.chunk.start, hit.chunk.end


def search_runs(engine: Engine, runs: Sequence[Sequence[Question]]) -> list[list[Observed]]:
    out = []
    for questions in runs:
        row = []
        for q in questions:
            ms, (hits, timings, _) = timed_ms(engine.search, q.text, SEARCH_K)
            row.append(Observed(q, ms, [hit_span(h) for h in hits], timings=dict(timings)))
        out.append(row)
    return out


def ask_runs(engine: Engine, runs: Sequence[Sequence[Question]]) -> list[list[Observed]]:
    read_k = engine.pipeline.settings.read_k
    out = []
    for questions in runs:
        row = []
        for q in questions:
            ms, result = timed_ms(engine.ask, q.text, ASK_TOP_K)
            assert isinstance(result, AskResult)
            row.append(
                Observed(
                    q,
                    ms,
                    [hit_span(h) for h in result.hits],
                    result.answers[0].text if result.answers else None,
                    [h.chunk.text for h in result.hits[:read_k]],
                    dict(result.timings_ms),
                )
            )
        out.append(row)
    return out


def latency(runs: Sequence[Sequence[Observed]]) -> Latency:
    return Latency.of_runs([[o.ms for o in run] for run in runs])


def stage_p50(rows: Sequence[Sequence[dict[str, float]]]) -> dict[str, float]:
    """p50 of each reported stage, over every call of every run."""
    keys = dict.fromkeys(k for run in rows for t in run for k in t)
    return {k: round(percentile([t[k] for run in rows for t in run if k in t], 50), 2) for k in keys}


def stages(runs: Sequence[Sequence[Observed]]) -> dict[str, float]:
    return stage_p50([[o.timings for o in run] for run in runs])


# ------------------------------------------------------------------------------------------------ floors


def search_floor_parts(engine: Engine, question: str) -> dict[str, float]:
    snap = engine.snapshot
    depth = max(SEARCH_K, engine.pipeline.retrieval.depth)
    encode_ms, vector = timed_ms(engine.embedder.encode, [question])  # encode(): no cache
    faiss_ms = timed_ms(one_thread_search, snap.dense, vector, depth)[0] if snap.dense is not None else 0.0
    return {"encode": encode_ms, "faiss": faiss_ms}


def one_thread_search(dense, vector, depth: int) -> None:
    """FAISS on one OpenMP thread: one query gains nothing from more, and beside other busy threads (ONNX
    Runtime's, another request's) OpenMP's hand-off costs ~10 ms where the search itself takes ~0.01 ms."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        dense.search(vector, depth)
    finally:
        faiss.omp_set_num_threads(threads)


def reader_floor_ms(engine: Engine, question: str, passages: Sequence[str]) -> float:
    """Tokenise into windows and one forward pass of the trained reader (the heuristic reader: its read())."""
    pipeline = engine.pipeline
    if pipeline.reader_kind != "trained":
        return timed_ms(pipeline.reader.read, question, list(passages))[0]
    from rag.reader.windows import make_windows, pad_batch

    reader = pipeline.reader

    def passes() -> None:
        windows = make_windows(
            reader.tokenizer,
            [question] * len(passages),
            list(passages),
            max_length=reader.max_length,
            stride=reader.stride,
        )
        if windows:
            reader.logits(pad_batch(windows))

    return timed_ms(passes)[0]


def floor(engine: Engine, runs: Sequence[Sequence[Observed]], *, read: bool) -> tuple[Latency, dict[str, float]]:
    """The floor of each observed call (/search, or /ask when ``read``): its latency and its parts' p50s."""
    parts: list[list[dict[str, float]]] = []
    for run in runs:
        row = []
        for o in run:
            p = search_floor_parts(engine, o.question.text)
            if read:
                p["read"] = reader_floor_ms(engine, o.question.text, o.read or [])
            row.append(p)
        parts.append(row)
    return Latency.of_runs([[sum(p.values()) for p in row] for row in parts]), stage_p50(parts)


# ------------------------------------------------------------------------------------------------ quality


def gold_rank(q: Question, passages: Sequence[tuple[str, int, int]]) -> int | None:
    """1-based rank of the first passage that overlaps the question's gold paragraph."""
    lo, hi = q.paragraph
    for rank, (doc, start, end) in enumerate(passages, 1):
        if doc == q.doc_id and start < hi and lo < end:
            return rank
    return None


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 13
METRICS = ("recall_at_5", "f1_squad2", "f1_answerable")


def ask_questions(engine: Engine, questions: Sequence[Question], *, ask: bool) -> tuple[list[Observed], list[Observed]]:
    """Each question once through search (for recall@5) and, with ``ask``, once through /ask (for F1)."""
    searched = search_runs(engine, [questions])[0]
    asked = ask_runs(engine, [questions])[0] if ask else []
    return searched, asked


def per_question(searched: Sequence[Observed], asked: Sequence[Observed]) -> dict[str, dict[str, float]]:
    """Each metric per question id: recall@5 from the search passages; SQuAD 2.0 F1 from /ask's top answer (an
    abstention is an empty answer, right on an unanswerable question); F1 answerable on answerable ones only."""
    out: dict[str, dict[str, float]] = {m: {} for m in METRICS}
    for o in searched:
        out["recall_at_5"][o.question.id] = float((r := gold_rank(o.question, o.passages)) is not None and r <= 5)
    for o in asked:
        score = f1(o.answer or "", o.question.answers)
        out["f1_squad2"][o.question.id] = score
        if o.question.answers:
            out["f1_answerable"][o.question.id] = score
    return out


def bootstrap(
    values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> Interval | None:
    """The mean and its 95% percentile-bootstrap interval over the questions (a fixed seed: reruns agree)."""
    if not values:
        return None
    x = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    means = x[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return Interval(float(x.mean()), float(lo), float(hi), len(x))


def quality(
    system: str, column: str, searched: Sequence[Observed], asked: Sequence[Observed], no_answer: str, note: str = ""
) -> Quality:
    per = per_question(searched, asked)
    return Quality(
        system=system,
        column=column,
        questions=len({o.question.id for o in (*searched, *asked)}),
        recall_at_5=bootstrap(list(per["recall_at_5"].values())),
        f1_squad2=bootstrap(list(per["f1_squad2"].values())),
        f1_answerable=bootstrap(list(per["f1_answerable"].values())),
        answered=float(np.mean([o.answer is not None for o in asked])) if asked else None,
        no_answer=no_answer,
        note=note,
    )


def differences(
    column: str,
    ours: tuple[Sequence[Observed], Sequence[Observed]],
    theirs: tuple[Sequence[Observed], Sequence[Observed]],
) -> list[QualityDifference]:
    """Ours minus Haystack per metric, over the questions both answered: a paired bootstrap (each resample
    draws the same questions for both)."""
    a, b = per_question(*ours), per_question(*theirs)
    out = []
    for metric in METRICS:
        ids = [q for q in a[metric] if q in b[metric]]
        diff = bootstrap([a[metric][q] - b[metric][q] for q in ids])
        if diff is not None:
            out.append(QualityDifference(column, metric, diff))
    return out


def thresholded(asked: Sequence[Observed], threshold: float) -> list[Observed]:
    """Answers kept where their score reaches ``threshold``, else abstentions."""
    return [replace(o, answer=o.answer if o.score is not None and o.score >= threshold else None) for o in asked]


# ------------------------------------------------------------------------------------------------ cache


def cache_effect(engine: Engine, questions: Sequence[Question]) -> CacheEffect:
    """Each (new) question twice through /search in-process; the second embedding comes from the LRU cache."""
    first, again, first_embed, again_embed = [], [], [], []
    for q in questions:
        ms, (_, timings, _) = timed_ms(engine.search, q.text, SEARCH_K)
        first.append(ms)
        first_embed.append(timings["embed"])
        ms, (_, timings, _) = timed_ms(engine.search, q.text, SEARCH_K)
        again.append(ms)
        again_embed.append(timings["embed"])
    return CacheEffect(
        questions=len(questions),
        first_ms=percentile(first, 50),
        repeat_ms=percentile(again, 50),
        first_embed_ms=percentile(first_embed, 50),
        repeat_embed_ms=percentile(again_embed, 50),
    )
