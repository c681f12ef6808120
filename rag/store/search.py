"""Searching several segments (or shards) as one index, and a segment less its deleted documents.

Dense: every part is searched and the best ``k`` kept by score (exact for flat parts: the global top k lies in
the union of the parts' top k). BM25: the parts' term statistics are summed at query time, the document
frequency and the average length of the whole index, and every part's term counts are scored with them, so a
ranking does not depend on how the corpus happens to be split into segments or shards: the scores equal one
BM25 over all the chunks (up to float rounding).

Deleted documents (tombstones, rag/store/segment.py) stay in their segment's files until a merge writes it
again: ``LiveDense`` has FAISS skip their keys while it searches, and ``LiveBM25`` drops their rows from every
term's counts, so the whole index's statistics, and hence the scores, are those of the live chunks alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rag.dense import DenseIndex, KeySet
from rag.errors import ReadOnlyIndex
from rag.lexical import BM25Index, LexicalSettings, lucene_idf, top_rows
from rag.types import Embeddings


@dataclass(frozen=True, slots=True)
class TermStats:
    """What one BM25 score needs from the whole index: its chunk count, their total length, and the document
    frequency of each query term. Shards' stats add up to the stats of one index over all their chunks."""

    size: int
    total_length: float
    frequency: dict[str, int]

    def __add__(self, other: TermStats) -> TermStats:
        terms = self.frequency.keys() | other.frequency.keys()
        return TermStats(
            self.size + other.size,
            self.total_length + other.total_length,
            {t: self.frequency.get(t, 0) + other.frequency.get(t, 0) for t in sorted(terms)},
        )

    @property
    def average_length(self) -> float:
        return max(self.total_length / self.size, 1e-9) if self.size else 1e-9

    def idf(self) -> dict[str, float]:
        return {t: lucene_idf(n, self.size) for t, n in self.frequency.items()}


