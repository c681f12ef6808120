"""The JSON shape of an answer, as the HTTP API returns it and `rag ask --json` prints it.

The library defines it once here; the service's response models (service/schemas/) validate and document
these same dicts, so the API and the command line cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from rag.types import Answer, AskResult, Hit


def offset(start: int, end: int) -> dict[str, int]:
    return {"start": start, "end": end}


def answer_json(a: Answer) -> dict[str, Any]:
    return {
        "text": a.text,
        "score": a.score,
        "document_id": a.doc_id,
        "title": a.title,
        "document_offset": offset(a.start, a.end),
        "context": a.context,
        "context_offset": offset(a.context_start, a.context_end),
        "chunk_id": a.chunk_id,
        "sentence": a.sentence,
        "sentence_offset": offset(a.sentence_start, a.sentence_end),
        "page": a.page,
    }


def passage_json(h: Hit, title: str, page: int | None = None) -> dict[str, Any]:
    return {
        "document_id": h.chunk.doc_id,
        "chunk_id": h.chunk.chunk_id,
        "title": title,
        "text": h.chunk.text,
        "score": round(h.score, 6),
        "dense_score": None if h.dense_score is None else round(h.dense_score, 4),
        "lexical_score": None if h.lexical_score is None else round(h.lexical_score, 4),
        "document_offset": offset(h.chunk.start, h.chunk.end),
        "page": page,
    }


def ask_json(r: AskResult) -> dict[str, Any]:
    return {
        "question": r.question,
        "no_answer": r.no_answer,
        "answers": [answer_json(a) for a in r.answers],
        "no_answer_reason": r.no_answer_reason,
        "possible_answers": [answer_json(a) for a in r.possible_answers],
        "threshold": None if r.threshold is None else round(r.threshold, 4),
        "threshold_rule": r.threshold_rule,
        "passages": [
            passage_json(h, r.titles.get(h.chunk.doc_id, h.chunk.doc_id), r.pages.get(h.chunk.chunk_id)) for h in r.hits
        ],
        "timings_ms": dict(r.timings_ms),
    }
