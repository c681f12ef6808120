"""Request and response bodies. The limits live here, at the edge; the library trusts what passes them."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rag import wire
from rag.dates import filter_date
from rag.document_ids import MAX_ID_LENGTH, check_document_id
from rag.errors import ValidationError
from rag.filters import Filters
from rag.pipeline import MAX_TOP_K
from rag.types import Answer, AskResult, Document, Hit, IngestReport

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


class FiltersIn(Strict):
    """Which documents a question or search may draw on. Every given condition must hold; retrieval searches
    only the kept documents, so the passages are the best among them however few they are."""

    document_ids: list[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]] = Field(
        default_factory=list, max_length=MAX_FILTER_DOCUMENTS, description="Any of these documents (ids)"
    )
    published_from: dt.date | None = Field(
        None, description="Published on or after this day (YYYY-MM-DD); documents without a date are left out"
    )
    published_to: dt.date | None = Field(
        None, description="Published on or before this day (YYYY-MM-DD); documents without a date are left out"
    )
    source: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_SOURCE_CHARS,
        description="Publisher (the document's meta.source), compared case-insensitively",
        examples=["The Straits Times"],
    )
    meta: dict[Annotated[str, Field(min_length=1, max_length=100)], Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=dict,
        max_length=MAX_FILTER_META,
        description="meta keys whose values must equal these (compared as strings)",
    )

    @field_validator("published_from", "published_to", mode="before")
    @classmethod
    def _iso_date(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None or isinstance(v, dt.date):
            return v
        if not isinstance(v, str):
            raise ValueError(f"must be an ISO date string (YYYY-MM-DD), got {v!r}")
        try:
            return filter_date(v, str(info.field_name))
        except ValidationError:
            raise ValueError(f"must be an ISO date (YYYY-MM-DD), got {v!r}") from None

    @model_validator(mode="after")
    def _consistent(self) -> FiltersIn:
        self.to_filters()  # a reversed date range or a blank source, named
        return self

    def to_filters(self) -> Filters:
        try:
            return Filters(
                document_ids=tuple(self.document_ids),
                published_from=self.published_from,
                published_to=self.published_to,
                source=self.source,
                meta=self.meta,
            )
        except ValidationError as exc:
            raise ValueError(str(exc)) from None


def refuse_bool(value: Any) -> Any:
    """Numbers in bodies: lax mode would read JSON ``true`` as 1; strict=True would also refuse 5.0, which JSON
    Schema counts as an integer (and 1 for a float field)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


#: A number field (integer or not) that refuses JSON booleans (``refuse_bool``).
NOT_BOOL = BeforeValidator(refuse_bool)


class AskRequest(Strict):
    question: str = Field(
        min_length=1, max_length=MAX_QUESTION_CHARS, examples=["How many troops are in US Forces Korea?"]
    )
    top_k: Annotated[int, NOT_BOOL] = Field(5, ge=1, le=MAX_TOP_K, description="Passages returned")
    max_answers: Annotated[int | None, NOT_BOOL] = Field(
        None, ge=1, le=10, description="Distinct answers returned at most"
    )
    min_score: Annotated[float | None, NOT_BOOL] = Field(
        None,
        ge=0,
        le=1,
        description="Answer only at or above this score (default: the service's threshold, see threshold_rule)",
    )
    filters: FiltersIn | None = Field(None, description="Answer only from the documents these keep")

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        return clean_question(v)


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
    sentence: str = Field(
        description="The sentence that holds the answer (the sentences, when the answer crosses a sentence end); "
        "a very long one is cut to a few hundred characters around the answer"
    )
    sentence_offset: Offset = Field(
        description="document.text[start:end] == sentence; start <= document_offset.start, document_offset.end <= end"
    )
    page: int | None = Field(None, ge=1, description="Page of a PDF, from 1, that holds the answer's start")

    @classmethod
    def of(cls, a: Answer) -> AnswerOut:
        return cls.model_validate(wire.answer_json(a))


class PassageOut(BaseModel):
    document_id: str
    chunk_id: str
    title: str
    text: str
    score: float = Field(description="Fused retrieval score (RRF)")
    dense_score: float | None = Field(None, description="Cosine similarity to the question")
    lexical_score: float | None = Field(None, description="BM25 score")
    document_offset: Offset
    page: int | None = Field(None, ge=1, description="Page of a PDF, from 1, that the passage starts on")

    @classmethod
    def of(cls, h: Hit, title: str, page: int | None = None) -> PassageOut:
        return cls.model_validate(wire.passage_json(h, title, page))