def best_by_score(
    parts: Sequence[tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The best ``k`` of several parts' (ids, scores) by score, ties by id: segments', shards', a router's."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    ids = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
    scores = np.concatenate([p[1] for p in parts]).astype(np.float32, copy=False)
    order = np.lexsort((ids, -scores))[:k]  # best score first, ties by id (a stable sort over one array)
    return ids[order], scores[order]


def as_multi(lexical: BM25Index) -> MultiBM25:
    """``lexical`` as a ``MultiBM25`` (one part when it is a single segment's), so it takes outside stats."""
    if isinstance(lexical, MultiBM25):
        return lexical
    return MultiBM25([lexical], [0], settings=lexical.settings)


class LiveDense(DenseIndex):
    """A segment's FAISS index less the keys of its deleted chunks (skipped while FAISS searches: exact)."""

    def __init__(self, base: DenseIndex, dead: KeySet) -> None:
        super().__init__(kind=base.kind, dim=base.dim, params=base.params, index=base.index)
        self.base, self.dead = base, dead

    @property
    def size(self) -> int:
        return self.base.size - len(self.dead)

    def search(
        self, query: Embeddings, k: int, keys: KeySet | npt.NDArray[np.int64] | None = None, *, excluded=None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if excluded is not None:
            raise ReadOnlyIndex("a segment's live view already excludes its deleted chunks")
        return self.base.search(query, k, keys, excluded=self.dead)

    def save(self, path: Path) -> None:
        raise ReadOnlyIndex("a segment's files are written once, deleted chunks included")


class LiveBM25(BM25Index):
    """A segment's BM25 arrays less the rows of its deleted chunks; live row ``i`` is base row ``rows[i]``.

    A term's counts are read back from the base arrays (``frequencies``) and the deleted rows dropped, so
    ``MultiBM25`` scores the live chunks with the live chunks' statistics (their count, document frequencies and
    average length), as one BM25 built over them alone would."""

    def __init__(self, base: BM25Index, rows: npt.NDArray[np.int64]) -> None:
        super().__init__(base.settings)
        self.base = base
        self.size = len(rows)
        self.lengths = base.lengths[rows]
        self.average_length = float(self.lengths.mean()) if len(self.lengths) else 0.0
        self._live_row = np.full(base.size, -1, dtype=np.int64)  # base row -> live row (-1: deleted)
        self._live_row[rows] = np.arange(len(rows), dtype=np.int64)

    def _live(self, found: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        rows = self._live_row[found[0]]
        keep = rows >= 0
        return rows[keep], found[1][keep]

    def document_frequency(self, term: str) -> int:
        return int(np.count_nonzero(self._live_row[self.base.postings(term)[0]] >= 0))

    def frequencies(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        return self._live(self.base.frequencies(term))

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """The base contributions of the live rows (scored with the base's statistics: for ``global_stats=False``
        measurements only)."""
        return self._live(self.base.postings(term))

    def search(self, query: str, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return MultiBM25([self], [0], settings=self.settings).search(query, k, rows)

    def save(self, folder: Path) -> None:
        raise ReadOnlyIndex("a segment's files are written once, deleted chunks included")


class MultiDense(DenseIndex):
    """Searches every part's FAISS index and keeps the best ``k`` by score."""

    def __init__(
        self, parts: Sequence[DenseIndex], key_ranges: Sequence[tuple[int, int]] | None = None, dim: int = 384
    ) -> None:
        kinds = sorted({p.kind for p in parts})
        super().__init__(kind="+".join(kinds) or "flat", dim=parts[0].dim if parts else dim, params={})
        self.params = {"parts": len(parts)}
        self.parts = list(parts)
        # The smallest and largest chunk key of each part: a filter's keys go only to the parts that hold them.
        self.key_ranges = list(key_ranges) if key_ranges is not None else None

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    def search(
        self,
        query: Embeddings,
        k: int,
        keys: KeySet | npt.NDArray[np.int64] | None = None,
        *,
        excluded: KeySet | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        if excluded is not None:  # (the parts are live views: they leave out their deleted chunks themselves)
            raise NotImplementedError("MultiDense.search takes no excluded keys: its parts exclude their own")
        if keys is None:
            found = [p.search(query, k) for p in self.parts if p.size]
        else:
            keys = keys if isinstance(keys, KeySet) else KeySet(keys)
            found = []
            for i, part in enumerate(self.parts):
                mine = keys.within(*self.key_ranges[i]) if self.key_ranges is not None else keys
                if part.size and len(mine):
                    found.append(part.search(query, k, keys=mine))
        return best_by_score(found, k)

    def save(self, path: Path) -> None:
        raise ReadOnlyIndex("a dense index over several parts is saved part by part")


class MultiBM25(BM25Index):
    """BM25 over several parts' arrays as one ranking; row ``offsets[i] + r`` is part ``i``'s row ``r``.

    ``global_stats`` (the default) scores with the whole index's document frequencies and average length;
    ``False`` merges each part's own scores (for measuring what that would cost)."""

    def __init__(
        self,
        parts: Sequence[BM25Index],
        offsets: Sequence[int],
        *,
        global_stats: bool = True,
        settings: LexicalSettings | None = None,
    ) -> None:
        super().__init__(settings or (parts[0].settings if parts else LexicalSettings()))
        self.parts = list(parts)
        self.offsets = list(offsets)
        self.size = sum(p.size for p in self.parts)
        self.global_stats = global_stats
        self.total_length = float(sum(float(p.lengths.sum()) for p in self.parts))

    def term_stats(self, query: str) -> TermStats:
        """This index's share of the statistics a BM25 score of ``query`` needs (summed over shards by a router)."""
        terms = set(self.tokenize(query))
        return TermStats(
            size=self.size,
            total_length=self.total_length,
            frequency={t: sum(p.document_frequency(t) for p in self.parts) for t in sorted(terms)},
        )

    def search(
        self, query: str, k: int, rows: np.ndarray | None = None, *, stats: TermStats | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` rows for ``query``; ``stats``: score with these statistics (a whole sharded index's,
        summed by a router) instead of this index's own."""
        tokens = self.tokenize(query)
        if self.size == 0 or not tokens or (rows is not None and not len(rows)):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        k1, b = self.settings.k1, self.settings.b
        terms = set(tokens)
        whole = self.global_stats or stats is not None  # scored with one index's statistics (else each part's own)
        if whole:
            counts = {t: [p.frequencies(t) for p in self.parts] for t in terms}
            if stats is None:
                stats = TermStats(
                    self.size, self.total_length, {t: sum(len(r) for r, _ in ps) for t, ps in counts.items()}
                )
            idf, avg = stats.idf(), stats.average_length
        else:
            counts = {t: [p.postings(t) for p in self.parts] for t in terms}
        # Each part scores its own rows and keeps its top k (what a shard server would do); the global top k is
        # inside the union of those. A repeated query term counts again, as in bm25s's own get_scores.
        found = []
        kept = None if rows is None else np.asarray(rows, dtype=np.int64)
        for i, (part, offset) in enumerate(zip(self.parts, self.offsets, strict=True)):
            if not part.size:
                continue
            scores = np.zeros(part.size, dtype=np.float32)
            for term in tokens:
                hit_rows, values = counts[term][i]
                if not len(hit_rows):
                    continue
                if whole:
                    norm = k1 * (1 - b + b * part.lengths[hit_rows] / avg)
                    scores[hit_rows] += (idf[term] * values / (values + norm)).astype(np.float32)
                else:
                    scores[hit_rows] += values
            mine = None  # a filter's rows in this part, counted from the part's first row
            if kept is not None:
                mine = kept[np.searchsorted(kept, offset) : np.searchsorted(kept, offset + part.size)] - offset
            top, top_scores = top_rows(scores, k, mine)
            found.append((offset + top, top_scores))
        return best_by_score(found, k)  # ties by row

    def save(self, folder: Path) -> None:
        raise ReadOnlyIndex("a BM25 index over several parts is saved part by part")
