"""SQuAD-format data: recognise it, read it, and split it the way the project reports it.

The split is fixed in ``../shared/data/README.md``: the last seven article titles (sorted) are the
validation articles; everything fitted or tuned may look at the other articles only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import LoadError

#: The validation articles of SQuAD 2.0 dev (fixed split, see ../shared/data/README.md).
VALIDATION_TITLES: frozenset[str] = frozenset(
    {
        "Sky_(United_Kingdom)",
        "Southern_California",
        "Steam_engine",
        "University_of_Chicago",
        "Victoria_(Australia)",
        "Warsaw",
        "Yuan_dynasty",
    }
)

#: Paragraphs of one article are joined with this separator into one document text.
PARAGRAPH_SEPARATOR = "\n\n"


@dataclass(frozen=True, slots=True)
class GoldAnswer:
    text: str
    start: int  # offset into the paragraph (context)


@dataclass(frozen=True, slots=True)
class SquadQuestion:
    """One SQuAD question with its paragraph, and where that paragraph sits in the article document."""

    id: str
    question: str
    title: str
    context: str
    answers: tuple[GoldAnswer, ...]
    is_impossible: bool
    paragraph_index: int
    paragraph_start: int  # offset of the paragraph in the joined article text

    @property
    def document_id(self) -> str:
        return self.title


def is_squad(payload: Any) -> bool:
    """True when a parsed JSON value has the SQuAD structure (v1.1 or v2.0), whatever the file is called."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list) or not payload["data"]:
        return False
    first = payload["data"][0]
    return (
        isinstance(first, dict)
        and "title" in first
        and isinstance(first.get("paragraphs"), list)
        and all(isinstance(p, dict) and "context" in p for p in first["paragraphs"][:3])
    )


def load_squad(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoadError(f"cannot read SQuAD file {path}: {exc}") from exc
    if not is_squad(payload):
        raise LoadError(f"{path} is not SQuAD-format JSON (expected data[].title and data[].paragraphs[].context)")
    return payload


def article_text(article: dict[str, Any]) -> tuple[str, list[int]]:
    """The article as one text (paragraphs joined by a blank line) and each paragraph's start offset."""
    starts: list[int] = []
    pos = 0
    for paragraph in article["paragraphs"]:
        starts.append(pos)
        pos += len(paragraph["context"]) + len(PARAGRAPH_SEPARATOR)
    return PARAGRAPH_SEPARATOR.join(p["context"] for p in article["paragraphs"]), starts


def select_articles(payload: dict[str, Any], split: str = "all") -> list[dict[str, Any]]:
    """Articles of a split: ``train`` (the 28 tuning articles), ``validation`` (the fixed 7) or ``all``."""
    if split not in {"train", "validation", "all"}:
        raise ValueError(f"split must be train, validation or all, got {split!r}")
    articles = payload["data"]
    if split == "train":
        return [a for a in articles if a["title"] not in VALIDATION_TITLES]
    if split == "validation":
        return [a for a in articles if a["title"] in VALIDATION_TITLES]
    return list(articles)


def iter_questions(articles: Iterable[dict[str, Any]]) -> Iterator[SquadQuestion]:
    for article in articles:
        _, starts = article_text(article)
        for index, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                impossible = bool(qa.get("is_impossible", False)) or not qa.get("answers")
                answers = tuple(
                    dict.fromkeys(GoldAnswer(a["text"], int(a["answer_start"])) for a in qa.get("answers", []))
                )
                yield SquadQuestion(
                    id=str(qa["id"]),
                    question=qa["question"],
                    title=article["title"],
                    context=paragraph["context"],
                    answers=() if impossible else answers,
                    is_impossible=impossible,
                    paragraph_index=index,
                    paragraph_start=starts[index],
                )
