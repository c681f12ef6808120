"""The typed values that pass between stages: documents, chunks, retrieval hits and answers.

Offsets are the truth: a chunk's and an answer's ``start``/``end`` index the *original* document text, so
``document.text[start:end] == chunk.text`` (and ``== answer.text``) always holds.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

#: Embedding matrices: float32, shape (n, dim), rows L2-normalised.
Embeddings = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Document:
    id: str
    title: str
    text: str
    url: str | None = None
    published: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None  # the file it was read from, when there is one

    @property
    def checksum(self) -> str:
        """sha256 over everything that is indexed; a re-ingest with the same checksum is a no-op."""
        payload = json.dumps(
            [self.title, self.text, self.url, self.published, dict(self.meta)], ensure_ascii=False, sort_keys=True
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def page_at(self, offset: int) -> int | None:
        """The page (from 1) that holds character ``offset``, for documents with pages (PDFs:
        ``meta["page_starts"]``, each page's first offset); None for the others."""
        starts = self.meta.get("page_starts")
        # meta can come from a caller (POST /documents): anything but ascending ints means "no pages"
        if not isinstance(starts, list | tuple) or not starts or starts[0] != 0:
            return None
        if not all(type(s) is int for s in starts) or any(a > b for a, b in zip(starts, starts[1:], strict=False)):
            return None
        return bisect.bisect_right(starts, offset)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span of a document: ``document.text[start:end] == text``."""

    key: int  # int64 id, unique in an index (the FAISS id)
    doc_id: str
    ordinal: int  # position of the chunk inside its document
    start: int
    end: int
    text: str

    @property
    def chunk_id(self) -> str:
        return f"{self.doc_id}#{self.ordinal}"


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk with its fused score and the evidence from each retriever."""

    chunk: Chunk
    score: float
    dense_score: float | None = None  # cosine similarity, when the dense retriever found it
    lexical_score: float | None = None  # BM25, when the lexical retriever found it
    dense_rank: int | None = None  # 1-based
    lexical_rank: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """An extracted span with its citation; ``context[context_start:context_end] == text``, and the sentence that
    holds it: ``document.text[sentence_start:sentence_end] == sentence``, with ``sentence_start <= start`` and
    ``end <= sentence_end`` (rag.sentences)."""

    text: str
    score: float  # calibrated probability that the answer is right, in [0, 1]
    doc_id: str
    title: str
    start: int  # into the document text
    end: int
    context: str  # the passage around the answer
    context_start: int  # into ``context``
    context_end: int
    chunk_id: str
    sentence: str
    sentence_start: int  # into the document text
    sentence_end: int
    page: int | None = None  # the page of a PDF that holds ``start``, from 1


@dataclass(frozen=True, slots=True)
class AskResult:
    question: str
    no_answer: bool
    answers: tuple[Answer, ...]
    hits: tuple[Hit, ...]
    timings_ms: Mapping[str, float]
    titles: Mapping[str, str] = field(default_factory=dict)  # doc id -> title, for the hits
    pages: Mapping[str, int] = field(default_factory=dict)  # chunk id -> page its passage starts on (PDFs)
    possible_answers: tuple[Answer, ...] = ()  # no answer: the best candidates below the threshold
    no_answer_reason: str | None = None  # no answer: "not_covered" (nothing retrieved is about it) or "not_stated"
    threshold: float | None = None  # the score an answer needed
    threshold_rule: str | None = None  # where that threshold came from


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What an ingest did: documents added, replaced, unchanged, deleted, and the inputs it skipped."""

    added: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (file or record, reason)
    chunks_embedded: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.deleted)
