"""The bodies of ``/ask``, ``/ask/batch`` and ``/search``: questions and their filters in, answers and passages out."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rag import wire
from rag.dates import filter_date
from rag.document_ids import MAX_ID_LENGTH
from rag.errors import ValidationError
from rag.filters import Filters
from rag.pipeline import MAX_TOP_K
from rag.types import Answer, AskResult, Hit
from service.schemas.common import (
    MAX_BATCH_QUESTIONS,
    MAX_FILTER_DOCUMENTS,
    MAX_FILTER_META,
    MAX_QUESTION_CHARS,
    MAX_SEARCH_K,
    MAX_SOURCE_CHARS,
    NOT_BOOL,
    Offset,
    Strict,
    clean_question,
)


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
