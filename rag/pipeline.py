"""Question in, cited answers out: embed the question, retrieve, read, calibrate, decide, cite.

The pipeline holds the models (loaded once) and takes the index snapshot per call, so a service can swap
snapshots under it while queries run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.answer_text import is_distinct, trim_span
from rag.decide import Calibrator, Candidate, candidate_features
from rag.embedding import Embedder
from rag.errors import ModelError, ValidationError
from rag.filters import Filters
from rag.lexical import BM25Index, LexicalSettings
from rag.reader_calibration import check_calibration_fits, default_calibrator, reader_weights_sha256
from rag.retrieval import RetrievalSettings, retrieve
from rag.sentences import sentence_around
from rag.store import CorpusIndex
from rag.text import normalize_answer
from rag.types import Answer, AskResult, Chunk, Embeddings, Hit

if TYPE_CHECKING:
    from rag.reader.model import PassageReading

READERS = ("trained", "heuristic")
MAX_TOP_K = 50


@dataclass(frozen=True, slots=True)
class Decision:
    """What ``decide`` made of one question's candidates."""

    answers: list[Answer]  # at or above the threshold, best score first
    possible: list[Answer]  # when there is no answer: the best candidates below the threshold
    reason: str | None  # when there is no answer: "not_covered" or "not_stated"
    threshold: float
    rule: str


@dataclass(frozen=True, slots=True)
class AskSettings:
    read_k: int = 3  # passages the reader reads (3 reads as well as 5 on training articles, at 60% of the cost)
    max_answers: int = 3  # distinct answers returned
    spans_per_passage: int = 3
    context_chars: int = 0  # 0: the whole passage is the context
    no_answer_threshold: float | None = None  # None: the calibrated threshold
    # ask_batch gives exactly ask's answers: with int8 models (whose results depend on what else a forward pass
    # holds) each question then gets its own passes; False lets questions share passes, faster but not exact.
    exact_batches: bool = True


