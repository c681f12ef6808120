"""Questions and searches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from rag.store import CorpusIndex
from rag.types import Hit
from service.deps import EngineDep, GateDep, QueryFiltersDep
from service.errors import ApiError
from service.schemas.ask import (
    AskBatchRequest,
    AskBatchResponse,
    AskRequest,
    AskResponse,
    PassageOut,
    SearchRequest,
    SearchResponse,
)
from service.schemas.common import MAX_QUESTION_CHARS, MAX_SEARCH_K, UNPARSEABLE_REQUEST, ErrorBody, clean_question

router = APIRouter(tags=["questions"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},  # a body that is not UTF-8, or nests past the JSON parser's limit
    413: {"model": ErrorBody},  # the request-size limit (service/observability.py) covers every route
    422: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


@router.post("/ask", response_model=AskResponse, responses=_ERRORS, summary="Answer a question with cited spans")
async def ask(body: AskRequest, engine: EngineDep, gate: GateDep, request: Request) -> AskResponse:
    filters = body.filters.to_filters() if body.filters else None
    result = await gate.run(
        engine.ask, body.question, body.top_k, body.max_answers, filters=filters, min_score=body.min_score
    )
    request.app.state.metrics.observe_answer(result.no_answer)
    return AskResponse.of(result)


@router.post(
    "/ask/batch",
    response_model=AskBatchResponse,
    responses=_ERRORS,
    summary="Answer up to 64 questions together (for evaluators)",
    description="The same answers as one /ask per question, computed together in one unit of work: the questions "
    "share the admission gate's slot, and the reader's forward passes where that leaves every answer unchanged "
    "(always with fp32 models; with int8 ones only when the service runs with RAG_BATCH_EXACT=false).",
)
async def ask_batch(body: AskBatchRequest, engine: EngineDep, gate: GateDep, request: Request) -> AskBatchResponse:
    filters = body.filters.to_filters() if body.filters else None
    results = await gate.run(
        engine.ask_batch, body.questions, body.top_k, body.max_answers, filters=filters, min_score=body.min_score
    )
    for result in results:
        request.app.state.metrics.observe_answer(result.no_answer)
    return AskBatchResponse(results=[AskResponse.of(r) for r in results])


@router.get(
    "/search",
    response_model=SearchResponse,
    responses={**_ERRORS, 400: UNPARSEABLE_REQUEST},
    summary="Retrieve passages only",
)
async def search(
    engine: EngineDep,
    gate: GateDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUESTION_CHARS, description="The query")],
    k: Annotated[int, Query(ge=1, le=MAX_SEARCH_K, description="Passages returned")] = 10,
    filters: QueryFiltersDep = None,
) -> SearchResponse:
    try:
        query = clean_question(q)
    except ValueError as exc:
        raise ApiError(422, f"q: {exc}") from None
    hits, timings, snap = await gate.run(engine.search, query, k, filters)
    return SearchResponse(query=query, passages=_passages(hits, snap), timings_ms=timings)


@router.post(
    "/search",
    response_model=SearchResponse,
    responses=_ERRORS,
    summary="Retrieve passages only, with filters (the /ask body plus k)",
)
async def search_with_filters(body: SearchRequest, engine: EngineDep, gate: GateDep) -> SearchResponse:
    filters = body.filters.to_filters() if body.filters else None
    hits, timings, snap = await gate.run(engine.search, body.question, body.k, filters)
    return SearchResponse(query=body.question, passages=_passages(hits, snap), timings_ms=timings)


def _passages(hits: list[Hit], snap: CorpusIndex) -> list[PassageOut]:
    return [PassageOut.of(h, (doc := snap.documents[h.chunk.doc_id]).title, doc.page_at(h.chunk.start)) for h in hits]
