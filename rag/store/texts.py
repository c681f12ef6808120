"""Document text left on disk: a loaded segment's documents read their text from its ``documents.jsonl``, mapped
read-only, when it is asked for, instead of holding it as Python strings (three quarters of a loaded index's
memory at 1M chunks: docs/scaling.md).

A ``StoredDocument`` is a ``Document`` to every caller: ``doc.text`` decodes the document's line of the file
(the file never changes once written, and a mapping outlives the removal of its file), so
``doc.text[start:end] == chunk.text`` holds as before. Its other fields stay in memory. Documents a write made
and has not read back are plain ``Document`` objects, text in memory, as before.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Any

from rag.store.files import doc_from_record
from rag.types import Document

#: The fields kept in memory (every field of ``Document`` but ``text``), in ``Document``'s order.
KEPT = ("id", "title", "url", "published", "meta", "source")


class StoredDocument(Document):
    """A document whose text is bytes ``[start, end)`` of a mapped ``documents.jsonl`` (its JSON line), read on
    every access of ``text``: callers that slice it several times read it once into a local. Equal to the plain
    ``Document`` with the same fields; copied and pickled as one (a copy holds its text)."""

    __slots__ = ("_file", "_start", "_end")

    _file: mmap.mmap
    _start: int
    _end: int

    def __new__(cls, *args: Any, **kwargs: Any) -> StoredDocument:
        # dataclasses.replace(stored, ...) calls the class with every field: that is a plain Document
        return Document(*args, **kwargs)  # type: ignore[return-value]

    @classmethod
    def at(cls, file: mmap.mmap, start: int, end: int, record: dict[str, Any]) -> StoredDocument:
        """The document of ``record``, the JSON line at bytes ``[start, end)`` of ``file``."""
        if not isinstance(record.get("text"), str):
            raise ValueError(f"document {record.get('id')!r} has no text")
        plain = doc_from_record({**record, "text": ""})
        doc = object.__new__(cls)
        for name in KEPT:
            object.__setattr__(doc, name, getattr(plain, name))
        object.__setattr__(doc, "_file", file)
        object.__setattr__(doc, "_start", start)
        object.__setattr__(doc, "_end", end)
        return doc

    @property
    def text(self) -> str:
        text: str = json.loads(self._file[self._start : self._end])["text"]
        return text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Document):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in KEPT) and self.text == other.text

    __hash__ = Document.__hash__

    def __reduce__(self) -> tuple[Any, ...]:
        return (Document, (self.id, self.title, self.text, self.url, self.published, self.meta, self.source))


def read_documents(path: Path) -> list[Document]:
    """Every document of a segment's ``documents.jsonl``, in file order, their text left in the file.

    The lines are parsed through ordinary reads (the page cache, not this process's memory); the mapping is
    touched only where a text is read. Lines end at ``\\n`` only (``ensure_ascii=False`` leaves U+0085, U+2028
    and U+2029 raw in them); empty lines are skipped."""
    docs: list[Document] = []
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            return docs
        file = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        at = 0
        for line in fh:  # (binary lines split at b"\n" only)
            if line.strip(b"\n"):
                docs.append(StoredDocument.at(file, at, at + len(line), json.loads(line)))
            at += len(line)
    return docs
