"""What every route's bodies share: the limits (declared here, at the edge; the library trusts what passes
them), the strict base model, the question cleaner, the number fields that refuse booleans, and the error and
health bodies."""

from __future__ import annotations

import re
from typing import Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
)

MAX_QUESTION_CHARS = 1000
MAX_TITLE_CHARS = 1000
MAX_DOCUMENT_CHARS = 2_000_000
MAX_DOCUMENTS_PER_REQUEST = 1000
MAX_SEARCH_K = 200
MAX_FILTER_DOCUMENTS = 1000
MAX_FILTER_META = 20
MAX_SOURCE_CHARS = 200
MAX_BATCH_QUESTIONS = 64

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


def refuse_bool(value: Any) -> Any:
    """Numbers in bodies: lax mode would read JSON ``true`` as 1; strict=True would also refuse 5.0, which JSON
    Schema counts as an integer (and 1 for a float field)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


#: A number field (integer or not) that refuses JSON booleans (``refuse_bool``).
NOT_BOOL = BeforeValidator(refuse_bool)


class Offset(BaseModel):
    start: int
    end: int


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


#: A 400 from the HTTP server itself (uvicorn's parser, before the app sees the request) is plain text, not
#: ``ErrorBody``: `make fuzz` met it on GET operations whose repeatable query parameters carried long runs of
#: unusual characters.
UNPARSEABLE_REQUEST: dict[str, Any] = {
    "model": ErrorBody,
    "description": "Bad request; a request the HTTP server cannot parse gets its plain-text 400, before the app",
    "content": {"text/plain": {"schema": {"type": "string"}}},
}
