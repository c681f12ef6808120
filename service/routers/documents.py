"""The corpus: list, read, add or replace, delete. Writes need the API key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from rag.errors import LoadError
from rag.loaders import MAX_ID_LENGTH, check_document_id, document_from_record
from service.deps import EngineDep, GateDep, WriterDep
from service.errors import ApiError
from service.schemas import DocumentList, DocumentOut, DocumentsIn, DocumentSummary, ErrorBody, IngestOut, Offset

router = APIRouter(prefix="/documents", tags=["documents"])

DocId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH, description="Document id")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},  # a body that is not UTF-8, or nests past the JSON parser's limit
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    409: {"model": ErrorBody},  # the index is served read-only (a sharded index: written by `rag ingest`)
    413: {"model": ErrorBody},
    **_ERRORS,
}


def _valid_id(doc_id: str) -> str:
    try:
        return check_document_id(doc_id)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


@router.get("", response_model=DocumentList, responses=_ERRORS, summary="List the indexed documents")
def list_documents(engine: EngineDep) -> DocumentList:
    snap = engine.snapshot
    counts: dict[str, int] = {}
    for chunk in snap.chunks:
        counts[chunk.doc_id] = counts.get(chunk.doc_id, 0) + 1
    docs = [DocumentSummary.of(d, counts.get(d.id, 0)) for d in snap.documents.values()]
    return DocumentList(count=len(docs), documents=docs)


@router.get("/{doc_id:path}", response_model=DocumentOut, responses=_ERRORS, summary="One document with its text")
def get_document(doc_id: DocId, engine: EngineDep) -> DocumentOut:
    snap = engine.snapshot
    doc = snap.get(_valid_id(doc_id))
    chunks = snap.chunks_of(doc.id)
    summary = DocumentSummary.of(doc, len(chunks))
    return DocumentOut(
        **summary.model_dump(), text=doc.text, chunk_offsets=[Offset(start=c.start, end=c.end) for c in chunks]
    )


@router.post(
    "",
    response_model=IngestOut,
    responses=_WRITE_ERRORS,
    dependencies=[WriterDep],
    summary="Add or replace documents (visible to the next query)",
)
async def upsert_documents(body: DocumentsIn, engine: EngineDep, gate: GateDep) -> IngestOut:
    documents, skipped, seen = [], [], set()
    for i, item in enumerate(body.documents):
        where = f"documents[{i}]"
        try:
            doc = document_from_record(item.model_dump(), where=where)
        except LoadError as exc:
            skipped.append((where, str(exc).removeprefix(f"{where}: ")))
            continue
        if doc.id in seen:
            skipped.append((where, f"duplicate id {doc.id!r} in this request; the first one is kept"))
            continue
        seen.add(doc.id)
        documents.append(doc)
    report = await gate.run(engine.upsert, documents, skipped=skipped)
    return IngestOut.of(report)


@router.delete(
    "/{doc_id:path}",
    response_model=IngestOut,
    responses=_WRITE_ERRORS,
    dependencies=[WriterDep],
    summary="Delete a document",
)
async def delete_document(doc_id: DocId, engine: EngineDep, gate: GateDep) -> IngestOut:
    report = await gate.run(engine.delete, [_valid_id(doc_id)])
    return IngestOut.of(report)
