"""Chunks as columns: a segment's chunks as five arrays beside its documents, and the row view of a snapshot.

A chunk is five integers (key, document row, ordinal, start, end) and a slice of its document's text. A segment
keeps the integers as numpy arrays (``ChunkTable``) and the documents once, not a Python object per chunk with a
copy of its text: a ``Chunk`` is made when a row is read (``table[row]``), its text sliced from the document then.
So loading a segment builds no per-chunk objects, a snapshot after a write shares its segments' arrays, and the
memory a chunk costs is its integers (the text is its document's).

``Rows`` is a snapshot's chunks in row order over its segments (row ``offsets[i] + r`` is segment ``i``'s row
``r``): what ``CorpusIndex.chunks`` is. It is a ``Sequence[Chunk]`` (``len``, ``rows[i]``, iteration) and also
gives its columns over every row at once (``keys``, ``document_codes``) for the array work of filters.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import overload

import numpy as np
import numpy.typing as npt

from rag.types import Chunk, Document

#: Offsets, ordinals and document rows fit 32 bits (a document under 2 GiB of text); keys are FAISS's int64 ids.
SMALL = np.int32


class _Chunks(Sequence[Chunk]):
    """A sequence of chunks made on read: ``self[row]`` (negative rows count from the end), ``self[a:b]``."""

    __slots__ = ()

    def _chunk(self, row: int) -> Chunk:  # row in range(len(self))
        raise NotImplementedError

    @overload
    def __getitem__(self, row: int) -> Chunk: ...

    @overload
    def __getitem__(self, row: slice) -> list[Chunk]: ...

    def __getitem__(self, row: int | slice) -> Chunk | list[Chunk]:
        if isinstance(row, slice):
            return [self._chunk(i) for i in range(*row.indices(len(self)))]
        at = int(row) + len(self) if row < 0 else int(row)
        if not 0 <= at < len(self):
            raise IndexError(f"row {row} of {len(self)}")
        return self._chunk(at)


class ChunkTable(_Chunks):
    """The chunks of one segment (or of a view of it less deleted documents) as arrays, keys ascending.

    ``doc_rows[i]`` is chunk ``i``'s document as a position in ``docs``, the segment's documents as stored (a
    view keeps its base's ``docs``: a deleted document is still there, only none of the view's rows points at
    it). Never changed once built; ``take`` gives a new table over some of the rows."""

    __slots__ = ("keys", "doc_rows", "ordinals", "starts", "ends", "docs", "_position")

    def __init__(
        self,
        keys: npt.NDArray[np.int64],
        doc_rows: npt.NDArray[np.int32],
        ordinals: npt.NDArray[np.int32],
        starts: npt.NDArray[np.int32],
        ends: npt.NDArray[np.int32],
        docs: Sequence[Document],
        position: dict[str, int] | None = None,
    ) -> None:
        self.keys = np.asarray(keys, dtype=np.int64)
        self.doc_rows = np.asarray(doc_rows, dtype=SMALL)
        self.ordinals = np.asarray(ordinals, dtype=SMALL)
        self.starts = np.asarray(starts, dtype=SMALL)
        self.ends = np.asarray(ends, dtype=SMALL)
        self.docs = docs
        self._position = position
        if not len(self.keys) == len(self.doc_rows) == len(self.ordinals) == len(self.starts) == len(self.ends):
            raise ValueError("a chunk table's columns differ in length")

    @classmethod
    def from_chunks(cls, chunks: Sequence[Chunk], docs: Sequence[Document]) -> ChunkTable:
        """The table of ``chunks`` (each of one of ``docs``)."""
        position = {d.id: i for i, d in enumerate(docs)}
        n = len(chunks)
        return cls(
            np.fromiter((c.key for c in chunks), dtype=np.int64, count=n),
            np.fromiter((position[c.doc_id] for c in chunks), dtype=SMALL, count=n),
            np.fromiter((c.ordinal for c in chunks), dtype=SMALL, count=n),
            np.fromiter((c.start for c in chunks), dtype=SMALL, count=n),
            np.fromiter((c.end for c in chunks), dtype=SMALL, count=n),
            list(docs),
            position,
        )

    @classmethod
    def joined(cls, tables: Sequence[ChunkTable], docs: Sequence[Document]) -> ChunkTable:
        """``tables`` one after the other as one table over ``docs`` (which holds every document their rows
        point at: a merge passes the live documents only, so the deleted ones are gone)."""
        position = {d.id: i for i, d in enumerate(docs)}
        rows = []
        for table in tables:
            code = np.fromiter((position.get(d.id, -1) for d in table.docs), dtype=SMALL, count=len(table.docs))
            rows.append(code[table.doc_rows])
        return cls(
            _concat([t.keys for t in tables], np.int64),
            _concat(rows, SMALL),
            _concat([t.ordinals for t in tables], SMALL),
            _concat([t.starts for t in tables], SMALL),
            _concat([t.ends for t in tables], SMALL),
            list(docs),
            position,
        )

    @property
    def position(self) -> dict[str, int]:
        """doc id -> its position in ``docs`` (built on first use, shared by the views of one segment)."""
        if self._position is None:
            self._position = {d.id: i for i, d in enumerate(self.docs)}
        return self._position

    def take(self, rows: npt.NDArray[np.int64]) -> ChunkTable:
        """The table of ``rows`` (ascending) only, over the same documents."""
        return ChunkTable(
            self.keys[rows],
            self.doc_rows[rows],
            self.ordinals[rows],
            self.starts[rows],
            self.ends[rows],
            self.docs,
            self.position,
        )

    def rows_of(self, doc_id: str) -> npt.NDArray[np.int64]:
        """The rows of ``doc_id``'s chunks, in order (none when the table holds none)."""
        at = self.position.get(doc_id)
        if at is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.doc_rows == at).astype(np.int64)

    def __len__(self) -> int:
        return len(self.keys)

    def _chunk(self, row: int) -> Chunk:
        doc = self.docs[int(self.doc_rows[row])]
        start, end = int(self.starts[row]), int(self.ends[row])
        return Chunk(int(self.keys[row]), doc.id, int(self.ordinals[row]), start, end, doc.text[start:end])

    def __iter__(self) -> Iterator[Chunk]:
        # A document's text is read once for its run of rows (a stored document reads it from disk on access).
        docs, last, doc, text = self.docs, -1, None, ""
        for key, row, ordinal, start, end in zip(
            self.keys.tolist(),
            self.doc_rows.tolist(),
            self.ordinals.tolist(),
            self.starts.tolist(),
            self.ends.tolist(),
            strict=True,
        ):
            if row != last:
                last, doc = row, docs[row]
                text = doc.text
            assert doc is not None
            yield Chunk(key, doc.id, ordinal, start, end, text[start:end])

    def nbytes(self) -> int:
        """Bytes held by the five arrays (the documents are counted where they are kept)."""
        return sum(a.nbytes for a in (self.keys, self.doc_rows, self.ordinals, self.starts, self.ends))


