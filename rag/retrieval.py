"""Hybrid retrieval: dense (FAISS) and lexical (BM25) candidates fused into one ranking.

Fusion is reciprocal rank fusion by default (RRF, Cormack et al. 2009: score = sum of w / (k + rank)), which
needs no score calibration between retrievers; the weights and k are configurable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rag.errors import ValidationError
from rag.store import CorpusIndex
from rag.types import Embeddings, Hit

FUSIONS = ("rrf", "dense", "lexical")


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


def retrieve(
    index: CorpusIndex, query: str, query_vector: Embeddings, k: int, settings: RetrievalSettings = RetrievalSettings()
) -> list[Hit]:
    """The ``k`` best chunks for a query whose embedding is ``query_vector`` (shape (1, dim))."""
    if not index.chunks:
        return []
    depth = max(k, settings.depth)
    dense: dict[int, tuple[int, float]] = {}
    lexical: dict[int, tuple[int, float]] = {}
    if settings.fusion in ("rrf", "dense") and index.dense is not None:
        keys, scores = index.dense.search(query_vector, depth)
        dense = {int(key): (rank, float(score)) for rank, (key, score) in enumerate(zip(keys, scores, strict=True), 1)}
    if settings.fusion in ("rrf", "lexical") and index.lexical is not None:
        rows, scores = index.lexical.search(query, depth)
        lexical = {
            index.chunks[int(row)].key: (rank, float(score))
            for rank, (row, score) in enumerate(zip(rows, scores, strict=True), 1)
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
    hits = []
    for key in order:
        d, lx = dense.get(key), lexical.get(key)
        hits.append(
            Hit(
                chunk=index.chunk(key),
                score=float(np.float32(fused[key])),
                dense_score=d[1] if d else None,
                lexical_score=lx[1] if lx else None,
                dense_rank=d[0] if d else None,
                lexical_rank=lx[0] if lx else None,
            )
        )
    return hits
