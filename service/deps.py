"""Dependencies shared by the routers: the engine, the read and write gates, and the writer check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Query, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from rag.dates import filter_date
from rag.engine import Engine
from rag.errors import ValidationError
from rag.filters import Filters
from rag.settings import Settings
from service.errors import ApiError, error_response
from service.gate import Gate
from service.schemas.common import MAX_FILTER_DOCUMENTS, MAX_SOURCE_CHARS


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    engine = request.app.state.engine
    if engine is None:
        raise ApiError(503, f"the service is not ready: {request.app.state.startup_error}", "not_ready")
    return engine


def get_gate(request: Request) -> Gate:
    return request.app.state.gate


def get_write_gate(request: Request) -> Gate:
    return request.app.state.write_gate


def writer_refusal(settings: Settings, authorization: str) -> ApiError | None:
    """Why a write with this ``Authorization`` header is refused (None: it may go on). Writes need
    ``Authorization: Bearer <RAG_API_KEY>`` (compared in constant time), or open writes allowed."""
    key = settings.api_key.get_secret_value() if settings.api_key else None
    if not key:
        if settings.allow_open_writes:
            return None
        return ApiError(
            403,
            "writes are disabled: set RAG_API_KEY and send it as 'Authorization: Bearer <key>' "
            "(or RAG_ALLOW_OPEN_WRITES=true for local use)",
            "writes_disabled",
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return ApiError(401, "this request needs 'Authorization: Bearer <key>'", headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.strip().encode(), key.encode()):
        return ApiError(403, "the API key is not valid", "invalid_key")
    return None


def require_writer(request: Request, settings: Annotated[Settings, Depends(get_settings)]) -> None:
    """The write routes' own check (WriteGuard has refused a bad key before the body was read)."""
    if (refusal := writer_refusal(settings, request.headers.get("authorization", ""))) is not None:
        raise refusal


#: The methods that write, on the paths that take writes.
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class WriteGuard:
    """Pure ASGI: a write without the right key is refused *before* its body (up to RAG_MAX_REQUEST_BYTES) is
    read or parsed, and before it waits at the write gate."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    def _needs_key(self, path: str) -> bool:
        """Document writes always; feedback when RAG_FEEDBACK is key (open feedback is rate-limited instead)."""
        return path.startswith("/documents") or (path == "/feedback" and self.settings.feedback_mode() == "key")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in WRITE_METHODS and self._needs_key(scope["path"]):
            headers = dict(scope.get("headers") or [])
            refusal = writer_refusal(self.settings, headers.get(b"authorization", b"").decode("latin-1"))
            if refusal is not None:
                response = error_response(refusal.status, refusal.message, refusal.code, headers=refusal.headers)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def query_filters(
    doc: Annotated[
        list[str] | None,
        Query(max_length=MAX_FILTER_DOCUMENTS, description="Only this document (repeatable: any of them)"),
    ] = None,
    since: Annotated[
        str | None,
        Query(max_length=40, description="Published on or after this day (YYYY-MM-DD)", examples=["2024-11-01"]),
    ] = None,
    until: Annotated[
        str | None,
        Query(max_length=40, description="Published on or before this day (YYYY-MM-DD)", examples=["2024-11-30"]),
    ] = None,
    source: Annotated[
        str | None, Query(min_length=1, max_length=MAX_SOURCE_CHARS, description="Publisher, any case")
    ] = None,
) -> Filters | None:
    """The filters of a GET request (the query-string form of ``FiltersIn``); None when none is given."""
    try:
        start = filter_date(since, "since") if since is not None else None
        end = filter_date(until, "until") if until is not None else None
        if start and end and start > end:
            raise ValidationError(
                f"since ({start.isoformat()}) is after until ({end.isoformat()}); nothing could match"
            )
        filters = Filters(document_ids=tuple(doc or ()), published_from=start, published_to=end, source=source)
    except ValidationError as exc:
        raise ApiError(422, str(exc)) from None
    return None if filters.is_empty else filters


EngineDep = Annotated[Engine, Depends(get_engine)]
GateDep = Annotated[Gate, Depends(get_gate)]
#: Writes queue at their own gate (one at a time: the engine serialises them anyway), never in the read
#: gate's slots, so a burst of uploads does not turn questions away.
WriteGateDep = Annotated[Gate, Depends(get_write_gate)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
WriterDep = Depends(require_writer)
QueryFiltersDep = Annotated[Filters | None, Depends(query_filters)]
