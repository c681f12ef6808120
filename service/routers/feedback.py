"""Users' verdicts on answers (``rag/feedback.py``): given in the page or by a client, kept durably, exported as
a gold set that ``rag eval`` reads.

Who may send feedback is ``RAG_FEEDBACK``: ``off``, ``open`` (anyone; each client at most
``RAG_FEEDBACK_PER_MINUTE`` records a minute) or ``key`` (the write key); by default open on a loopback host and
key otherwise. The export always needs the write key (it holds what every user sent).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict, deque
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from rag.engine import Engine
from rag.errors import DocumentNotFound
from rag.feedback import FeedbackStore, export_gold, last_evaluation, make_record
from rag.settings import Settings
from rag.types import Document
from service.deps import EngineDep, SettingsDep, WriteGateDep, writer_refusal
from service.errors import ApiError
from service.schemas.common import ErrorBody
from service.schemas.feedback import FeedbackEvaluation, FeedbackIn, FeedbackOut, FeedbackSummary

router = APIRouter(prefix="/feedback", tags=["feedback"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 413, 422, 429, 503, 507)
}
#: Clients whose recent feedback times are remembered for the rate limit (the oldest are forgotten first).
MAX_CLIENTS = 10_000


class RateLimit:
    """At most ``per_minute`` events per client in any 60 seconds; memory bounded by ``MAX_CLIENTS``."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.clients: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        times = self.clients.pop(client, None) or deque()
        while times and now - times[0] >= 60:
            times.popleft()
        self.clients[client] = times
        while len(self.clients) > MAX_CLIENTS:
            self.clients.popitem(last=False)
        if len(times) >= self.per_minute:
            return False
        times.append(now)
        return True


def store_of(request: Request) -> FeedbackStore:
    return request.app.state.feedback


def _document(engine: Engine, doc_id: str) -> Document | None:
    try:
        return engine.snapshot.get(doc_id)
    except DocumentNotFound:
        return None


def _check_sender(request: Request, settings: Settings) -> None:
    mode = settings.feedback_mode()
    if mode == "off":
        raise ApiError(403, "feedback is switched off on this service (RAG_FEEDBACK=off)", "feedback_off")
    if mode == "key":
        if (refusal := writer_refusal(settings, request.headers.get("authorization", ""))) is not None:
            raise refusal
        return
    client = request.client.host if request.client else "unknown"
    if not request.app.state.feedback_limit.allow(client):
        raise ApiError(
            429,
            f"at most {settings.feedback_per_minute} feedback records a minute from one client; retry shortly",
            "too_many_requests",
            headers={"Retry-After": "10"},
        )


@router.post("", response_model=FeedbackOut, responses=_ERRORS, summary="Say whether an answer was right")
async def give_feedback(
    body: FeedbackIn, request: Request, engine: EngineDep, settings: SettingsDep, gate: WriteGateDep
) -> FeedbackOut:
    _check_sender(request, settings)
    snapshot = engine.snapshot
    record = make_record(
        body.question,
        body.verdict,
        lambda doc_id: _document(engine, doc_id),
        answer=(body.answer.document_id, body.answer.start, body.answer.end) if body.answer else None,
        shown=(body.shown.document_id, body.shown.start, body.shown.end) if body.shown else None,
        shown_score=body.shown.score if body.shown else None,
        generation=snapshot.generation,
    )
    store = store_of(request)
    await gate.run(store.append, record)  # the fsync off the event loop, one writer at a time
    records, questions = store.counts()
    return FeedbackOut(
        id=record.id, verdict=record.verdict, generation=record.generation, records=records, questions=questions
    )


@router.get("/summary", response_model=FeedbackSummary, summary="How much feedback has been given")
async def feedback_summary(request: Request, settings: SettingsDep) -> FeedbackSummary:
    records, questions = store_of(request).counts()
    last = last_evaluation(settings.feedback_evaluation_dir())
    return FeedbackSummary(
        mode=settings.feedback_mode(),  # type: ignore[arg-type]
        records=records,
        questions=questions,
        last_evaluation=FeedbackEvaluation(**last) if last else None,
    )


@router.get(
    "/export",
    response_class=PlainTextResponse,
    responses={**_ERRORS, 200: {"content": {"application/x-ndjson": {}}}},
    summary="The feedback as a gold set (JSON lines, the format rag eval reads); needs the write key",
)
async def export_feedback(request: Request, engine: EngineDep, settings: SettingsDep) -> PlainTextResponse:
    if (refusal := writer_refusal(settings, request.headers.get("authorization", ""))) is not None:
        raise refusal
    exported = export_gold(store_of(request).records(), lambda doc_id: _document(engine, doc_id))
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in exported.gold)
    headers = {
        "X-Feedback-Records": str(exported.records),
        "X-Feedback-Stale": str(exported.stale),
        "X-Feedback-Negatives": str(len(exported.negatives)),
    }
    return PlainTextResponse(lines, media_type="application/x-ndjson", headers=headers)
