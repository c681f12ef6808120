"""`--scale`'s vectors: the interface a generator offers (the base set in seeded chunks, and queries), the
isotropic generator (``Synthetic``: clusters around random well-separated centres, the first one, which flatters
IVF), the choice between it and the fitted one (fitted_vectors.py), and the exact top 10 by chunked brute force.

Chunk ``i`` of a base set comes from its own seed, so the data never has to exist whole: one pass can
ground-truth it (``TopK``) and add it to the indexes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

DIM = 384
CHUNK = 250_000  # vectors per generated chunk


class VectorSource(Protocol):
    """What the benchmark needs of a generator: the base set in seeded chunks, and queries."""

    @property
    def name(self) -> str: ...

    @property
    def seed(self) -> int: ...

    def chunks(self, n: int) -> Iterator[tuple[int, np.ndarray]]: ...

    def queries(self, n: int) -> np.ndarray: ...

    def describe(self) -> dict: ...

    def note(self, queries: int) -> str:
        """One sentence for bench.md: what the vectors and the queries are."""
        ...


@dataclass(frozen=True, slots=True)
class Synthetic:
    """``centres`` random unit centres; a point is a centre plus isotropic noise of norm about ``noise``,
    renormalised. Queries come from the same distribution, from their own seed (never in the base set)."""

    name: ClassVar[str] = "isotropic"
    centres: int = 2048
    noise: float = 0.6
    seed: int = 13

    def describe(self) -> dict:
        return {"generator": self.name, "centres": self.centres, "noise": self.noise, "dim": DIM, "seed": self.seed}

    def note(self, queries: int) -> str:
        return (
            f"Data: {self.centres} random unit centres, points = centre + isotropic noise of norm {self.noise}, "
            f"renormalised; {queries} queries from the same distribution, exact top 10 by chunked brute force."
        )

    def _centres(self) -> np.ndarray:
        c = np.random.default_rng([self.seed, 0]).standard_normal((self.centres, DIM), dtype=np.float32)
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    def _points(self, rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
        x = centres[rng.integers(0, self.centres, n)]
        x += rng.standard_normal((n, DIM), dtype=np.float32) * np.float32(self.noise / math.sqrt(DIM))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def chunks(self, n: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first id, vectors) chunks of the base set."""
        centres = self._centres()
        for i, start in enumerate(range(0, n, CHUNK)):
            yield start, self._points(np.random.default_rng([self.seed, 1, i]), min(CHUNK, n - start), centres)

    def queries(self, n: int) -> np.ndarray:
        return self._points(np.random.default_rng([self.seed, 2]), n, self._centres())


class TopK:
    """Exact top-k by inner product, merged chunk by chunk (chunked brute force)."""

    def __init__(self, queries: np.ndarray, k: int = 10) -> None:
        self.q, self.k = queries, k
        self.ids = np.full((len(queries), k), -1, dtype=np.int64)
        self.scores = np.full((len(queries), k), -np.inf, dtype=np.float32)

    def add(self, first_id: int, x: np.ndarray) -> None:
        for s in range(0, len(x), 50_000):
            sims = self.q @ x[s : s + 50_000].T
            top = np.argpartition(-sims, self.k - 1, axis=1)[:, : self.k]
            cand_s = np.concatenate([self.scores, np.take_along_axis(sims, top, axis=1)], axis=1)
            cand_i = np.concatenate([self.ids, top + first_id + s], axis=1)
            order = np.argsort(-cand_s, axis=1)[:, : self.k]
            self.scores = np.take_along_axis(cand_s, order, axis=1)
            self.ids = np.take_along_axis(cand_i, order, axis=1)


def data_source(name: str) -> VectorSource:
    """``fitted`` (stored parameters, else fitted from the cached indexes; fitted_vectors.NoRealVectors when
    neither exists) or ``isotropic``."""
    if name == "isotropic":
        return Synthetic()
    if name == "fitted":
        from benchmark.fitted_vectors import Fitted

        return Fitted.load()
    raise ValueError(f"unknown --scale-data {name!r} (fitted or isotropic)")
