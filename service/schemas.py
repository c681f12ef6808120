"""Request and response bodies. The limits live here, at the edge; the library trusts what passes them."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.loaders import MAX_ID_LENGTH, check_document_id
from rag.pipeline import MAX_TOP_K
from rag.types import Answer, AskResult, Document, Hit, IngestReport

MAX_QUESTION_CHARS = 1000
MAX_TITLE_CHARS = 1000
MAX_DOCUMENT_CHARS = 2_000_000
MAX_DOCUMENTS_PER_REQUEST = 1000
MAX_SEARCH_K = 200

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_question(value: str) -> str:
    """Questions: trimmed, not empty, no control characters (tabs and newlines are fine)."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    value = value.strip()
    if not value:
        raise ValueError("must not be empty or only whitespace")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AskRequest(Strict):
    question: str = Field(
        min_length=1, max_length=MAX_QUESTION_CHARS, examples=["How many troops are in US Forces Korea?"]
    )
    top_k: int = Field(5, ge=1, le=MAX_TOP_K, description="Passages returned")
    max_answers: int | None = Field(None, ge=1, le=10, description="Distinct answers returned at most")

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        return clean_question(v)

    @field_validator("top_k", "max_answers", mode="before")
    @classmethod
    def _not_a_bool(cls, v: Any) -> Any:
        # Lax mode would read true as 1; strict=True would also refuse 5.0, which JSON Schema counts as an integer.
        if isinstance(v, bool):
            raise ValueError("must be an integer, not true or false")
        return v


class Offset(BaseModel):
    start: int
    end: int


class AnswerOut(BaseModel):
    text: str
    score: float = Field(ge=0, le=1, description="Calibrated probability that the answer is right")
    document_id: str
    title: str
    document_offset: Offset = Field(description="document.text[start:end] == text")
    context: str
    context_offset: Offset = Field(description="context[start:end] == text")
    chunk_id: str

    @classmethod
    def of(cls, a: Answer) -> AnswerOut:
        return cls(
            text=a.text,
            score=a.score,
            document_id=a.doc_id,
            title=a.title,
            document_offset=Offset(start=a.start, end=a.end),
            context=a.context,
            context_offset=Offset(start=a.context_start, end=a.context_end),
            chunk_id=a.chunk_id,
        )


class PassageOut(BaseModel):
    document_id: str
    chunk_id: str
    title: str
    text: str
    score: float = Field(description="Fused retrieval score (RRF)")
    dense_score: float | None = Field(None, description="Cosine similarity to the question")
    lexical_score: float | None = Field(None, description="BM25 score")
    document_offset: Offset

    @classmethod
    def of(cls, h: Hit, title: str) -> PassageOut:
        return cls(
            document_id=h.chunk.doc_id,
            chunk_id=h.chunk.chunk_id,
            title=title,
            text=h.chunk.text,
            score=round(h.score, 6),
            dense_score=None if h.dense_score is None else round(h.dense_score, 4),
            lexical_score=None if h.lexical_score is None else round(h.lexical_score, 4),
            document_offset=Offset(start=h.chunk.start, end=h.chunk.end),
        )


class AskResponse(BaseModel):
    question: str
    no_answer: bool = Field(description="True when the articles do not contain a confident answer")
    answers: list[AnswerOut]
    passages: list[PassageOut]
    timings_ms: dict[str, float]

    @classmethod
    def of(cls, r: AskResult) -> AskResponse:
        return cls(
            question=r.question,
            no_answer=r.no_answer,
            answers=[AnswerOut.of(a) for a in r.answers],
            passages=[PassageOut.of(h, r.titles.get(h.chunk.doc_id, h.chunk.doc_id)) for h in r.hits],
            timings_ms=dict(r.timings_ms),
        )


class SearchResponse(BaseModel):
    query: str
    passages: list[PassageOut]
    timings_ms: dict[str, float]


class DocumentIn(Strict):
    id: str | None = Field(
        None, min_length=1, max_length=MAX_ID_LENGTH, description="Given id, or derived from the content"
    )
    title: str = Field("", max_length=MAX_TITLE_CHARS)
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS)
    url: str | None = Field(None, max_length=2000)
    published: str | None = Field(None, max_length=100)
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str | None) -> str | None:
        return None if v is None else check_document_id(v)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty or only whitespace")
        if "\x00" in v:
            raise ValueError("must not contain NUL characters")
        return v


class DocumentsIn(Strict):
    documents: list[DocumentIn] = Field(min_length=1, max_length=MAX_DOCUMENTS_PER_REQUEST)


class DocumentSummary(BaseModel):
    id: str
    title: str
    chars: int
    chunks: int
    url: str | None = None
    published: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, d: Document, chunks: int) -> DocumentSummary:
        meta = {k: v for k, v in d.meta.items() if k != "paragraph_starts"}
        return cls(
            id=d.id, title=d.title, chars=len(d.text), chunks=chunks, url=d.url, published=d.published, meta=meta
        )


class DocumentOut(DocumentSummary):
    text: str
    chunk_offsets: list[Offset] = Field(default_factory=list)


class DocumentList(BaseModel):
    count: int
    documents: list[DocumentSummary]


class Skipped(BaseModel):
    item: str
    reason: str


class IngestOut(BaseModel):
    added: list[str]
    replaced: list[str]
    unchanged: list[str]
    deleted: list[str]
    skipped: list[Skipped]
    chunks_embedded: int
    seconds: float

    @classmethod
    def of(cls, r: IngestReport) -> IngestOut:
        return cls(
            added=list(r.added),
            replaced=list(r.replaced),
            unchanged=list(r.unchanged),
            deleted=list(r.deleted),
            skipped=[Skipped(item=i, reason=why) for i, why in r.skipped],
            chunks_embedded=r.chunks_embedded,
            seconds=round(r.seconds, 3),
        )


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str
    detail: str | None = None
    documents: int | None = None
    chunks: int | None = None
    reader: str | None = None