class AskResponse(BaseModel):
    question: str
    no_answer: bool = Field(description="True when the articles do not contain a confident answer")
    answers: list[AnswerOut] = Field(description="Scored at or above the threshold, highest score first")
    no_answer_reason: Literal["not_covered", "not_stated"] | None = Field(
        None,
        description="Why there is no answer: not_covered (nothing retrieved is about the question) or not_stated "
        "(passages on the topic, none stating an answer well enough); null when there are answers",
    )
    possible_answers: list[AnswerOut] = Field(
        default_factory=list,
        description="When there is no answer: the best candidates below the threshold, unconfirmed, highest "
        "score first (never mixed into answers)",
    )
    threshold: float | None = Field(None, description="The score an answer needed")
    threshold_rule: str | None = Field(None, description="Where that threshold came from")
    passages: list[PassageOut]
    timings_ms: dict[str, float]

    @classmethod
    def of(cls, r: AskResult) -> AskResponse:
        return cls.model_validate(wire.ask_json(r))


class AskBatchRequest(Strict):
    """``POST /ask/batch``: many questions with one set of options, answered together."""

    questions: list[
        Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS), AfterValidator(clean_question)]
    ] = Field(
        min_length=1,
        max_length=MAX_BATCH_QUESTIONS,
        description=f"1 to {MAX_BATCH_QUESTIONS} questions, each as /ask's question (1 to {MAX_QUESTION_CHARS} "
        "characters, not blank, no control characters); answered in this order",
        examples=[["How many troops are in US Forces Korea?", "Who is the Japanese prime minister?"]],
    )
    top_k: Annotated[int, NOT_BOOL] = Field(5, ge=1, le=MAX_TOP_K, description="Passages returned per question")
    max_answers: Annotated[int | None, NOT_BOOL] = Field(
        None, ge=1, le=10, description="Distinct answers returned per question at most"
    )
    min_score: Annotated[float | None, NOT_BOOL] = Field(
        None,
        ge=0,
        le=1,
        description="Answer only at or above this score (default: the service's threshold, see threshold_rule)",
    )
    filters: FiltersIn | None = Field(None, description="Answer every question only from the documents these keep")


class AskBatchResponse(BaseModel):
    results: list[AskResponse] = Field(
        description="One /ask response per question, in the order asked. Each one's timings_ms holds its own "
        "retrieve and decide times and its share of the batch's embed and read times"
    )


class SearchRequest(AskRequest):
    """``POST /search``: the ``/ask`` body plus ``k``, so a client can send one body to either (``top_k`` and
    ``max_answers`` are accepted and not used: ``k`` is the number of passages)."""

    k: Annotated[int, NOT_BOOL] = Field(10, ge=1, le=MAX_SEARCH_K, description="Passages returned")


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


class SpanIn(Strict):
    document_id: str = Field(min_length=1, max_length=MAX_ID_LENGTH)
    start: int = Field(ge=0, le=MAX_DOCUMENT_CHARS)
    end: int = Field(ge=0, le=MAX_DOCUMENT_CHARS)


class ShownIn(SpanIn):
    score: float | None = Field(None, ge=0, le=1, description="The score the answer was shown with")


class FeedbackIn(Strict):
    """A verdict on one question's answer."""

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    verdict: Literal["right", "wrong", "not_in_articles", "answer_is"] = Field(
        description="right / wrong: the answer shown (give `shown`); not_in_articles: the articles do not hold the "
        "answer; answer_is: this span is the answer (give `answer`)"
    )
    answer: SpanIn | None = Field(None, description="answer_is: the right span (offsets into the document's text)")
    shown: ShownIn | None = Field(None, description="right / wrong: the answer that was shown")


class FeedbackOut(BaseModel):
    id: str
    verdict: str
    generation: int = Field(description="The index commit the feedback was given on")
    records: int = Field(description="Feedback records kept so far")
    questions: int = Field(description="Distinct questions with feedback so far")


class FeedbackEvaluation(BaseModel):
    created: str = Field(description="When `rag feedback eval` ran")
    questions: int
    f1: float = Field(description="SQuAD F1 x 100 over the annotated questions (a decline is right when unanswerable)")
    em: float
    answered: float = Field(description="Share of the questions answered, percent")
    reader: str | None = None


class FeedbackSummary(BaseModel):
    mode: Literal["off", "open", "key"]
    records: int
    questions: int
    last_evaluation: FeedbackEvaluation | None = Field(
        None, description="The last `rag feedback eval` on the annotated questions (not recomputed per request)"
    )
