"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates fused into one ranking.

Fusion is reciprocal rank fusion by default (RRF, Cormack et al. 2009: score = sum of w / (k + rank)), which
needs no score calibration between retrievers; the weights and k are configurable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt

from rag.dense import EXACT_ROWS, exact_search
from rag.errors import ValidationError
from rag.filters import Filters, Selection, select
from rag.store import CorpusIndex, RemoteIndex
from rag.store.remote import Ranked
from rag.store.search import TermStats, as_multi
from rag.types import Embeddings, Hit

FUSIONS = ("rrf", "dense", "lexical")
#: A filter that keeps at least this share of the chunks is searched unfiltered, ``OVERFETCH`` times deeper than
#: the share asks for, and cut to the kept chunks: an id selector's membership test on every vector costs more
#: than the vectors it skips at such shares (100k vectors: 50% kept, 15.6 ms with the selector against 8.0 ms
#: unfiltered). Too few kept in that deeper list falls through to the selector.
OVERFETCH_SHARE = 0.25
OVERFETCH = 2


@dataclass(frozen=True, slots=True)
class RetrievalSettings:
    # RRF k=5 and dense weight 0.5 (BM25 1.0): tuned on SQuAD 2.0 training articles and SciFact train queries
    # together (eval/tune_retrieval.py); the usual k=60 flattens the top ranks, which costs hit@1.
    fusion: str = "rrf"
    rrf_k: int = 5
    dense_weight: float = 0.5
    lexical_weight: float = 1.0
    depth: int = 50  # candidates taken from each retriever before fusion

    def __post_init__(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValidationError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.rrf_k < 1:
            raise ValidationError(f"rrf_k must be at least 1, got {self.rrf_k}")
        if self.dense_weight < 0 or self.lexical_weight < 0:
            raise ValidationError("fusion weights must not be negative")

    def as_dict(self) -> dict:
        return asdict(self)


#: No candidates (an empty filter, or a retriever the fusion does not use).
NOTHING: Ranked = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


def retrieve(
    index: CorpusIndex,
    query: str,
    query_vector: Embeddings,
    k: int,
    settings: RetrievalSettings = RetrievalSettings(),
    filters: Filters | None = None,
) -> list[Hit]:
    """The ``k`` best chunks for a query whose embedding is ``query_vector`` (shape (1, dim)); with
    ``filters``, the ``k`` best among the kept documents' chunks (each retriever searches only those). A remote
    index (shards in other processes) gathers the candidates and reads the chunks through its shards."""
    if not index.chunks:
        return []
    depth = max(k, settings.depth)
    if isinstance(index, RemoteIndex):
        (dense_keys, dense_scores), (lexical_keys, lexical_scores) = index.candidates(
            query, query_vector, depth, settings.fusion, filters
        )
    else:
        (dense_keys, dense_scores), (lexical_keys, lexical_scores) = candidates(
            index, query, query_vector, depth, settings.fusion, filters
        )
    dense = {int(key): (rank, float(s)) for rank, (key, s) in enumerate(zip(dense_keys, dense_scores, strict=True), 1)}
    lexical = {
        int(key): (rank, float(s)) for rank, (key, s) in enumerate(zip(lexical_keys, lexical_scores, strict=True), 1)
    }
    fused: dict[int, float] = {}
    for key, (rank, _) in dense.items():
        fused[key] = fused.get(key, 0.0) + settings.dense_weight / (settings.rrf_k + rank)
    for key, (rank, _) in lexical.items():
        fused[key] = fused.get(key, 0.0) + settings.lexical_weight / (settings.rrf_k + rank)
    if settings.fusion == "dense":
        fused = {key: score for key, (_, score) in dense.items()}
    elif settings.fusion == "lexical":
        fused = {key: score for key, (_, score) in lexical.items()}
    order = sorted(fused, key=lambda key: (-fused[key], key))[:k]
    chunks = index.chunks_at(order) if isinstance(index, RemoteIndex) else [index.chunk(key) for key in order]
    hits = []
    for key, chunk in zip(order, chunks, strict=True):
        if chunk is None:  # (a remote index's chunk deleted between the search and the read)
            continue
        d, lx = dense.get(key), lexical.get(key)
        hits.append(
            Hit(
                chunk=chunk,
                score=float(np.float32(fused[key])),
                dense_score=d[1] if d else None,
                lexical_score=lx[1] if lx else None,
                dense_rank=d[0] if d else None,
                lexical_rank=lx[0] if lx else None,
            )
        )
    return hits


def candidates(
    index: CorpusIndex,
    query: str,
    query_vector: Embeddings | None,
    depth: int,
    fusion: str = "rrf",
    filters: Filters | None = None,
    *,
    lexical_stats: TermStats | None = None,
) -> tuple[Ranked, Ranked]:
    """Each retriever's best ``depth`` chunk keys and scores (the dense one's, the lexical one's) for the fusion
    ``fusion`` asks for; ``lexical_stats``: BM25 with these statistics (a sharded index's, summed by a router)."""
    selection = None
    if filters is not None and not filters.is_empty:
        selection = select(index, filters)
        if not len(selection.rows):
            return NOTHING, NOTHING
        if selection.everything:
            selection = None  # the unfiltered search, at its speed
    dense, lexical = NOTHING, NOTHING
    if fusion in ("rrf", "dense") and index.dense is not None and len(index.chunks):
        if query_vector is None:
            raise ValidationError("a dense search needs the query's vector")
        dense = _dense_search(index, query_vector, depth, selection)
    if fusion in ("rrf", "lexical") and index.lexical is not None and len(index.chunks):
        rows = None if selection is None else selection.rows
        if lexical_stats is None:
            found, scores = index.lexical.search(query, depth, rows=rows)
        else:
            found, scores = as_multi(index.lexical).search(query, depth, rows=rows, stats=lexical_stats)
        keys = np.array([index.chunks.key_at(int(row)) for row in found], dtype=np.int64)
        lexical = (keys, np.asarray(scores, dtype=np.float32))
    return dense, lexical


def _dense_search(
    index: CorpusIndex, vector: Embeddings, depth: int, selection: Selection | None
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The best ``depth`` of the selection's chunks by the dense index: a small selection exactly, over its vectors
    (where the snapshot keeps them: a sharded index does not); a large one from a deeper unfiltered search when
    enough of that is kept (the best kept of an exact ranking are the best kept); else FAISS restricted to the
    selection's keys. An approximate index that finds too few kept vectors is completed the exact way."""
    assert index.dense is not None
    if selection is None:
        return index.dense.search(vector, depth)
    kept = len(selection.rows)
    wanted = min(depth, kept)
    have_vectors = index.has_vectors
    if have_vectors and kept <= EXACT_ROWS:
        return exact_search(vector, index.vectors_at(selection.rows), selection.keys.keys, depth)
    if selection.share >= OVERFETCH_SHARE:
        keys, scores = index.dense.search(vector, math.ceil(OVERFETCH * depth / selection.share))
        inside = selection.holds(keys)
        if inside.sum() >= wanted:
            return keys[inside][:depth], scores[inside][:depth]
    keys, scores = index.dense.search(vector, depth, keys=selection.keys)
    if have_vectors and len(keys) < wanted:
        return exact_search(vector, index.vectors_at(selection.rows), selection.keys.keys, depth)
    return keys, scores
