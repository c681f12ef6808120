"""What users say about answers, kept durably, and turned into a gold set that ``rag eval`` reads.

A record is one verdict on one question: the answer shown was ``right`` or ``wrong``, the articles do not hold
it (``not_in_articles``), or the answer is this span (``answer_is``: a document and exact offsets, checked
against the document). Each record keeps the checksum of every document it points into and the index generation
it was given on, so a document replaced or deleted later makes the record *stale* instead of pointing at the
wrong text.

Storage is one append-only JSON-lines file: a record is written, flushed and fsynced (and on the file's first
write its folder too) before it is acknowledged, so an acknowledged record survives a crash; a line torn by a
crash mid-write is skipped when read. The file is bounded (``max_bytes``): past it, ``FeedbackFull``.

Export (``export_gold``) resolves each question's records in the order they were given: ``right`` and
``answer_is`` make a span gold, ``wrong`` makes the shown span a negative (never gold on its own), and
``not_in_articles`` makes the question unanswerable; the latest verdict on a span wins, and the question is
unanswerable when its latest verdict that is not ``wrong`` says so.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import RagError, ValidationError
from rag.store.files import fsync_dir
from rag.types import Document

VERDICTS = ("right", "wrong", "not_in_articles", "answer_is")
#: Longest question and answer a record keeps, in characters.
MAX_QUESTION_CHARS = 2000
MAX_ANSWER_CHARS = 2000


class FeedbackFull(RagError):
    """The feedback file reached its size limit."""


@dataclass(frozen=True, slots=True)
class Span:
    """``document.text[start:end]`` of the document ``document_id``; ``text`` and ``checksum`` as when given."""

    document_id: str
    start: int
    end: int
    text: str = ""
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    question: str
    verdict: str
    answer: Span | None = None  # answer_is: the span the user selected
    shown: Span | None = None  # right / wrong: the answer that was shown
    shown_score: float | None = None
    generation: int = 0  # the index commit the answer was given on
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedbackRecord:
        spans = {k: Span(**data[k]) if data.get(k) else None for k in ("answer", "shown")}
        return cls(**{**data, **spans})


def checked_span(document: Document, start: int, end: int, what: str) -> Span:
    """The span ``[start, end)`` of ``document`` with its text and the document's checksum; ValidationError
    naming ``what`` when the offsets do not fit the document or select nothing but whitespace."""
    full = document.text  # (read once: a loaded document reads its text from its segment's file)
    n = len(full)
    if not 0 <= start < end <= n:
        raise ValidationError(f"{what}: start {start} and end {end} must satisfy 0 <= start < end <= {n}")
    if end - start > MAX_ANSWER_CHARS:
        raise ValidationError(f"{what}: {end - start} characters; an answer is at most {MAX_ANSWER_CHARS}")
    text = full[start:end]
    if not text.strip():
        raise ValidationError(f"{what}: the span {start}..{end} holds only whitespace")
    return Span(document.id, start, end, text, document.checksum)


def make_record(
    question: str,
    verdict: str,
    get_document: Callable[[str], Document | None],
    *,
    answer: tuple[str, int, int] | None = None,
    shown: tuple[str, int, int] | None = None,
    shown_score: float | None = None,
    generation: int = 0,
) -> FeedbackRecord:
    """A record checked against the documents as they are now (ValidationError names what is wrong)."""
    question = " ".join(question.split())
    if not question:
        raise ValidationError("question: empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValidationError(f"question: {len(question)} characters; at most {MAX_QUESTION_CHARS}")
    if verdict not in VERDICTS:
        raise ValidationError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if verdict == "answer_is" and answer is None:
        raise ValidationError("verdict 'answer_is' needs 'answer': the document and offsets of the right span")
    if verdict in ("right", "wrong") and shown is None:
        raise ValidationError(f"verdict {verdict!r} needs 'shown': the answer that was shown")

    def span(given: tuple[str, int, int] | None, what: str) -> Span | None:
        if given is None:
            return None
        doc_id, start, end = given
        document = get_document(doc_id)
        if document is None:
            raise ValidationError(f"{what}: no document with id {doc_id!r}")
        return checked_span(document, start, end, what)

    return FeedbackRecord(
        question=question,
        verdict=verdict,
        answer=span(answer, "answer"),
        shown=span(shown, "shown"),
        shown_score=shown_score,
        generation=generation,
    )


class FeedbackStore:
    """Append-only, fsynced, bounded JSON lines at ``path`` (one writer per process; appends from several
    processes are whole lines, as each is one ``write`` of less than the pipe buffer's worth)."""

    def __init__(self, path: Path, max_bytes: int = 50 * 2**20) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._questions: dict[str, int] | None = None  # question (lower case) -> records, read once then kept

    def counts(self) -> tuple[int, int]:
        """(records, distinct questions), read from the file once and then kept up to date by ``append``."""
        with self._lock:
            if self._questions is None:
                self._questions = {}
                for r in self.records():
                    key = r.question.lower()
                    self._questions[key] = self._questions.get(key, 0) + 1
            return sum(self._questions.values()), len(self._questions)

    def append(self, record: FeedbackRecord) -> None:
        line = (record.to_json() + "\n").encode("utf-8")
        with self._lock:
            size = self.path.stat().st_size if self.path.exists() else 0
            if size + len(line) > self.max_bytes:
                raise FeedbackFull(
                    f"the feedback file {self.path} holds {size:,} bytes; its limit is {self.max_bytes:,} "
                    "(RAG_FEEDBACK_MAX_BYTES): export it (rag feedback export) and move it away"
                )
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
            if new:  # the file's own entry in its folder, so the first record survives a power loss too
                fsync_dir(self.path.parent)
            if self._questions is not None:
                key = record.question.lower()
                self._questions[key] = self._questions.get(key, 0) + 1

    def records(self) -> list[FeedbackRecord]:
        """Every whole record, in the order given (a torn or unreadable line is skipped)."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(FeedbackRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError, KeyError):
                continue
        return out


def _fresh(span: Span | None, get_document: Callable[[str], Document | None]) -> bool:
    if span is None:
        return True
    document = get_document(span.document_id)
    return document is not None and document.checksum == span.checksum


@dataclass
class Export:
    gold: list[dict]  # rag eval's JSONL records
    negatives: list[dict]  # spans users marked wrong (and never right since)
    stale: int  # records pointing into a document that changed or is gone
    records: int


def export_gold(records: Sequence[FeedbackRecord], get_document: Callable[[str], Document | None]) -> Export:
    """The gold set (and the negatives) the records say, resolved per question in the order given."""
    by_question: dict[str, list[FeedbackRecord]] = {}
    stale = 0
    for r in sorted(records, key=lambda r: r.created):
        if not (_fresh(r.answer, get_document) and _fresh(r.shown, get_document)):
            stale += 1
            continue
        by_question.setdefault(r.question.lower(), []).append(r)
    gold, negatives = [], []
    for n, (_, items) in enumerate(sorted(by_question.items()), start=1):
        spans: dict[tuple[str, int, int], tuple[bool, Span]] = {}
        unanswerable = False
        for r in items:
            span = r.answer if r.verdict == "answer_is" else r.shown
            if r.verdict in ("right", "answer_is") and span is not None:
                spans[(span.document_id, span.start, span.end)] = (True, span)
                unanswerable = False
            elif r.verdict == "wrong" and span is not None:
                spans[(span.document_id, span.start, span.end)] = (False, span)
            elif r.verdict == "not_in_articles":
                unanswerable = True
        question = items[-1].question
        right = [s for ok, s in spans.values() if ok]
        for ok, s in spans.values():
            if not ok:
                negatives.append({"question": question, **_answer(s)})
        if unanswerable:
            gold.append({"id": f"feedback-{n:05d}", "question": question, "answerable": False, "answers": []})
        elif right:
            gold.append(
                {
                    "id": f"feedback-{n:05d}",
                    "question": question,
                    "answerable": True,
                    "document_id": right[-1].document_id,
                    "answers": [_answer(s) for s in reversed(right)],
                }
            )
    return Export(gold, negatives, stale, len(records))


def _answer(span: Span) -> dict:
    return {"text": span.text, "document_id": span.document_id, "start": span.start, "end": span.end}


def last_evaluation(folder: Path) -> dict | None:
    """What the last ``rag feedback eval`` measured on the exported gold set (its ``summary.json`` in ``folder``):
    questions, F1 and EM over them (a decline is right on a question the articles do not answer), the share
    answered, and when. None when there has been none, or it cannot be read."""
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
        abstention, answers = summary["abstention"], summary["answers"]
        n = int(summary["n"])
        declined_right = abstention.get("no_ans_accuracy") or 0.0  # None when no question is unanswerable
        answered = int(answers.get("n_answered", 0)) + round(abstention.get("n_unanswerable", 0) * (1 - declined_right))
        return {
            "created": summary["created"],
            "questions": n,
            "f1": round(100 * float(abstention["overall_f1"]), 1),
            "em": round(100 * float(abstention["overall_em"]), 1),
            "answered": round(100 * answered / n, 1) if n else 0.0,
            "reader": summary.get("reader"),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_jsonl(rows: Iterable[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)
    return path
