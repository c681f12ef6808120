"""BM25 over the chunks (bm25s), with English stemming and stop words; saved as plain npy/json files."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

_TOKEN = re.compile(r"(?u)\b\w+\b")


@dataclass(frozen=True, slots=True)
class LexicalSettings:
    # Tuned on SQuAD 2.0 training articles and SciFact train queries together (eval/tune_retrieval.py).
    k1: float = 0.9
    b: float = 0.5
    stemmer: str | None = "english"
    stopwords: str | None = "en"

    def as_dict(self) -> dict:
        return asdict(self)


class BM25Index:
    """BM25 scores over a fixed list of texts; row ``i`` is the i-th text given to ``build``."""

    def __init__(self, settings: LexicalSettings = LexicalSettings()) -> None:
        bm25s = _bm25s()

        self.settings = settings
        self._stopwords = frozenset(bm25s.stopwords.STOPWORDS_EN) if settings.stopwords == "en" else frozenset()
        self._stemmer = None
        if settings.stemmer:
            import Stemmer

            self._stemmer = Stemmer.Stemmer(settings.stemmer)
        self._bm25: Any = None
        self.size = 0
        #: Tokens per text (what BM25 normalises by); with them a term's frequency can be read back from its
        #: stored contribution, so that several indexes score as one (rag/store/search.py).
        self.lengths = np.zeros(0, dtype=np.int32)
        self.average_length = 0.0  # of ``lengths``, kept: each query term reads it back per part

    def tokenize(self, text: str) -> list[str]:
        words = [w for w in _TOKEN.findall(text.lower()) if w not in self._stopwords]
        return self._stemmer.stemWords(words) if self._stemmer else words

    def build(self, texts: Sequence[str]) -> BM25Index:
        bm25s = _bm25s()

        # numpy, not scipy, builds the matrix in every install (the same arrays; scipy is not a serving dependency).
        self._bm25 = bm25s.BM25(k1=self.settings.k1, b=self.settings.b, csc_backend="numpy")
        self.size = len(texts)
        tokens = [self.tokenize(t) for t in texts]
        self.lengths = np.array([len(t) for t in tokens], dtype=np.int32)
        self.average_length = float(self.lengths.mean()) if len(self.lengths) else 0.0
        if texts:
            self._bm25.index(tokens, show_progress=False)
        return self

    def search(self, query: str, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows and scores of the best ``k`` texts with a positive score, best first; with ``rows``, the best
        ``k`` of those rows (scored as part of the whole corpus: the IDF is the corpus's)."""
        tokens = self.tokenize(query)
        if self._bm25 is None or self.size == 0 or not tokens or (rows is not None and not len(rows)):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = self._bm25.get_scores(tokens)
        return top_rows(scores, k, rows)

    def postings(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding one already tokenised ``term`` and its BM25 contribution to each (IDF included); the
        number of rows is the term's document frequency. A sharded index rescales these by a global IDF."""
        if self._bm25 is None or self.size == 0 or term not in self._bm25.vocab_dict:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = self._bm25.scores
        t = self._bm25.vocab_dict[term]
        lo, hi = int(scores["indptr"][t]), int(scores["indptr"][t + 1])
        return scores["indices"][lo:hi].astype(np.int64), scores["data"][lo:hi].astype(np.float32)

    def document_frequency(self, term: str) -> int:
        """How many rows hold one already tokenised ``term`` (its postings' length: nothing is read)."""
        if self._bm25 is None or self.size == 0 or term not in self._bm25.vocab_dict:
            return 0
        indptr = self._bm25.scores["indptr"]
        t = self._bm25.vocab_dict[term]
        return int(indptr[t + 1]) - int(indptr[t])

    def frequencies(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        """Rows holding one already tokenised ``term`` and its count in each, read back from the stored
        contributions: c = idf * tf / (tf + k1 * (1 - b + b * len / avg_len)) (bm25s's "lucene" scoring)."""
        rows, contrib = self.postings(term)
        if not len(rows):
            return rows, contrib
        idf = lucene_idf(len(rows), self.size)
        k1, b = self.settings.k1, self.settings.b
        norm = k1 * (1 - b + b * self.lengths[rows] / max(self.average_length, 1e-9))
        ratio = np.minimum(contrib.astype(np.float64) / idf, 1 - 1e-12)
        return rows, np.rint(ratio * norm / (1 - ratio)).astype(np.float32)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if self._bm25 is not None and self.size:
            self._bm25.save(str(folder), show_progress=False)
        np.save(folder / "lengths.npy", self.lengths, allow_pickle=False)

    def load(self, folder: Path, size: int) -> BM25Index:
        bm25s = _bm25s()

        self.size = size
        # Memory-mapped: a query reads only its terms' postings (contiguous per term in the CSC arrays).
        self._bm25 = bm25s.BM25.load(str(folder), load_corpus=False, mmap=True) if size else None
        self.lengths = np.load(folder / "lengths.npy", allow_pickle=False)
        self.average_length = float(self.lengths.mean()) if len(self.lengths) else 0.0
        return self


def lucene_idf(df: int, n: int) -> float:
    """bm25s's default ('lucene') IDF: log(1 + (N - df + 0.5) / (df + 0.5))."""
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def top_rows(scores: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` positive ``scores`` (only those at ``rows`` when given) as (rows, scores), best first."""
    candidates = scores if rows is None else scores[rows]
    k = min(k, len(candidates))
    if k == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    top = np.argpartition(-candidates, k - 1)[:k]
    top = top[np.argsort(-candidates[top], kind="stable")]
    top = top[candidates[top] > 0]
    found = top if rows is None else rows[top]
    return found.astype(np.int64), candidates[top].astype(np.float32)


def _bm25s():
    """bm25s, imported on first use; it sets its own logger to DEBUG on import, which reaches the user's
    terminal once any library has configured the root logger."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s
