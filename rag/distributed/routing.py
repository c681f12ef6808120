"""The router: a sharded index whose shards are served by other processes, read as one snapshot.

``RoutedIndex`` holds no chunk. A question asks every shard twice and the owners of the best passages once
(rag/distributed/shard_server.py): first each shard's BM25 statistics for the query's terms and its dense
candidates, then its BM25 candidates scored with the summed statistics; the router merges each retriever's
candidates by score as ``MultiDense`` and ``MultiBM25`` merge a one-process ``ShardedIndex``'s (ties by key:
keys ascend with rows there), and ``rag.retrieval.retrieve`` fuses them with the same RRF. So the ranking equals
the one-process sharded index's, and only the fused best chunks' text crosses the network.

A shard is reached through a ``ShardClient`` (``call(method, *args)`` returns a pending call): a Ray Serve
handle (rag/distributed/serving.py) or, in tests, a ``ShardServer`` in this process (``LocalShard``). Calls to
every shard are started before any is waited for.

A router reads its own writes: each call carries the generation of its last write to that shard, which a
replica not yet at it loads first. Documents read for answers (title, text for the citation) are kept a few
seconds (``DOC_TTL_S``), so one answer's citations read each document once; this router's own writes drop them
at once, another router's are seen when they expire.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from rag.distributed.shard_server import ShardInfo, ShardServer
from rag.filters import Filters
from rag.shards import KEY_SPACE, shard_of
from rag.store import RemoteIndex
from rag.store.remote import Ranked
from rag.store.search import TermStats, best_by_score
from rag.types import Chunk, Document, Embeddings, IngestReport

#: How long the shards' counts (documents, chunks, generations) are reused, and a fetched document.
INFO_TTL_S = 1.0
DOC_TTL_S = 5.0
DOC_CACHE = 512


class Pending(Protocol):
    def result(self) -> Any: ...


class ShardClient(Protocol):
    def call(self, method: str, *args: Any, **kwargs: Any) -> Pending: ...


@dataclass
class Done:
    """A call that already ran (in this process): its value, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


@dataclass
class LocalShard:
    """A shard served in this process (tests; the router's code path without Ray)."""

    server: ShardServer

    def call(self, method: str, *args: Any, **kwargs: Any) -> Pending:
        try:
            return Done(getattr(self.server, method)(*args, **kwargs))
        except Exception as exc:  # (raised where a remote call's result would raise it)
            return Done(error=exc)


def gather(calls: Sequence[Pending]) -> list[Any]:
    """Every call's result (all were started before the first is waited for)."""
    return [c.result() for c in calls]


def merge_reports(reports: Sequence[IngestReport]) -> IngestReport:
    joined = IngestReport()
    for r in reports:
        joined = replace(
            joined,
            added=joined.added + r.added,
            replaced=joined.replaced + r.replaced,
            unchanged=joined.unchanged + r.unchanged,
            deleted=joined.deleted + r.deleted,
            skipped=joined.skipped + r.skipped,
            chunks_embedded=joined.chunks_embedded + r.chunks_embedded,
            seconds=max(joined.seconds, r.seconds),
        )
    return joined


class RemoteDocuments(Mapping[str, Document]):
    """The routed index's documents: read from the owner shard on demand (kept ``DOC_TTL_S``)."""

    def __init__(self, index: RoutedIndex) -> None:
        self.index = index
        self._cache: OrderedDict[str, tuple[float, Document]] = OrderedDict()

    def remember(self, doc: Document) -> None:
        self._cache[doc.id] = (time.monotonic(), doc)
        self._cache.move_to_end(doc.id)
        while len(self._cache) > DOC_CACHE:
            self._cache.popitem(last=False)

    def forget(self, doc_ids: Sequence[str]) -> None:
        for doc_id in doc_ids:
            self._cache.pop(doc_id, None)

    def __getitem__(self, doc_id: str) -> Document:
        kept = self._cache.get(doc_id)
        if kept is not None and time.monotonic() - kept[0] < DOC_TTL_S:
            return kept[1]
        found = self.index.fetch_document(doc_id)
        if found is None:
            raise KeyError(doc_id)
        return found[0]

    def __len__(self) -> int:
        return sum(i.documents for i in self.index.infos())

    def __iter__(self) -> Iterator[str]:
        cursor = None
        while True:
            _, page = self.index.document_page(None, cursor, 1000)
            if not page:
                return
            yield from (doc.id for doc, _ in page)
            cursor = page[-1][0].id


