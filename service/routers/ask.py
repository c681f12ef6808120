"""Questions and searches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from service.deps import EngineDep, GateDep
from service.errors import ApiError
from service.schemas import (
    MAX_QUESTION_CHARS,
    MAX_SEARCH_K,
    AskRequest,
    AskResponse,
    ErrorBody,
    PassageOut,
    SearchResponse,
    clean_question,
)

router = APIRouter(tags=["questions"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody},  # a body that is not UTF-8, or nests past the JSON parser's limit
    413: {"model": ErrorBody},  # the request-size limit (service/observability.py) covers every route
    422: {"model": ErrorBody},
    503: {"model": ErrorBody},
}


@router.post("/ask", response_model=AskResponse, responses=_ERRORS, summary="Answer a question with cited spans")
async def ask(body: AskRequest, engine: EngineDep, gate: GateDep, request: Request) -> AskResponse:
    result = await gate.run(engine.ask, body.question, body.top_k, body.max_answers)
    request.app.state.metrics.observe_answer(result.no_answer)
    return AskResponse.of(result)


@router.get("/search", response_model=SearchResponse, responses=_ERRORS, summary="Retrieve passages only")
async def search(
    engine: EngineDep,
    gate: GateDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUESTION_CHARS, description="The query")],
    k: Annotated[int, Query(ge=1, le=MAX_SEARCH_K, description="Passages returned")] = 10,
) -> SearchResponse:
    try:
        query = clean_question(q)
    except ValueError as exc:
        raise ApiError(422, f"q: {exc}") from None
    hits, timings, snap = await gate.run(engine.search, query, k)
    return SearchResponse(
        query=query,
        passages=[PassageOut.of(h, snap.documents[h.chunk.doc_id].title) for h in hits],
        timings_ms=timings,
    )
