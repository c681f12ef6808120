"""One shard of a sharded index served by its own processes: what a replica does for the router.

A replica opens its shard's folder (``DIR/shard-NNN``, an ordinary index) with an ``Engine`` that holds the
embedder and no reader, and follows the shard's commits (``Engine.watch_commits``: another replica's write is
loaded within about a second plus the load). A question costs the router three calls to a shard, none of which
sends a chunk's text unless it is among the fused best:

1. ``first``: this shard's BM25 statistics for the query's terms (chunk count, total length, document
   frequencies) and its dense candidates;
2. ``lexical``: its BM25 candidates scored with the whole index's statistics (the router's sum of step 1), so
   the scores equal one BM25 over every shard's chunks, as ``ShardedIndex`` scores them in one process;
3. ``chunks``: the chunks (and their documents) of the fused best keys it owns (a key's owner is
   ``key // KEY_SPACE``).

Each read takes ``at_least``, the generation of the router's last write to this shard: a replica behind it
loads the newer commit before it answers, so a router reads its own writes whichever replica it reaches.

Writes go to the replica of the shard that owns the document (rag/shards.py ``shard_of``), through
``Engine.write``: the same segment, commit and write-lock path as one machine, so replicas of one shard (which
share its folder) serialise on the folder's lock. The top-level ``manifest.json`` is then rewritten under the
sharded folder's own lock, so the folder stays loadable as one ``ShardedIndex``.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from rag.engine import Engine
from rag.filters import Filters, document_page
from rag.retrieval import NOTHING, Ranked, candidates
from rag.settings import Settings
from rag.shards import shard_name, write_manifest
from rag.store import CorpusIndex, write_lock
from rag.store.search import TermStats, as_multi
from rag.types import Chunk, Document, Embeddings, IngestReport


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """Who answered and what it serves (the router's counts, and a write's visibility on every replica)."""

    number: int
    replica: str
    generation: int
    documents: int
    chunks: int


def plain(doc: Document) -> Document:
    """A document with its text in memory (a stored one reads it from a file that only this machine has; its
    copy is a plain ``Document``, rag/store/texts.py)."""
    return replace(doc)


class ShardServer:
    """Shard ``number`` of ``count`` in the sharded folder ``folder``, read and written for a router."""

    def __init__(self, engine: Engine, folder: str | Path, number: int, count: int) -> None:
        self.engine = engine
        self.folder = Path(folder)
        self.number = number
        self.count = count
        self.replica = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._catching_up = threading.Lock()

    @classmethod
    def open(cls, folder: str | Path, number: int, count: int, settings: Settings) -> ShardServer:
        """A replica's server: the shard's engine (embedder, no reader), following the shard's commits."""
        shard_settings = settings.model_copy(update={"index_dir": Path(folder) / shard_name(number)})
        engine = Engine.open(shard_settings, read=False)
        engine.watch_commits()
        return cls(engine, folder, number, count)

    def _snapshot(self, at_least: int = 0) -> CorpusIndex:
        """The shard's snapshot, at generation ``at_least`` at least: a router that wrote through another replica
        reads its own writes (this replica loads the newer commit now instead of within the next second)."""
        snap = self.engine.snapshot
        if snap.generation < at_least:
            with self._catching_up:
                snap = self.engine.snapshot
                if snap.generation < at_least:
                    self.engine.reload(reuse=snap)
                    snap = self.engine.snapshot
        return snap

    def info(self) -> ShardInfo:
        snap = self.engine.snapshot
        return ShardInfo(self.number, self.replica, snap.generation, len(snap.documents), len(snap.chunks))

    # ------------------------------------------------------------------------------------------- reads

    def first(
        self, query: str, vector: Embeddings, depth: int, fusion: str, filters: Filters | None, at_least: int = 0
    ) -> tuple[TermStats, Ranked]:
        """This shard's BM25 statistics for ``query`` and its ``depth`` best dense candidates."""
        snap = self._snapshot(at_least)
        stats = as_multi(snap.lexical).term_stats(query) if fusion in ("rrf", "lexical") else TermStats(0, 0.0, {})
        dense = candidates(snap, query, vector, depth, "dense", filters)[0] if fusion in ("rrf", "dense") else NOTHING
        return stats, dense

    def lexical(self, query: str, depth: int, filters: Filters | None, stats: TermStats, at_least: int = 0) -> Ranked:
        """This shard's ``depth`` best BM25 candidates, scored with the whole index's ``stats``."""
        snap = self._snapshot(at_least)
        _, found = candidates(snap, query, None, depth, "lexical", filters, lexical_stats=stats)
        return found

    def chunks(self, keys: Sequence[int], at_least: int = 0) -> list[tuple[Chunk, Document] | None]:
        """The chunks of ``keys`` with their documents (None for a key this replica does not hold: deleted since)."""
        snap = self._snapshot(at_least)
        out: list[tuple[Chunk, Document] | None] = []
        docs: dict[str, Document] = {}
        for key in keys:
            try:
                chunk = snap.chunk(int(key))
            except KeyError:
                out.append(None)
                continue
            if chunk.doc_id not in docs:
                docs[chunk.doc_id] = plain(snap.documents[chunk.doc_id])
            out.append((chunk, docs[chunk.doc_id]))
        return out

    def document(self, doc_id: str, at_least: int = 0) -> tuple[Document, list[Chunk]] | None:
        snap = self._snapshot(at_least)
        doc = snap.documents.get(doc_id)
        return None if doc is None else (plain(doc), snap.chunks_of(doc_id))

    def page(
        self, filters: Filters | None, cursor: str | None, limit: int, at_least: int = 0
    ) -> tuple[int, list[tuple[Document, int]]]:
        """How many documents ``filters`` keeps here, and the first ``limit`` after ``cursor`` in id order."""
        count, page, _ = document_page(self._snapshot(at_least), filters, cursor, limit)
        return count, [(plain(doc), chunks) for doc, chunks in page]

    # ------------------------------------------------------------------------------------------- writes

    def write(self, upserts: Sequence[Document], deletes: Sequence[str]) -> tuple[IngestReport, int]:
        """Apply and commit on this shard (its folder's write lock), then record it in the top manifest; the
        report, and the generation that holds the write (the router's reads ask for it at least)."""
        report = self.engine.write(upserts, deletes)
        if report.changed:
            with write_lock(self.folder):
                write_manifest(self.folder, self.count)
        return report, self.engine.snapshot.generation

    def close(self) -> None:
        self.engine.stop_watching()
