"""Score each response against its gold item (SQuAD 2.0-style answers, ranks, BEIR nDCG and recall, citation
contracts), and check the gold set against the index."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rag.evaluation.datasets import GoldItem, GoldSet
from rag.evaluation.metrics import exact_match, f1, ndcg_at, recall_at
from rag.evaluation.results import CORRECT_F1, Observation, PredictedAnswer, QuestionResult


def distinct_documents(passages: Sequence[tuple[str, int, int]]) -> tuple[str, ...]:
    """Document ids ranked by their first passage."""
    return tuple(dict.fromkeys(doc for doc, _, _ in passages))


def cites_correctly(answer: PredictedAnswer, document_text: str | None) -> bool:
    """The answer's document offsets point at exactly its text in the cited document. A contract check: the
    service slices each answer out of the document it cites, so this fails only on a bug."""
    return document_text is not None and document_text[answer.start : answer.end] == answer.text


def score_item(item: GoldItem, obs: Observation, kind: str, texts: Mapping[str, str | None]) -> QuestionResult:
    """Score one response against its gold item; ``texts`` holds the cited documents' texts."""
    if obs.error is not None:
        return QuestionResult(item=item, latency_ms=obs.latency_ms, rank=None, error=obs.error)
    if kind == "retrieval":
        ranked = distinct_documents(obs.passages)
        rank = next((i for i, doc in enumerate(ranked, 1) if item.relevance.get(doc, 0) > 0), None)
        return QuestionResult(
            item=item,
            latency_ms=obs.latency_ms,
            rank=rank,
            timings_ms=obs.timings_ms,
            ranked_documents=ranked,
            ndcg10=ndcg_at(ranked, dict(item.relevance), 10),
            recall100=recall_at(ranked, dict(item.relevance), 100),
        )
    rank = next((i for i, p in enumerate(obs.passages, 1) if item.passage_counts(*p)), None)
    top = obs.answers[0] if obs.answers else None
    prediction = "" if obs.no_answer or top is None else top.text
    golds = item.answer_texts
    if item.answerable:
        em, f1_score = exact_match(prediction, golds), f1(prediction, golds)
    else:
        em = f1_score = float(obs.no_answer)
    citations = tuple(cites_correctly(a, texts.get(a.document_id)) for a in obs.answers)
    top_f1 = None if top is None else (f1(top.text, golds) if item.answerable else 0.0)
    right = item.answerable and top_f1 is not None and top_f1 >= CORRECT_F1  # as QuestionResult.correct
    candidate = top if top is not None else (obs.possible[0] if obs.possible else None)
    return QuestionResult(
        item=item,
        latency_ms=obs.latency_ms,
        rank=rank,
        timings_ms=obs.timings_ms,
        prediction=prediction,
        score=None if top is None else top.score,
        no_answer=obs.no_answer,
        em=em,
        f1=f1_score,
        top_f1=top_f1,
        candidate_score=None if candidate is None else candidate.score,
        candidate_right=None
        if candidate is None
        else bool(item.answerable and f1(candidate.text, golds) >= CORRECT_F1),
        citations_ok=citations,
        top_document_gold=(top.document_id == item.document_id) if item.answerable and top is not None else None,
        cites_gold_passage=item.cites_gold_passage(top.document_id, top.start, top.end) if right and top else None,
    )


def check_gold(gold: GoldSet, texts: Mapping[str, str | None]) -> list[str]:
    """Gold documents that the index lacks and answer offsets that do not point at the answer text."""
    issues: list[str] = []
    for doc in sorted({a.document_id for i in gold.items for a in i.answers}):
        if texts.get(doc) is None:
            issues.append(f"gold document {doc!r} is not in the index (wrong --index or --corpus?)")
    for item in gold.items:
        for a in item.answers:
            text = texts.get(a.document_id)
            if text is not None and text[a.start : a.end] != a.text:
                issues.append(f"{item.id}: gold answer {a.text!r} at {a.start}-{a.end} reads {text[a.start : a.end]!r}")
    return issues
