"""Filtered /search: latency with a document filter that keeps about 1%, 10% and 100% of the chunks, against the
unfiltered search, on the same questions in the same run.

Library calls (``Engine.search``, what the /search routes call), not HTTP. Every question is first searched once
unfiltered, untimed, so that its embedding is in the query cache for all four variants alike: the figures
compare retrieval, not embedding. The variants take turns per question (the order rotates), so background load
falls on each alike.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from benchmark.corpora import Question
from benchmark.queries import SEARCH_K
from benchmark.records import Latency, ratio, timed_ms
from rag.dense import EXACT_ROWS
from rag.engine import Engine
from rag.evaluation.metrics import percentile
from rag.filters import Filters, select
from rag.retrieval import OVERFETCH_SHARE

SHARES = (0.01, 0.10, 1.0)


@dataclass(frozen=True, slots=True)
class FilteredSearch:
    """One variant: the filter (None: unfiltered), what it keeps, how the dense side searches it, its latency."""

    label: str
    documents: int
    chunks: int
    share: float  # of the chunks
    dense_path: str
    select_ms: float | None  # the first call with this filter: the selection is built (then cached)
    latency: Latency
    retrieve_p50: float
    unfiltered_p50: float

    @property
    def vs_unfiltered(self) -> float | None:
        return ratio(self.latency.p50, self.unfiltered_p50)


def document_filter(engine: Engine, share: float, seed: int = 0) -> Filters:
    """Documents drawn at random until their chunks come closest to ``share`` of the corpus (at least one)."""
    snap = engine.snapshot
    counts: dict[str, int] = {}
    for chunk in snap.chunks:
        counts[chunk.doc_id] = counts.get(chunk.doc_id, 0) + 1
    total = len(snap.chunks)
    if share >= 1.0:
        return Filters(document_ids=tuple(counts))
    ids = sorted(counts)
    random.Random(seed).shuffle(ids)
    kept: list[str] = []
    chunks = 0
    for doc_id in ids:
        if abs(chunks + counts[doc_id] - share * total) < abs(chunks - share * total):
            kept.append(doc_id)
            chunks += counts[doc_id]
    if not kept:
        kept = [min(ids, key=lambda d: abs(counts[d] - share * total))]
    return Filters(document_ids=tuple(kept))


def filtered_search(engine: Engine, runs: Sequence[Sequence[Question]], log=print) -> list[FilteredSearch]:
    snap = engine.snapshot
    total = len(snap.chunks)
    variants: list[tuple[str, Filters | None]] = [("unfiltered", None)]
    variants += [(f"~{share:.0%} of chunks", document_filter(engine, share)) for share in SHARES]
    built: dict[str, float | None] = {"unfiltered": None}
    for label, f in variants[1:]:
        assert f is not None
        built[label] = timed_ms(select, snap, f)[0]  # a new filter: the selection is computed here, once
    times: dict[str, list[list[float]]] = {label: [] for label, _ in variants}
    retrieve: dict[str, list[float]] = {label: [] for label, _ in variants}
    for questions in runs:
        for label in times:
            times[label].append([])
        for i, q in enumerate(questions):
            engine.search(q.text, SEARCH_K)  # the embedding into the cache, for every variant alike
            turn = variants[i % len(variants) :] + variants[: i % len(variants)]
            for label, f in turn:
                ms, (_, timings, _) = timed_ms(engine.search, q.text, SEARCH_K, f)
                times[label][-1].append(ms)
                retrieve[label].append(timings["retrieve"])
    unfiltered = Latency.of_runs(times["unfiltered"])
    out = []
    for label, f in variants:
        rows = total if f is None else len(select(snap, f).rows)
        if f is None or rows == total:
            path = "unfiltered"
        elif rows <= EXACT_ROWS and len(snap.vectors) == total:
            path = "exact product"
        elif rows / total >= OVERFETCH_SHARE:
            path = "deeper unfiltered, cut"
        else:
            path = "FAISS id selector"
        x = FilteredSearch(
            label=label,
            documents=len(snap.documents) if f is None else len(select(snap, f).documents),
            chunks=rows,
            share=rows / total if total else 0.0,
            dense_path=path,
            select_ms=built[label],
            latency=Latency.of_runs(times[label]),
            retrieve_p50=percentile(retrieve[label], 50),
            unfiltered_p50=unfiltered.p50,
        )
        log(f"filtered /search {label}: {rows} chunks ({x.share:.1%}), p50 {x.latency.p50:.2f} ms, {path}")
        out.append(x)
    return out
