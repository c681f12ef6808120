"""Filters on what a question may be answered from: document ids, a published-date range, the publisher, and
equality on ``meta`` keys, all combinable (every given condition must hold).

A filter selects documents; retrieval then searches only their chunks (rag/retrieval.py: FAISS with an id
selector or an exact product over their vectors, BM25 scores taken over their rows), so the top k is the best k
among the kept documents however few they are. ``select`` computes the kept chunks once per index snapshot and
filter and keeps them on the snapshot, which never changes.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.dates import filter_date, parse_date
from rag.dense import KeySet
from rag.errors import ValidationError
from rag.store import CorpusIndex, RemoteIndex
from rag.types import Document

#: Selections kept per snapshot (each holds two int64 arrays of its chunks); the oldest goes first.
CACHED_SELECTIONS = 64
_NO_DAY = np.iinfo(np.int64).min  # a document without a parseable date: never inside a date range


@dataclass(frozen=True, slots=True)
class Filters:
    """What a search may return; the empty filter keeps everything. Dates may be given as ISO strings."""

    document_ids: tuple[str, ...] = ()
    published_from: dt.date | None = None
    published_to: dt.date | None = None
    source: str | None = None  # the publisher, ``meta["source"]``, compared case-insensitively
    meta: Mapping[str, str] = field(default_factory=dict)
    _key: tuple[Any, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = (self.document_ids,) if isinstance(self.document_ids, str) else self.document_ids
        object.__setattr__(self, "document_ids", tuple(dict.fromkeys(str(i) for i in ids)))
        for name in ("published_from", "published_to"):
            object.__setattr__(self, name, _as_date(getattr(self, name), name))
        if self.published_from and self.published_to and self.published_from > self.published_to:
            raise ValidationError(
                f"published_from ({self.published_from.isoformat()}) is after "
                f"published_to ({self.published_to.isoformat()}); nothing could match"
            )
        if self.source is not None:
            source = str(self.source).strip()
            if not source:
                raise ValidationError("source must not be empty; leave it out to match every publisher")
            object.__setattr__(self, "source", source)
        meta = {str(k): str(v) for k, v in dict(self.meta).items()}
        if "" in meta:
            raise ValidationError("meta keys must not be empty")
        object.__setattr__(self, "meta", types.MappingProxyType(meta))
        key = (
            tuple(sorted(self.document_ids)),
            self.published_from,
            self.published_to,
            self.source.casefold() if self.source else None,
            tuple(sorted(self.meta.items())),
        )
        object.__setattr__(self, "_key", key)

    @property
    def is_empty(self) -> bool:
        return not (self.document_ids or self.published_from or self.published_to or self.source or self.meta)

    @property
    def key(self) -> tuple[Any, ...]:
        """What decides which documents match (hashable; the cache key of a selection)."""
        return self._key

    def __hash__(self) -> int:
        return hash(self.key)

    def matches(self, doc: Document) -> bool:
        if self.document_ids and doc.id not in self.document_ids:
            return False
        if self.published_from or self.published_to:
            day = parse_date(doc.published)
            if day is None or not _in_range(day.toordinal(), self.published_from, self.published_to):
                return False
        if self.source and publisher(doc) != self.source.casefold():
            return False
        return self.meta_matches(doc.meta)

    def meta_matches(self, meta: Mapping[str, Any]) -> bool:
        """Every ``meta`` condition holds: the key is there and its value, as a string, is the one asked for."""
        return all(key in meta and str(meta[key]) == value for key, value in self.meta.items())


def publisher(doc: Document) -> str:
    """The publisher a ``source`` filter compares with: ``meta["source"]``, case-folded ("" when unknown)."""
    value = doc.meta.get("source")
    return str(value).strip().casefold() if value is not None else ""


def _as_date(value: Any, name: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return filter_date(value, name)
    raise ValidationError(f"{name} must be an ISO date (YYYY-MM-DD), got {value!r}")


def _in_range(day: int, start: dt.date | None, end: dt.date | None) -> bool:
    return (start is None or day >= start.toordinal()) and (end is None or day <= end.toordinal())


# ------------------------------------------------------------------------------------------ selections


@dataclass(frozen=True, slots=True)
class Selection:
    """The chunks a filter keeps in one snapshot: ``rows`` into ``index.chunks`` (ascending) and their keys (as a
    ``KeySet``, whose FAISS selector is built once and reused by every query with this filter)."""

    documents: tuple[str, ...]
    rows: npt.NDArray[np.int64]
    keys: KeySet
    total: int  # chunks in the snapshot
    ascending: bool  # keys ascend with rows (they do as the store assigns them): membership by binary search

    def holds(self, keys: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which of ``keys`` are in the selection."""
        kept = self.keys.keys
        if not len(kept) or not len(keys):
            return np.zeros(len(keys), dtype=bool)
        if not self.ascending:
            return np.isin(keys, kept)
        at = np.minimum(np.searchsorted(kept, keys), len(kept) - 1)
        return kept[at] == keys

    @property
    def everything(self) -> bool:
        return len(self.rows) == self.total

    @property
    def share(self) -> float:
        return len(self.rows) / self.total if self.total else 0.0