class QAPipeline:
    """Owns the embedder, the reader and its calibrator; ``ask`` and ``search`` run against a snapshot."""

    def __init__(
        self,
        embedder: Embedder,
        reader,
        calibrator: Calibrator,
        *,
        reader_kind: str,
        retrieval: RetrievalSettings = RetrievalSettings(),
        settings: AskSettings = AskSettings(),
    ) -> None:
        if reader_kind not in READERS:
            raise ValidationError(f"reader must be one of {', '.join(READERS)}, got {reader_kind!r}")
        self.embedder = embedder
        self.reader = reader
        self.calibrator = calibrator
        self.reader_kind = reader_kind
        self.retrieval = retrieval
        self.settings = settings
        self.terms = BM25Index(LexicalSettings())  # its tokenizer only: stemmed terms for the features

    @classmethod
    def load(
        cls,
        reader_kind: str = "trained",
        *,
        reader_dir: str | Path | None = None,
        retrieval: RetrievalSettings = RetrievalSettings(),
        settings: AskSettings = AskSettings(),
        threads: int | None = None,
        embedder: Embedder | None = None,
        backend: str = "onnx-int8",
        calibrated: bool = True,
    ) -> QAPipeline:
        """Load the models once. ``calibrated=False`` skips the fitted calibration (to fit a new one)."""
        from rag.reader.model import DEFAULT_READER_DIR

        folder = Path(reader_dir) if reader_dir else DEFAULT_READER_DIR
        embedder = (embedder or Embedder()).load()
        reader: Any
        if reader_kind == "trained":
            from rag.reader.model import SpanReader

            reader = SpanReader.load(folder, threads=threads, backend=backend)
        elif reader_kind == "heuristic":
            from rag.reader.heuristic import HeuristicReader

            reader = HeuristicReader().load()
        else:
            raise ValidationError(f"reader must be one of {', '.join(READERS)}, got {reader_kind!r}")
        calibration = folder / f"calibration-{reader_kind}.json"
        if not calibrated:
            calibrator = default_calibrator(reader_kind)
        elif calibration.is_file():
            calibrator = Calibrator.load(calibration, reader_sha256=reader_weights_sha256(reader_kind, folder))
            check_calibration_fits(calibrator, calibration, reader_kind, settings.read_k, backend)
        else:
            raise ModelError(
                f"no calibration for the {reader_kind} reader at {calibration}; "
                f"fit it with: rag fit-calibration --reader {reader_kind}"
                + (f" --reader-dir {folder}" if reader_dir else "")
            )
        return cls(embedder, reader, calibrator, reader_kind=reader_kind, retrieval=retrieval, settings=settings)

    # -------------------------------------------------------------------------------------------- search

    def search(
        self,
        index: CorpusIndex,
        query: str,
        k: int,
        filters: Filters | None = None,
        *,
        vector: Embeddings | None = None,
    ) -> tuple[list[Hit], dict[str, float]]:
        """The ``k`` best passages for ``query``; ``vector``: its embedding, when it is already known."""
        check_top_k(k, "k", limit=200)
        t0 = time.perf_counter()
        vector = self.embedder.encode_query(query) if vector is None else vector
        t1 = time.perf_counter()
        hits = retrieve(index, query, vector, k, self.retrieval, filters=filters)
        t2 = time.perf_counter()
        return hits, {"embed": ms(t1 - t0), "retrieve": ms(t2 - t1), "total": ms(t2 - t0)}

    # -------------------------------------------------------------------------------------------- ask

    def ask(
        self,
        index: CorpusIndex,
        question: str,
        top_k: int = 5,
        max_answers: int | None = None,
        filters: Filters | None = None,
        min_score: float | None = None,
    ) -> AskResult:
        """Answer one question; ``min_score`` overrides the service's threshold for this question."""
        check_top_k(top_k, "top_k", limit=MAX_TOP_K)
        check_min_score(min_score)
        max_answers = max_answers or self.settings.max_answers
        t0 = time.perf_counter()
        hits, timings = self.search(index, question, max(top_k, self.settings.read_k), filters)
        t1 = time.perf_counter()
        read_hits = hits[: self.settings.read_k]
        passages = [h.chunk.text for h in read_hits]
        candidates = self.read(question, passages)
        t2 = time.perf_counter()
        decided = self.decide(question, candidates, read_hits, passages, index, max_answers, min_score)
        t3 = time.perf_counter()
        timings.update({"read": ms(t2 - t1), "decide": ms(t3 - t2), "total": ms(t3 - t0)})
        return self.result(index, question, decided, hits, top_k, timings)

    def ask_batch(
        self,
        index: CorpusIndex,
        questions: Sequence[str],
        top_k: int = 5,
        max_answers: int | None = None,
        filters: Filters | None = None,
        min_score: float | None = None,
    ) -> list[AskResult]:
        """``ask`` for many questions at once, with the same answers: the questions are embedded together,
        retrieved one by one, read together (the trained reader's forward passes batched across questions) and
        decided one by one. With int8 models, whose results depend on what else a pass holds, each question keeps
        its own passes (embedding and reading) unless ``settings.exact_batches`` is off. Each result's ``embed``
        and ``read`` timings are its share of the batch's (the batch's time over the number of questions), so that
        the results' totals add up to the batch's time."""
        check_top_k(top_k, "top_k", limit=MAX_TOP_K)
        check_min_score(min_score)
        max_answers = max_answers or self.settings.max_answers
        if not questions:
            return []
        n = len(questions)
        t0 = time.perf_counter()
        vectors = self.embedder.encode_queries(questions, exact=self.settings.exact_batches)
        embed = ms((time.perf_counter() - t0) / n)
        retrieved: list[list[Hit]] = []
        timings: list[dict[str, float]] = []
        for i, question in enumerate(questions):
            hits, searched = self.search(
                index, question, max(top_k, self.settings.read_k), filters, vector=vectors[i : i + 1]
            )
            retrieved.append(hits)
            timings.append({"embed": embed, "retrieve": searched["retrieve"]})
        t1 = time.perf_counter()
        passages = [[h.chunk.text for h in hits[: self.settings.read_k]] for hits in retrieved]
        candidates = self.read_many(list(zip(questions, passages, strict=True)))
        read = ms((time.perf_counter() - t1) / n)
        results = []
        for i, question in enumerate(questions):
            t2 = time.perf_counter()
            hits = retrieved[i]
            decided = self.decide(
                question, candidates[i], hits[: self.settings.read_k], passages[i], index, max_answers, min_score
            )
            timings[i].update({"read": read, "decide": ms(time.perf_counter() - t2)})
            timings[i]["total"] = round(sum(timings[i].values()), 2)
            results.append(self.result(index, question, decided, hits, top_k, timings[i]))
        return results

    def result(
        self,
        index: CorpusIndex,
        question: str,
        decided: Decision,
        hits: Sequence[Hit],
        top_k: int,
        timings: dict[str, float],
    ) -> AskResult:
        """One question's result: its answers, and its ``top_k`` passages with their titles."""
        return AskResult(
            question=question,
            no_answer=not decided.answers,
            answers=tuple(decided.answers),
            possible_answers=tuple(decided.possible),
            no_answer_reason=decided.reason,
            threshold=decided.threshold,
            threshold_rule=decided.rule,
            hits=tuple(hits[:top_k]),
            timings_ms=timings,
            titles={h.chunk.doc_id: index.documents[h.chunk.doc_id].title for h in hits[:top_k]},
            pages=hit_pages(index, hits[:top_k]),
        )

    def read(self, question: str, passages: Sequence[str]) -> list[Candidate]:
        if not passages:
            return []
        if self.reader_kind == "trained":
            return trained_candidates(self.reader.read(question, passages, top_n=self.settings.spans_per_passage))
        spans = self.reader.read(question, passages, top_n=self.settings.spans_per_passage)
        return [Candidate(s.passage_index, s.start, s.end, s.score, 0.0) for s in spans]

    def read_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[Candidate]]:
        """``read`` for many (question, passages) pairs: the trained reader reads them together, the heuristic
        reader (no model passes to batch) one by one."""
        if self.reader_kind != "trained":
            return [self.read(question, passages) for question, passages in items]
        readings = self.reader.read_many(
            items, top_n=self.settings.spans_per_passage, exact=self.settings.exact_batches
        )
        return [trained_candidates(r) for r in readings]

    def threshold(self, min_score: float | None = None) -> tuple[float, str]:
        """The score an answer needs, and the rule that set it: the request's, the operator's, or the fitted one."""
        if min_score is not None:
            return min_score, "min_score of the request"
        if self.settings.no_answer_threshold is not None:
            return self.settings.no_answer_threshold, "RAG_NO_ANSWER_THRESHOLD"
        rule = self.calibrator.fitted_on.get("threshold_rule", "fitted with the calibration")
        return self.calibrator.threshold, rule

    def decide(
        self,
        question: str,
        candidates: Sequence[Candidate],
        hits: Sequence[Hit],
        passages: Sequence[str],
        index: CorpusIndex,
        max_answers: int,
        min_score: float | None = None,
    ) -> Decision:
        """Score candidates and keep the distinct ones, best score first: those at or above the threshold are the
        answers; when none is, the question has no answer, the best few stay visible as possible answers, and
        the reason says whether the passages read were about the question at all."""
        threshold, rule = self.threshold(min_score)
        scored, rows = self.score(question, candidates, hits, passages)
        distinct: list[tuple[float, Chunk, int, int]] = []
        kept: list[tuple[str, int, int, str]] = []
        for prob, cand in scored:  # the ranker's order: of two copies of one answer, the better-ranked stays
            if len(distinct) >= max_answers:
                break
            chunk = hits[cand.hit_index].chunk
            trimmed = trim_span(passages[cand.hit_index], cand.start, cand.end)  # no markup at the edges
            if trimmed is None:
                continue
            start, end = trimmed
            text = passages[cand.hit_index][start:end]
            span = (chunk.doc_id, chunk.start + start, chunk.start + end, normalize_answer(text) or text)
            if not is_distinct(span, kept):
                continue
            kept.append(span)
            distinct.append((prob, chunk, span[1], span[2]))
        distinct.sort(key=lambda d: -d[0])  # listed by the score they show (the ranker's: the same order)

        def cited(items: Sequence[tuple[float, Chunk, int, int]]) -> list[Answer]:
            return [
                self.cite(index, c.doc_id, start, end, prob, c.chunk_id, c.start, c.end)
                for prob, c, start, end in items
            ]

        answers = cited([d for d in distinct if d[0] >= threshold])
        if answers:
            return Decision(answers, [], None, threshold, rule)
        possible = cited(distinct)
        reason = "not_stated" if rows and self.calibrator.covered(rows[0]) >= 0.5 else "not_covered"
        # not_covered: nothing retrieved is about the question (the calibration's coverage model, on the passages'
        # similarity and question-word coverage, or no candidate at all); not_stated: on topic, no span good enough.
        return Decision([], possible, reason, threshold, rule)

    def score(
        self, question: str, candidates: Sequence[Candidate], hits: Sequence[Hit], passages: Sequence[str]
    ) -> tuple[list[tuple[float, Candidate]], list[tuple[float, ...]]]:
        """(calibrated probability, candidate) in the ranker's order (best first), and the candidates' feature
        rows (in the candidates' order)."""
        if not candidates:
            return [], []
        rows = candidate_features(candidates, hits, passages, question, self.terms.tokenize)
        order = np.argsort(-self.calibrator.rank(rows), kind="stable")
        probs = self.calibrator.probability(rows)
        return [(float(probs[i]), candidates[i]) for i in order], rows

    def cite(
        self,
        index: CorpusIndex,
        doc_id: str,
        start: int,
        end: int,
        score: float,
        chunk_id: str,
        c_start: int,
        c_end: int,
    ) -> Answer:
        doc = index.documents[doc_id]
        text = doc.text  # (read once: a stored document reads it from disk on access)
        if self.settings.context_chars:
            c_start = max(0, start - self.settings.context_chars)
            c_end = min(len(text), end + self.settings.context_chars)
        context = text[c_start:c_end]
        s_start, s_end = sentence_around(text, start, end)
        return Answer(
            text=text[start:end],
            score=round(score, 4),
            doc_id=doc_id,
            title=doc.title,
            start=start,
            end=end,
            context=context,
            context_start=start - c_start,
            context_end=end - c_start,
            chunk_id=chunk_id,
            sentence=text[s_start:s_end],
            sentence_start=s_start,
            sentence_end=s_end,
            page=doc.page_at(start),
        )


def trained_candidates(readings: Sequence[PassageReading]) -> list[Candidate]:
    """The trained reader's spans as candidates, with its per-question normalisation (see PassageReading)."""
    return [
        Candidate(i, c.start, c.end, c.score, r.null_score, c.score - r.log_norm, r.null_logprob)
        for i, r in enumerate(readings)
        for c in r.candidates
    ]


def hit_pages(index: CorpusIndex, hits: Sequence[Hit]) -> dict[str, int]:
    """Chunk id -> the page its passage starts on, for the hits in documents with pages (PDFs)."""
    pages = {}
    for h in hits:
        if (page := index.documents[h.chunk.doc_id].page_at(h.chunk.start)) is not None:
            pages[h.chunk.chunk_id] = page
    return pages


def check_min_score(value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValidationError(f"min_score must be between 0 and 1, got {value}")


def check_top_k(value: int, name: str, limit: int) -> None:
    if not 1 <= value <= limit:
        raise ValidationError(f"{name} must be between 1 and {limit}, got {value}")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
