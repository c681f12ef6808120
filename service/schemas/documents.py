"""The bodies of ``/documents``: documents in (JSON), their summaries and texts out, and the ingest report."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    Field,
    field_validator,
)

from rag.document_ids import MAX_ID_LENGTH, check_document_id
from rag.types import Document, IngestReport
from service.schemas.common import (
    MAX_DOCUMENT_CHARS,
    MAX_DOCUMENTS_PER_REQUEST,
    MAX_TITLE_CHARS,
    Offset,
    Strict,
)


class DocumentIn(Strict):
    id: str | None = Field(
        None, min_length=1, max_length=MAX_ID_LENGTH, description="Given id, or derived from the content"
    )
    title: str = Field("", max_length=MAX_TITLE_CHARS)
    text: str = Field(min_length=1, max_length=MAX_DOCUMENT_CHARS)
    url: str | None = Field(None, max_length=2000)
    published: str | None = Field(
        None,
        max_length=100,
        description="Publication date as printed; stored as YYYY-MM-DD (null when it names no date), the text as "
        "sent in meta.published_text when it differed",
    )
    source: str | None = Field(None, max_length=200, description="Publisher, stored as meta.source")
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
    count: int = Field(description="Documents matching (every page)")
    documents: list[DocumentSummary] = Field(description="This page, in id order")
    next_cursor: str | None = Field(None, description="Pass as cursor for the next page; null on the last page")


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