class _Table:
    """Per-snapshot columns the filters test, built once: a document code per chunk row, each document's day
    (ordinal) and publisher, so a selection costs a few vectorised passes however large the corpus."""

    def __init__(self, index: CorpusIndex) -> None:
        self.ids = list(index.documents)
        self.code = {doc_id: i for i, doc_id in enumerate(self.ids)}
        docs = list(index.documents.values())
        days = [parse_date(d.published) for d in docs]
        self.days = np.array([d.toordinal() if d else _NO_DAY for d in days], dtype=np.int64)
        self.publishers = np.array([publisher(d) for d in docs], dtype=object)
        self.row_doc = index.chunks.document_codes(self.code)
        self.keys = index.chunks.keys
        self.ascending = bool(np.all(self.keys[1:] > self.keys[:-1]))


_lock = threading.Lock()


def select(index: CorpusIndex, filters: Filters) -> Selection:
    """The documents and chunks of ``index`` that ``filters`` keeps (cached on the snapshot)."""
    memo = index.memo
    found = memo.get(("selection", filters.key))
    if found is not None:
        return found
    table = memo.get("table")
    if table is None:
        table = _Table(index)
        with _lock:
            memo["table"] = table
    keep = _matching(index, table, filters)
    rows = np.flatnonzero(keep[table.row_doc]).astype(np.int64) if len(table.row_doc) else np.zeros(0, np.int64)
    selection = Selection(
        documents=tuple(table.ids[i] for i in np.flatnonzero(keep)),
        rows=rows,
        keys=KeySet(table.keys[rows]),
        total=len(table.row_doc),
        ascending=table.ascending,
    )
    with _lock:
        cached = [k for k in memo if isinstance(k, tuple) and k[0] == "selection"]
        for old in cached[: max(0, len(cached) - CACHED_SELECTIONS + 1)]:
            memo.pop(old, None)
        memo[("selection", filters.key)] = selection
    return selection


def select_documents(index: CorpusIndex, filters: Filters | None) -> list[Document]:
    """The documents ``filters`` keeps, in index order (all of them for no filter)."""
    if filters is None or filters.is_empty:
        return list(index.documents.values())
    return [index.documents[doc_id] for doc_id in select(index, filters).documents]


def document_page(
    index: CorpusIndex, filters: Filters | None, cursor: str | None, limit: int
) -> tuple[int, list[tuple[Document, int]], bool]:
    """How many documents ``filters`` keeps; the first ``limit`` of them after ``cursor`` in id order, each with
    its chunk count; and whether more follow. A remote index asks its shards."""
    if isinstance(index, RemoteIndex):
        count, items = index.document_page(filters, cursor, limit + 1)
        return count, items[:limit], len(items) > limit
    ids = sorted(d.id for d in select_documents(index, filters))  # the documents, never a walk over every chunk
    start = bisect.bisect_right(ids, cursor) if cursor else 0
    page = ids[start : start + limit]
    return len(ids), [(index.documents[i], len(index.chunks_of(i))) for i in page], start + limit < len(ids)


def _matching(index: CorpusIndex, table: _Table, filters: Filters) -> npt.NDArray[np.bool_]:
    """One flag per document (in ``table.ids`` order): does it pass every condition?"""
    n = len(table.ids)
    keep = np.ones(n, dtype=bool)
    if filters.document_ids:
        wanted = np.zeros(n, dtype=bool)
        codes = [table.code[i] for i in filters.document_ids if i in table.code]
        wanted[codes] = True
        keep &= wanted
    if filters.published_from or filters.published_to:
        keep &= table.days != _NO_DAY
        if filters.published_from:
            keep &= table.days >= filters.published_from.toordinal()
        if filters.published_to:
            keep &= table.days <= filters.published_to.toordinal()
    if filters.source:
        keep &= table.publishers == filters.source.casefold()
    if filters.meta:
        for code in np.flatnonzero(keep):
            keep[code] = filters.meta_matches(index.documents[table.ids[code]].meta)
    return keep


def parse_meta(pairs: Iterable[str]) -> dict[str, str]:
    """``key=value`` strings (the CLI's ``--meta``) as a mapping; the value may itself contain '='."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValidationError(f"--meta must be key=value, got {pair!r}")
        out[key.strip()] = value
    return out
