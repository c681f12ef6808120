"""The benchmark's corpora and questions: the seed article, the SQuAD 2.0 articles (+ the seed), SciFact.

Questions come from SQuAD: the validation articles' questions time and score the service; the other articles'
questions (also indexed, never scored) feed the throughput runs, so that no question is ever asked twice and
the query-embedding cache never flatters a figure.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.loaders import load_paths, slug_id, squad_documents
from rag.squad import SquadQuestion, iter_questions, load_squad, select_articles
from rag.types import Document

SEED = 13


@dataclass(frozen=True, slots=True)
class Corpus:
    name: str
    documents: tuple[Document, ...]
    description: str


@dataclass(frozen=True, slots=True)
class Question:
    """A SQuAD question with its gold paragraph as a span of the indexed article document."""

    id: str
    text: str
    doc_id: str
    paragraph: tuple[int, int]  # [start, end) in the document
    context: str
    answers: tuple[str, ...]  # empty: unanswerable

    @classmethod
    def of(cls, q: SquadQuestion) -> Question:
        return cls(
            id=q.id,
            text=q.question,
            doc_id=slug_id(q.title),
            paragraph=(q.paragraph_start, q.paragraph_start + len(q.context)),
            context=q.context,
            answers=tuple(dict.fromkeys(a.text for a in q.answers)),
        )


@dataclass(frozen=True, slots=True)
class Data:
    corpora: tuple[Corpus, ...]
    serve: str  # the corpus the service is timed on (it holds the questions' articles)
    scored: tuple[Question, ...]  # validation questions whose article is indexed, shuffled
    extra: tuple[Question, ...]  # other indexed questions (throughput only), shuffled

    def corpus(self, name: str) -> Corpus:
        return next(c for c in self.corpora if c.name == name)


def seed_documents(seeds: Path) -> list[Document]:
    loaded = load_paths([seeds])
    if not loaded.documents:
        raise SystemExit(f"bench: no seed article under {seeds}")
    return loaded.documents


def load_data(
    shared: Path, seeds: Path, *, squad_articles: int | None, scifact_docs: int | None, corpora: Sequence[str]
) -> Data:
    """``squad_articles``: None for all 35 articles, else that many of the smallest validation articles.
    ``scifact_docs``: None for all 5,183 abstracts, else a fixed sample."""
    seed_docs = seed_documents(seeds)
    squad_path = shared / "data" / "squad-v2.0-dev" / "dev-v2.0.json"
    payload = load_squad(squad_path)
    validation = select_articles(payload, "validation")
    out: list[Corpus] = []
    if "seed" in corpora:
        out.append(Corpus("seed", tuple(seed_docs), f"{len(seed_docs)} seed article(s)"))
    if squad_articles is None:
        indexed = list(payload["data"])
        squad_docs = load_paths([squad_path, seeds]).documents  # the way `rag ingest` reads them
        desc = f"all {len(indexed)} SQuAD 2.0 dev articles + seed"
    else:
        indexed = sorted(validation, key=lambda a: sum(len(p["context"]) for p in a["paragraphs"]))[:squad_articles]
        squad_docs = squad_documents({"data": indexed}, source=str(squad_path)) + seed_docs
        desc = f"{len(indexed)} SQuAD 2.0 validation articles + seed (quick)"
    paragraphs = sum(len(a["paragraphs"]) for a in indexed)
    out.append(Corpus("squad", tuple(squad_docs), f"{desc}; {paragraphs:,} paragraphs"))
    if "scifact" in corpora:
        scifact_docs_all = load_paths([shared / "data" / "scifact" / "corpus.jsonl"]).documents
        if scifact_docs is not None and scifact_docs < len(scifact_docs_all):
            chosen = sorted(random.Random(SEED).sample(range(len(scifact_docs_all)), scifact_docs))
            scifact_docs_all = [scifact_docs_all[i] for i in chosen]
            desc = f"SciFact, a fixed sample of {scifact_docs} abstracts (quick)"
        else:
            desc = f"SciFact, all {len(scifact_docs_all):,} abstracts"
        out.append(Corpus("scifact", tuple(scifact_docs_all), desc))
    indexed_titles = {a["title"] for a in indexed}
    validation_titles = {a["title"] for a in validation}
    scored = [Question.of(q) for q in iter_questions(a for a in indexed if a["title"] in validation_titles)]
    extra = [Question.of(q) for q in iter_questions(a for a in indexed if a["title"] not in validation_titles)]
    if not extra:  # quick: only validation articles are indexed; unscored questions may come from any article
        extra = [Question.of(q) for q in iter_questions(a for a in payload["data"] if a["title"] not in indexed_titles)]
    rng = random.Random(SEED)
    rng.shuffle(scored)
    rng.shuffle(extra)
    return Data(tuple(out), "squad", tuple(scored), tuple(extra))


class QuestionPool:
    """Hands out questions, each once: scored ones first where asked for, then the rest."""

    def __init__(self, scored: Sequence[Question], extra: Sequence[Question]) -> None:
        self._scored: Iterator[Question] = iter(scored)
        self._extra: Iterator[Question] = iter(extra)

    def scored(self, n: int) -> list[Question]:
        out = [q for _, q in zip(range(n), self._scored, strict=False)]
        if len(out) < n:
            raise SystemExit(f"bench: only {len(out)} validation questions left, {n} wanted; lower --questions")
        return out

    def any(self, n: int) -> list[Question]:
        out = [q for _, q in zip(range(n), self._extra, strict=False)]
        if len(out) < n:
            out += [q for _, q in zip(range(n - len(out)), self._scored, strict=False)]
        if len(out) < n:
            raise SystemExit(f"bench: ran out of distinct questions ({n} wanted); lower --requests")
        return out
