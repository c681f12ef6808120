"""The corpus: list, read, add or replace, delete. Writes need the API key.

``POST /documents`` takes JSON records, or files uploaded as ``multipart/form-data`` (the same key and limits):
two routes on one path, told apart by the request's content type, documented as one operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, File, Path, Query, UploadFile
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

from rag.document_ids import MAX_ID_LENGTH, check_document_id
from rag.engine import Engine
from rag.errors import LoadError
from rag.filters import document_page
from rag.loaders import SUPPORTED_SUFFIXES, load_uploads, unsupported_type
from rag.records import document_from_record
from rag.types import Document, IngestReport
from service.deps import EngineDep, QueryFiltersDep, SettingsDep, WriteGateDep, WriterDep
from service.errors import ApiError
from service.schemas.common import MAX_DOCUMENT_CHARS, MAX_DOCUMENTS_PER_REQUEST, UNPARSEABLE_REQUEST, ErrorBody, Offset
from service.schemas.documents import DocumentList, DocumentOut, DocumentsIn, DocumentSummary, IngestOut

router = APIRouter(prefix="/documents", tags=["documents"])
MAX_PAGE = 1000  # documents a page of GET /documents holds at most

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


@router.get(
    "",
    response_model=DocumentList,
    responses={**_ERRORS, 400: UNPARSEABLE_REQUEST},
    summary="List the indexed documents (filtered as /search is), a page at a time",
)
def list_documents(
    engine: EngineDep,
    filters: QueryFiltersDep = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Documents per page")] = 100,
    cursor: Annotated[
        str | None,
        Query(max_length=MAX_ID_LENGTH, description="next_cursor of the previous page (documents are in id order)"),
    ] = None,
) -> DocumentList:
    count, page, more = document_page(engine.snapshot, filters, cursor, limit)
    docs = [DocumentSummary.of(doc, chunks) for doc, chunks in page]
    return DocumentList(count=count, documents=docs, next_cursor=page[-1][0].id if more and page else None)


@router.get("/{doc_id:path}", response_model=DocumentOut, responses=_ERRORS, summary="One document with its text")
def get_document(doc_id: DocId, engine: EngineDep) -> DocumentOut:
    snap = engine.snapshot
    doc = snap.get(_valid_id(doc_id))
    chunks = snap.chunks_of(doc.id)
    summary = DocumentSummary.of(doc, len(chunks))
    return DocumentOut(
        **summary.model_dump(), text=doc.text, chunk_offsets=[Offset(start=c.start, end=c.end) for c in chunks]
    )


class _MultipartRoute(APIRoute):
    """Matches only requests whose body is ``multipart/form-data``; every other one falls through to the
    next route on the same path (the JSON one)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.FULL and not _is_multipart(scope):
            return Match.NONE, {}
        return match, child


def _is_multipart(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    return headers.get(b"content-type", b"").lower().lstrip().startswith(b"multipart/form-data")


_FILES_HELP = (
    f"Files to add or replace ({', '.join(sorted(SUPPORTED_SUFFIXES))}), the type read from the name's suffix. "
    "A text, HTML, PDF or Word file's document id is its name without the suffix (report.pdf -> report); "
    "JSON and JSONL files hold records with their own ids."
)
# The upload route is left out of the schema (two operations cannot share a path and method there): its body
# is documented as the second content type of the JSON operation.
_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["files"],
                    "properties": {
                        "files": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "minItems": 1,
                            "description": _FILES_HELP,
                        }
                    },
                }
            }
        }
    }
}


async def upload_documents(
    files: Annotated[list[UploadFile], File(description=_FILES_HELP)],
    engine: EngineDep,
    gate: WriteGateDep,
    settings: SettingsDep,
) -> IngestOut:
    named = []
    for i, upload in enumerate(files):
        name = (upload.filename or "").strip()
        if not name:
            raise ApiError(422, f"files[{i}] has no file name; the name's suffix says the file's type")
        if (suffix := PurePath(name).suffix.lower()) not in SUPPORTED_SUFFIXES:
            raise ApiError(422, f"{name}: {unsupported_type(suffix)}")
        named.append((name, await upload.read()))
    # Converting a PDF is model-sized work (seconds of CPU): admitted through the write gate with the write itself.
    report = await gate.run(_ingest_uploads, engine, named, settings.max_request_bytes)
    return IngestOut.of(report)


def _ingest_uploads(engine: Engine, files: Sequence[tuple[str, bytes]], max_bytes: int) -> IngestReport:
    """Load the files as ``rag ingest`` would, then hold their documents to the JSON route's limits."""
    loaded = load_uploads(files, max_bytes)
    if len(loaded.documents) > MAX_DOCUMENTS_PER_REQUEST:
        raise ApiError(
            422,
            f"the files hold {len(loaded.documents):,} documents; at most {MAX_DOCUMENTS_PER_REQUEST:,} are "
            "accepted per request",
        )
    documents: list[Document] = []
    skipped, seen = list(loaded.skipped), set()
    for doc in loaded.documents:
        where = doc.source or doc.id
        if len(doc.text) > MAX_DOCUMENT_CHARS:
            skipped.append((where, f"its text has {len(doc.text):,} characters; the limit is {MAX_DOCUMENT_CHARS:,}"))
        elif doc.id in seen:
            skipped.append((where, f"duplicate id {doc.id!r} in this request; the first one is kept"))
        else:
            seen.add(doc.id)
            documents.append(doc)
    if not documents:  # every file skipped: a request that changed nothing is not a 200
        raise ApiError(
            422,
            "no file could be ingested: " + "; ".join(f"{item}: {reason}" for item, reason in skipped[:10]),
            details=[{"item": item, "reason": reason} for item, reason in skipped],
        )
    return engine.upsert(documents, skipped=skipped)


# Registered before the JSON route, so that it sees multipart requests first.
router.add_api_route(
    "",
    upload_documents,
    methods=["POST"],
    response_model=IngestOut,
    responses=_WRITE_ERRORS,
    dependencies=[WriterDep],
    include_in_schema=False,
    route_class_override=_MultipartRoute,
)


@router.post(
    "",
    response_model=IngestOut,
    responses=_WRITE_ERRORS,
    dependencies=[WriterDep],
    summary="Add or replace documents (visible to the next query)",
    description='JSON records (`{"documents": [...]}`), or files uploaded as `multipart/form-data` in the '
    "repeatable field `files`: `curl -F files=@report.pdf -F files=@notes.docx`. Files that cannot be read "
    "(a scanned PDF without a text layer, an encrypted one) are reported in `skipped` with the reason; a file "
    "type that is not supported is refused (422).",
    openapi_extra=_UPLOAD_BODY,
)
async def upsert_documents(body: DocumentsIn, engine: EngineDep, gate: WriteGateDep) -> IngestOut:
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
async def delete_document(doc_id: DocId, engine: EngineDep, gate: WriteGateDep) -> IngestOut:
    report = await gate.run(engine.delete, [_valid_id(doc_id)])
    return IngestOut.of(report)
