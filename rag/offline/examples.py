"""Training examples that look like serving: chunks as the index cuts them, plus chunks retrieval returns.

At serving time the reader never sees a SQuAD paragraph: it sees the chunks the index made of an article
(rag/chunking.py, the service's settings) and a few of them at once, most of which do not hold the answer.
So every training question here becomes a group of passages:

- the chunk of its article that holds its gold answer wholly (for an unanswerable question, the chunk that
  holds most of its paragraph), with the gold spans as character offsets into that chunk;
- ``negatives`` chunks that the project's own retrieval ranks highest for the question over an index of the
  *training* documents, excluding that chunk and any chunk that contains a gold answer's text.

Sources (never the validation articles, never the calibration articles): the SQuAD 2.0 dev training
articles, and the parts of the SQuAD training sets in ``../shared/data/squad-v2.0-train-part/``. Untitled
paragraphs whose answer position is ambiguous (``answer_start_ambiguous``) drop that answer.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.document_ids import slug_id
from rag.squad import article_text, load_squad
from rag.text import normalize_answer
from rag.types import Chunk


@dataclass(frozen=True, slots=True)
class GroupExample:
    """One question and the passages it is read against; ``answers`` are spans in ``passages[0]``."""

    id: str
    question: str
    title: str
    passages: tuple[str, ...]
    answers: tuple[tuple[int, int], ...]  # empty: none of the passages answers it
    source: str


@dataclass(frozen=True, slots=True)
class SourceQuestion:
    id: str
    question: str
    doc_id: str
    paragraph: tuple[int, int]  # the paragraph's span in the article text
    answers: tuple[tuple[int, int, str], ...]  # (start, end, text) in the article text
    source: str


def articles_from(payload: dict[str, Any], source: str) -> tuple[list[dict[str, Any]], list[SourceQuestion]]:
    """SQuAD articles as (documents' raw articles, questions with offsets into the joined article text)."""
    articles, questions = [], []
    for article in payload["data"]:
        text, starts = article_text(article)
        doc_id = slug_id(str(article["title"]))
        for p_index, paragraph in enumerate(article["paragraphs"]):
            base = starts[p_index]
            for qa in paragraph["qas"]:
                impossible = bool(qa.get("is_impossible", False)) or not qa.get("answers")
                spans = []
                for a in [] if impossible else qa["answers"]:
                    if a.get("answer_start_ambiguous"):
                        continue
                    start = base + int(a["answer_start"])
                    end = start + len(a["text"])
                    if text[start:end] == a["text"]:
                        spans.append((start, end, a["text"]))
                if not impossible and not spans:
                    continue  # every answer position unknown: skip rather than teach a wrong span
                questions.append(
                    SourceQuestion(
                        id=str(qa["id"]),
                        question=qa["question"],
                        doc_id=doc_id,
                        paragraph=(base, base + len(paragraph["context"])),
                        answers=tuple(dict.fromkeys(spans)),
                        source=source,
                    )
                )
        articles.append(article)
    return articles, questions


def gold_chunk(chunks: Sequence[Chunk], q: SourceQuestion, rng: random.Random) -> Chunk | None:
    """A chunk that holds a gold answer wholly (random among several), or most of an unanswerable
    question's paragraph."""
    if q.answers:
        holding = [c for c in chunks if any(c.start <= s and e <= c.end for s, e, _ in q.answers)]
        return rng.choice(holding) if holding else None
    p_start, p_end = q.paragraph
    overlap = [(min(c.end, p_end) - max(c.start, p_start), c) for c in chunks]
    best = max((o for o, _ in overlap), default=0)
    return rng.choice([c for o, c in overlap if o == best]) if best > 0 else None


def build_groups(
    questions: Sequence[SourceQuestion],
    index,
    search: Callable[[str, int], list],
    *,
    negatives: int = 1,
    seed: int = 13,
    log: Callable[[str], None] = print,
) -> list[GroupExample]:
    """One GroupExample per question; ``search(question, k)`` is the project's retrieval (hits best first)."""
    rng = random.Random(seed)
    out: list[GroupExample] = []
    started = time.perf_counter()
    lost = 0
    for i, q in enumerate(questions):
        chunks = index.chunks_of(q.doc_id)
        gold = gold_chunk(chunks, q, rng)
        if gold is None:
            lost += 1
            continue
        answers = tuple(
            sorted({(s - gold.start, e - gold.start) for s, e, _ in q.answers if gold.start <= s and e <= gold.end})
        )
        texts = [normalize_answer(t) for _, _, t in q.answers]
        passages = [gold.text]
        if negatives:
            for hit in search(q.question, negatives + 6):
                c = hit.chunk
                if c.key == gold.key:
                    continue
                body = normalize_answer(c.text)
                if any(t and t in body for t in texts):
                    continue  # it may answer the question: not a negative
                passages.append(c.text)
                if len(passages) > negatives:
                    break
        out.append(GroupExample(q.id, q.question, q.doc_id, tuple(passages), answers, q.source))
        if (i + 1) % 1000 == 0:
            log(f"  groups {i + 1}/{len(questions)}, {(time.perf_counter() - started) / (i + 1) * 1000:.1f} ms each")
    if lost:
        log(f"  {lost} questions had no chunk holding their answer (answer across a chunk cut): left out")
    return out


def save_groups(groups: Iterable[GroupExample], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for g in groups:
            fh.write(json.dumps(asdict(g), ensure_ascii=False) + "\n")
    tmp.replace(path)


def load_groups(path: Path) -> list[GroupExample]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            out.append(
                GroupExample(
                    d["id"],
                    d["question"],
                    d["title"],
                    tuple(d["passages"]),
                    tuple(tuple(a) for a in d["answers"]),  # type: ignore[misc]
                    d["source"],
                )
            )
    return out


def training_sources(squad_dev: str, train_part: str | None, exclude_titles: Iterable[str]) -> list[tuple[str, dict]]:
    """(source name, SQuAD payload) for every training source; ``exclude_titles`` (validation and calibration
    articles) are removed from the dev payload."""
    from rag.squad import select_articles

    excluded = set(exclude_titles)
    dev = load_squad(squad_dev)
    dev_train = [a for a in select_articles(dev, "train") if a["title"] not in excluded]
    sources = [("squad2-dev-train", {"data": dev_train})]
    if train_part:
        folder = Path(train_part)
        for name, file in (
            ("squad2-train-first10", "train-v2.0-first10.json"),
            ("squad1-train-4", "train-v1.1-4-articles.json"),
            ("squad-train-untitled", "train-paragraphs-untitled.json"),
        ):
            if (folder / file).is_file():
                sources.append((name, load_squad(folder / file)))
    return sources


#: The answerable-only sets of ``../shared/data/qa-more/`` a shipped reader may train on. The Reddit file
#: (``squadshifts-reddit.json``) is reserved as the unseen domain for adaptation from user feedback.
QA_MORE_FILES = (
    ("squadshifts-new-wiki", "squadshifts-new-wiki.json"),
    ("squadshifts-amazon", "squadshifts-amazon-reviews.json"),
    ("tydiqa-train", "tydiqa-goldp-english-train.json"),
    ("tydiqa-dev", "tydiqa-goldp-english-dev.json"),
)
RESERVED_FILES = frozenset({"squadshifts-reddit.json"})


def qa_more_sources(folder: str | Path) -> list[tuple[str, dict]]:
    """(source name, SQuAD payload) for each qa-more file a reader may train on, with titles made unique
    (TyDi has one "article" per passage, and several passages can share a Wikipedia title)."""
    out = []
    seen: set[str] = set()
    for name, file in QA_MORE_FILES:
        path = Path(folder) / file
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing (see ../shared/data/README.md)")
        payload = load_squad(path)
        for article in payload["data"]:
            title = str(article["title"])
            unique, n = title, 1
            while slug_id(unique) in seen:
                n += 1
                unique = f"{title} ({name} {n})"
            article["title"] = unique
            seen.add(slug_id(unique))
        out.append((name, payload))
    return out


def near_miss(group: GroupExample, min_chars: int = 120) -> GroupExample | None:
    """The group with the sentence(s) holding its answers removed from the gold passage, labelled "no
    answer": the passage still covers the topic but no longer states the fact. None when the group has no
    answer, when too little text is left, or when an answer's text still occurs in any of its passages."""
    from rag.sentences import remove_answer_sentences

    if not group.answers:
        return None
    text = group.passages[0]
    rest = remove_answer_sentences(text, group.answers)
    if len(rest) < min_chars:
        return None
    golds = {normalize_answer(text[s:e]) for s, e in group.answers}
    bodies = [normalize_answer(p) for p in (rest, *group.passages[1:])]
    if any(g and g in body for g in golds for body in bodies):
        return None
    return GroupExample(
        f"{group.id}#near-miss", group.question, group.title, (rest, *group.passages[1:]), (), "near-miss"
    )
