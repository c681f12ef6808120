"""A snapshot whose chunks live in other processes (shards served elsewhere): the interface retrieval and the
service read it through. ``rag.distributed.routing.RoutedIndex`` is the one implementation (shards as Ray Serve
deployments); it holds no segment, and every read goes to the shards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rag.errors import ReadOnlyIndex
from rag.store.index import CorpusIndex
from rag.types import Chunk, Document, Embeddings, IngestReport

if TYPE_CHECKING:  # (rag.filters reads the store)
    from rag.filters import Filters

#: Keys and scores, best first (one retriever's candidates over every shard).
Ranked = tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]


@dataclass(eq=False)
class RemoteIndex(CorpusIndex):
    """Searched through ``candidates`` (each retriever's best keys over the whole index) and ``chunks_at`` (the
    chunks of the fused best keys, read from the processes that hold them; None for one deleted meanwhile); written
    through ``write``."""

    def candidates(
        self, query: str, vector: Embeddings, depth: int, fusion: str, filters: Filters | None
    ) -> tuple[Ranked, Ranked]:
        raise NotImplementedError

    def chunks_at(self, keys: Sequence[int]) -> list[Chunk | None]:
        raise NotImplementedError

    def document_page(
        self, filters: Filters | None, cursor: str | None, limit: int
    ) -> tuple[int, list[tuple[Document, int]]]:
        """The documents ``filters`` keeps after ``cursor`` in id order (at most ``limit``, each with its chunk
        count), and how many it keeps in all."""
        raise NotImplementedError

    def write(self, upserts: Sequence[Document], deletes: Sequence[str]) -> IngestReport:
        raise NotImplementedError

    def apply(self, *args: Any, **kwargs: Any) -> tuple[CorpusIndex, Any]:
        raise ReadOnlyIndex("a remote index is written through its shards (write), not applied in this process")

    def save(self, folder: str | Path, *, locked: bool = False) -> Path:
        raise ReadOnlyIndex(f"a remote index's shards save their own commits, not into {folder}")
