"""The bodies of ``/feedback``: a user's verdict on an answer in, its record and the summary out."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    Field,
)

from rag.document_ids import MAX_ID_LENGTH
from service.schemas.common import (
    MAX_DOCUMENT_CHARS,
    MAX_QUESTION_CHARS,
    Strict,
)


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