class RemoteRows:
    """Stands for the routed index's rows where only their number is read (``len``; retrieval's empty check)."""

    def __init__(self, index: RoutedIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return sum(i.chunks for i in self.index.infos())


@dataclass(eq=False)
class RoutedIndex(RemoteIndex):
    """Every shard of a sharded index, each served elsewhere (``clients[i]`` serves shard ``i``)."""

    clients: list[ShardClient] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.documents = RemoteDocuments(self)  # type: ignore[assignment]
        self.chunks = RemoteRows(self)  # type: ignore[assignment]
        self._infos: list[ShardInfo] = []
        self._infos_at = float("-inf")
        self._written: dict[int, int] = {}  # shard -> the generation of this router's last write to it

    def _call(self, number: int, method: str, *args: Any) -> Pending:
        """Shard ``number``'s ``method``, answered at the generation of this router's last write there at least."""
        return self.clients[number].call(method, *args, at_least=self._written.get(number, 0))

    @property
    def count(self) -> int:
        return len(self.clients)

    def infos(self, *, fresh: bool = False) -> list[ShardInfo]:
        """One replica of every shard: its counts and generation (reused for ``INFO_TTL_S``)."""
        if fresh or time.monotonic() - self._infos_at > INFO_TTL_S:
            self._infos = gather([c.call("info") for c in self.clients])
            self._infos_at = time.monotonic()
            self.generation = sum(i.generation for i in self._infos)
        return self._infos

    # ------------------------------------------------------------------------------------------- reads

    def candidates(
        self, query: str, vector: Embeddings, depth: int, fusion: str, filters: Filters | None
    ) -> tuple[Ranked, Ranked]:
        firsts = gather([self._call(n, "first", query, vector, depth, fusion, filters) for n in range(self.count)])
        dense = best_by_score([d for _, d in firsts], depth)
        lexical = best_by_score([], depth)
        if fusion in ("rrf", "lexical"):
            stats = term_stats_total([s for s, _ in firsts])
            if stats.size:
                found = gather([self._call(n, "lexical", query, depth, filters, stats) for n in range(self.count)])
                lexical = best_by_score(found, depth)
        return dense, lexical

    def chunks_at(self, keys: Sequence[int]) -> list[Chunk | None]:
        """The chunks of ``keys``, one call to each shard that owns some (a key's owner: key // KEY_SPACE)."""
        owners: dict[int, list[int]] = {}
        for key in keys:
            owners.setdefault(int(key) // KEY_SPACE, []).append(int(key))
        numbers = sorted(owners)
        replies = gather([self._call(n, "chunks", owners[n]) for n in numbers])
        found: dict[int, Chunk] = {}
        for n, reply in zip(numbers, replies, strict=True):
            for key, item in zip(owners[n], reply, strict=True):
                if item is not None:
                    found[key] = item[0]
                    self.documents.remember(item[1])  # type: ignore[attr-defined]
        return [found.get(int(key)) for key in keys]

    def fetch_document(self, doc_id: str) -> tuple[Document, list[Chunk]] | None:
        found = self._call(shard_of(doc_id, self.count), "document", doc_id).result()
        if found is not None:
            self.documents.remember(found[0])  # type: ignore[attr-defined]
        return found

    def chunks_of(self, doc_id: str) -> list[Chunk]:
        found = self.fetch_document(doc_id)
        return [] if found is None else found[1]

    def document_page(
        self, filters: Filters | None, cursor: str | None, limit: int
    ) -> tuple[int, list[tuple[Document, int]]]:
        replies = gather([self._call(n, "page", filters, cursor, limit) for n in range(self.count)])
        items = sorted((item for _, page in replies for item in page), key=lambda item: item[0].id)
        return sum(n for n, _ in replies), items[:limit]

    # ------------------------------------------------------------------------------------------- writes

    def write(self, upserts: Sequence[Document], deletes: Sequence[str]) -> IngestReport:
        """Each document to the shard that owns it (by id hash), every shard's part at once."""
        parts: dict[int, tuple[list[Document], list[str]]] = {}
        for doc in upserts:
            parts.setdefault(shard_of(doc.id, self.count), ([], []))[0].append(doc)
        for doc_id in deletes:
            parts.setdefault(shard_of(doc_id, self.count), ([], []))[1].append(doc_id)
        numbers = sorted(parts)
        written = gather([self.clients[n].call("write", *parts[n]) for n in numbers])
        for n, (_, generation) in zip(numbers, written, strict=True):
            self._written[n] = max(self._written.get(n, 0), generation)
        reports = [report for report, _ in written]
        self.documents.forget([d.id for d in upserts] + list(deletes))  # type: ignore[attr-defined]
        self._infos_at = float("-inf")
        return merge_reports(reports)


def term_stats_total(parts: Sequence[TermStats]) -> TermStats:
    """The whole index's BM25 statistics: the shards' summed."""
    total = TermStats(0, 0.0, {})
    for part in parts:
        total = total + part
    return total
