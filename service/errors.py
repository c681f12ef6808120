"""One error shape for every failure: ``{"error": {"code", "message", "details"?}}``.

Library errors (``rag.errors``) are mapped to status codes here, at the edge.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from rag.errors import (
    DocumentNotFound,
    IndexBusy,
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    RagError,
    ReadOnlyIndex,
    ShardsUnavailable,
    ValidationError,
)
from rag.feedback import FeedbackFull

log = logging.getLogger("service")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
    507: "insufficient_storage",
}


class BodyTooLarge(Exception):
    """A request body that passed its Content-Length check (or had none) grew past the limit while read."""


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: list | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _STATUS_CODES.get(status, "error")
        self.headers = headers
        self.details = details


def error_response(status: int, message: str, code: str | None = None, details=None, headers=None) -> JSONResponse:
    body: dict = {"code": code or _STATUS_CODES.get(status, "error"), "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
    msg = err.get("msg", "invalid")
    if err.get("type") == "json_invalid":
        return f"request body is not valid JSON: {err.get('ctx', {}).get('error', msg)}"
    if err.get("type") == "missing":
        return f"{loc}: field required"
    if err.get("type") == "extra_forbidden":
        return f"{loc}: unknown field"
    return f"{loc}: {msg.removeprefix('Value error, ')}"


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        details = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "problem": _describe(e)}
            for e in errors
        ]
        message = "; ".join(d["problem"] for d in details[:5]) or "invalid request"
        return error_response(422, message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI turns any failure while reading a body into a 400
            return error_response(413, str(exc.__cause__))
        if exc.status_code == 400 and message == "There was an error parsing the body":
            multipart = request.headers.get("content-type", "").lower().startswith("multipart/")
            message = "the request body could not be parsed: " + (
                "send multipart/form-data with a boundary" if multipart else "send UTF-8 encoded JSON"
            )
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.details, headers=exc.headers)

    @app.exception_handler(RagError)
    async def _rag(request: Request, exc: RagError) -> JSONResponse:
        if isinstance(exc, DocumentNotFound):
            return error_response(404, str(exc), "document_not_found")
        if isinstance(exc, ValidationError):
            return error_response(422, str(exc), "validation_error")
        if isinstance(exc, ReadOnlyIndex):
            return error_response(409, str(exc), "read_only_index")
        if isinstance(exc, IndexBusy):
            return error_response(503, str(exc), "index_busy", headers={"Retry-After": "5"})
        if isinstance(exc, ShardsUnavailable):
            return error_response(503, str(exc), "shards_unavailable", headers={"Retry-After": "2"})
        if isinstance(exc, FeedbackFull):
            return error_response(507, str(exc), "feedback_full")
        if isinstance(exc, IndexNotFound | IndexCorrupt | IndexMismatch):
            return error_response(503, f"index not loaded: {exc}", "index_unavailable")
        log.exception("library error on %s", request.url.path)
        return error_response(500, str(exc), "internal_error")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error_response(500, "internal error; see the server log", "internal_error")