class Rows(_Chunks):
    """A snapshot's chunks in row order over its segments' tables: row ``offsets[i] + r`` is ``tables[i][r]``."""

    __slots__ = ("tables", "offsets", "_total", "_keys")

    def __init__(self, tables: Sequence[ChunkTable]) -> None:
        self.tables = list(tables)
        self.offsets = list(itertools.accumulate((len(t) for t in self.tables), initial=0))[:-1]
        self._total = sum(len(t) for t in self.tables)
        self._keys: npt.NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return self._total

    def _chunk(self, row: int) -> Chunk:
        at = bisect.bisect_right(self.offsets, row) - 1  # (the last table starting at or before it: never empty)
        return self.tables[at][row - self.offsets[at]]

    def __iter__(self) -> Iterator[Chunk]:
        for table in self.tables:
            yield from table

    def key_at(self, row: int) -> int:
        """Row ``row``'s chunk key, without reading the chunk's text."""
        at = bisect.bisect_right(self.offsets, row) - 1
        return int(self.tables[at].keys[row - self.offsets[at]])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # (compared by value, and not immutable from the outside)

    @property
    def keys(self) -> npt.NDArray[np.int64]:
        """Every row's chunk key (built once per snapshot)."""
        if self._keys is None:
            self._keys = _concat([t.keys for t in self.tables], np.int64)
        return self._keys

    def document_codes(self, code: Mapping[str, int]) -> npt.NDArray[np.int64]:
        """Every row's document as ``code[doc id]`` (array work per segment: no loop over the rows)."""
        parts = []
        for table in self.tables:
            per_doc = np.fromiter((code.get(d.id, -1) for d in table.docs), dtype=np.int64, count=len(table.docs))
            parts.append(per_doc[table.doc_rows])
        return _concat(parts, np.int64)


def _concat(parts: Sequence[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)
