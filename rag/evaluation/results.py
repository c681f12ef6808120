"""What an evaluation run produces: each response as the service gave it (``Observation``), each question
scored (``QuestionResult``), the whole run (``EvalRun``), and the options it ran with (``RunOptions``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from rag.evaluation.datasets import GoldItem, GoldSet

Mode = Literal["url", "in-process", "serve"]

CORRECT_F1 = 0.5  # an answer "is right" for calibration when its F1 against gold reaches this
REQUEST_TIMEOUT_S = 300.0  # a slow CPU under load can take long; a hung service still ends the run


@dataclass(frozen=True, slots=True)
class PredictedAnswer:
    text: str
    score: float
    document_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Observation:
    """What the service said about one question (``error`` when it said nothing usable)."""

    latency_ms: float
    no_answer: bool = True
    answers: tuple[PredictedAnswer, ...] = ()
    passages: tuple[tuple[str, int, int], ...] = ()  # (document_id, start, end), in rank order
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    possible: tuple[PredictedAnswer, ...] = ()  # no answer: the candidates below the threshold, best first


@dataclass(frozen=True, slots=True)
class QuestionResult:
    """One question, scored. Answer fields are SQuAD 2.0-style: an unanswerable question scores 1 iff the
    service abstained. Retrieval-only (BEIR) items leave the answer fields at their defaults."""

    item: GoldItem
    latency_ms: float
    rank: int | None  # 1-based rank of the first passage (QA) or document (BEIR) that counts as gold
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    prediction: str = ""
    score: float | None = None  # the top answer's score, when there is an answer
    no_answer: bool = True
    em: float = 0.0
    f1: float = 0.0
    top_f1: float | None = None  # F1 of the top answer text, even when abstaining would have been right
    # The top candidate, given or not (a possible answer when the service declined): its score and whether it is
    # right, for the selective-QA figures (None: the service proposed nothing, or says nothing below its threshold).
    candidate_score: float | None = None
    candidate_right: bool | None = None
    citations_ok: tuple[bool, ...] = ()  # per returned answer: document.text[start:end] == text (a contract)
    top_document_gold: bool | None = None  # answerable and answered: the top answer cites the gold document
    # The top answer is right (see ``correct``) and its citation lies inside the gold passage; None when it is
    # not right or the gold set records no gold passage.
    cites_gold_passage: bool | None = None
    ranked_documents: tuple[str, ...] = ()  # BEIR: distinct document ids in rank order
    ndcg10: float | None = None
    recall100: float | None = None

    @property
    def correct(self) -> bool | None:
        """For calibration: the top answer is right (F1 >= 0.5; any answer to an unanswerable is wrong)."""
        if self.score is None:
            return None
        return self.item.answerable and (self.top_f1 or 0.0) >= CORRECT_F1


@dataclass(frozen=True, slots=True)
class EvalRun:
    gold: GoldSet
    results: tuple[QuestionResult, ...]
    wall_s: float  # questions only, without the document fetches for citation checks
    mode: Mode
    reader: str | None
    url: str | None
    index: str | None
    concurrency: int
    top_k: int
    gold_issues: tuple[str, ...] = ()
    batch_size: int = 1  # questions per request: > 1 when they went through POST /ask/batch


@dataclass(frozen=True, slots=True)
class RunOptions:
    top_k: int = 10  # passages asked of /ask (hit@10 and MRR@10 need 10)
    search_k: int = 200  # passages asked of /search for BEIR, deduplicated into documents
    concurrency: int = 4  # requests in flight at once (batches, with /ask/batch)
    batch_size: int = 16  # questions per POST /ask/batch where the service offers it; 1: one /ask per question
    request_timeout_s: float = REQUEST_TIMEOUT_S
    retries: int = 3  # on connection errors and 503 (the service's queue is full)
