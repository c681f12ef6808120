"""Gold question sets for ``rag eval``: our JSONL, SQuAD JSON (v1.1/v2.0) and BEIR folders, as typed items.

Every format becomes the same ``GoldItem``: the question, whether it has an answer, the gold answers with
their offsets into the indexed document, the gold spans a retrieved passage is matched against, and, where
the format knows it, the gold passage an answer's citation should lie in (SQuAD: the question's paragraph;
our JSONL and BEIR have none). How a retrieved passage "counts" differs by format and is carried by
``GoldItem.rule``:

- ``contains``: our JSONL; the passage's document range holds a whole gold answer span;
- ``overlaps``: SQuAD; the passage overlaps the gold paragraph of the article document;
- ``relevance``: BEIR; a retrieved document id with a graded relevance > 0.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rag.document_ids import slug_id
from rag.errors import LoadError, ValidationError
from rag.squad import iter_questions, load_squad, select_articles

PassageRule = Literal["contains", "overlaps", "relevance"]
GoldFormat = Literal["jsonl", "squad", "beir"]
GoldKind = Literal["qa", "retrieval"]

SQUAD_SPLITS = ("train", "validation", "all")
#: --limit draws the same questions every time (this seed), spread over the whole set, in file order.
SAMPLE_SEED = 13


@dataclass(frozen=True, slots=True)
class GoldAnswer:
    """An accepted answer: ``document.text[start:end] == text`` in the indexed document."""

    text: str
    document_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class GoldSpan:
    """A region of a document that a retrieved passage is matched against (see ``GoldItem.rule``)."""

    document_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class GoldItem:
    """One gold question. QA items carry answers and spans; BEIR items carry ``relevance`` per corpus id."""

    id: str
    question: str
    answerable: bool
    answers: tuple[GoldAnswer, ...] = ()
    spans: tuple[GoldSpan, ...] = ()
    rule: PassageRule = "contains"
    relevance: Mapping[str, int] = field(default_factory=dict)
    type: str | None = None  # the question type our JSONL records (number, person, ...)
    evidence: tuple[GoldSpan, ...] = ()  # gold passages a citation should lie in; () when the gold set has none

    @property
    def answer_texts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.text for a in self.answers))

    @property
    def document_id(self) -> str | None:
        """The gold document: of the first answer, else of the first span (unanswerable SQuAD keeps one)."""
        if self.answers:
            return self.answers[0].document_id
        return self.spans[0].document_id if self.spans else None

    @property
    def has_gold_passage(self) -> bool:
        """Whether retrieval can be scored for this item at all."""
        if self.rule == "relevance":
            return any(r > 0 for r in self.relevance.values())
        return bool(self.spans)

    def passage_counts(self, document_id: str, start: int, end: int) -> bool:
        """Whether a retrieved passage (``document_id``, ``[start, end)``) counts as a gold passage."""
        if self.rule == "relevance":
            return self.relevance.get(document_id, 0) > 0
        for span in self.spans:
            if span.document_id != document_id:
                continue
            if self.rule == "contains" and start <= span.start and span.end <= end:
                return True
            if self.rule == "overlaps" and start < span.end and span.start < end:
                return True
        return False

    def cites_gold_passage(self, document_id: str, start: int, end: int) -> bool | None:
        """Whether a citation (``document_id``, ``[start, end)``) lies inside a gold passage; None when the
        gold passage is unknown (our JSONL and BEIR record none)."""
        if not self.evidence:
            return None
        return any(e.document_id == document_id and e.start <= start and end <= e.end for e in self.evidence)


@dataclass(frozen=True, slots=True)
class GoldSet:
    """A loaded gold file: ``kind`` says whether it is asked (/ask, ``qa``) or only searched (/search)."""

    name: str
    format: GoldFormat
    kind: GoldKind
    source: str
    split: str | None
    items: tuple[GoldItem, ...]

    def sample(self, limit: int | None) -> GoldSet:
        """At most ``limit`` items: a fixed random sample (same every run), kept in file order."""
        if limit is None or limit >= len(self.items):
            return self
        if limit < 1:
            raise ValidationError(f"limit must be at least 1, got {limit}")
        chosen = sorted(random.Random(SAMPLE_SEED).sample(range(len(self.items)), limit))
        return replace(self, items=tuple(self.items[i] for i in chosen))


# ---------------------------------------------------------------------------------------------- dispatch


def detect_format(path: str | Path) -> GoldFormat:
    """``beir`` for a folder, ``jsonl`` for .jsonl/.ndjson, ``squad`` for JSON with the SQuAD structure."""
    path = Path(path)
    if path.is_dir():
        return "beir"
    if not path.is_file():
        raise LoadError(f"gold file {path} does not exist")
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return "jsonl"
    if path.suffix.lower() == ".json":
        return "squad"  # load_squad checks the structure and says what is wrong
    raise LoadError(f"gold {path}: expected a .jsonl file, a SQuAD .json file or a BEIR folder")


def load_gold(path: str | Path, split: str | None = None) -> GoldSet:
    """Any supported gold input. ``split``: SQuAD train|validation|all (default validation), BEIR test|train|..."""
    fmt = detect_format(path)
    if fmt == "jsonl":
        if split is not None:
            raise ValidationError(
                f"--split applies to SQuAD and BEIR gold only, not to {Path(path).name}; got {split!r}"
            )
        return load_jsonl_gold(path)
    if fmt == "squad":
        return load_squad_gold(path, split or "validation")
    return load_beir_gold(path, split or "test")


# ---------------------------------------------------------------------------------------------- our JSONL


def _int(record: Mapping[str, Any], key: str, where: str) -> int:
    value = record.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise LoadError(f"{where}: {key!r} must be a non-negative integer, got {value!r}")
    return value


def _jsonl_item(record: Any, where: str) -> GoldItem:
    if not isinstance(record, dict):
        raise LoadError(f"{where}: expected an object, got {type(record).__name__}")
    qid, question = record.get("id"), record.get("question")
    if not isinstance(qid, str | int) or isinstance(qid, bool) or str(qid) == "":
        raise LoadError(f"{where}: 'id' must be a non-empty string, got {qid!r}")
    if not isinstance(question, str) or not question.strip():
        raise LoadError(f"{where}: 'question' must be a non-empty string, got {question!r}")
    raw_answers = record.get("answers") or []
    if not isinstance(raw_answers, list):
        raise LoadError(f"{where}: 'answers' must be a list, got {type(raw_answers).__name__}")
    answerable = record.get("answerable", bool(raw_answers))
    if not isinstance(answerable, bool):
        raise LoadError(f"{where}: 'answerable' must be true or false, got {answerable!r}")
    if answerable and not raw_answers:
        raise LoadError(f"{where}: question {qid!r} is answerable but has no answers")
    if not answerable and raw_answers:
        raise LoadError(f"{where}: question {qid!r} is not answerable but lists {len(raw_answers)} answers")
    default_doc = record.get("document_id")
    answers = []
    for i, raw in enumerate(raw_answers):
        here = f"{where} answer {i + 1}"
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str) or not raw["text"]:
            raise LoadError(f"{here}: expected {{'text', 'start', 'end'}} with a non-empty text, got {raw!r}")
        doc = raw.get("document_id", default_doc)
        if not isinstance(doc, str) or not doc:
            raise LoadError(f"{here}: no 'document_id' (on the record or the answer)")
        start, end = _int(raw, "start", here), _int(raw, "end", here)
        if end - start != len(raw["text"]):
            raise LoadError(
                f"{here}: {raw['text']!r} has {len(raw['text'])} characters but start={start}, end={end} "
                f"span {end - start}"
            )
        answers.append(GoldAnswer(raw["text"], doc, start, end))
    qtype = record.get("type")
    return GoldItem(
        id=str(qid),
        question=question,
        answerable=answerable,
        answers=tuple(answers),
        spans=tuple(dict.fromkeys(GoldSpan(a.document_id, a.start, a.end) for a in answers)),
        rule="contains",
        type=qtype if isinstance(qtype, str) else None,
    )


def load_jsonl_gold(path: str | Path) -> GoldSet:
    """Our format, one question a line: ``{"id", "question", "answerable", "document_id", "answers": [...]}``."""
    path = Path(path)
    try:
        # split("\n"), not splitlines(): JSON may hold U+0085/U+2028/U+2029 raw, which splitlines() splits on
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"cannot read gold file {path}: {exc}") from exc
    items: list[GoldItem] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoadError(f"{where}: invalid JSON: {exc.msg}") from exc
        item = _jsonl_item(record, where)
        if item.id in seen:
            raise LoadError(f"{where}: duplicate question id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise LoadError(f"gold file {path} holds no questions")
    return GoldSet(name=path.stem, format="jsonl", kind="qa", source=str(path), split=None, items=tuple(items))


# ---------------------------------------------------------------------------------------------- SQuAD


def load_squad_gold(path: str | Path, split: str = "validation") -> GoldSet:
    """SQuAD questions of a split; offsets index the article document ``rag ingest`` builds from the same file.

    The question's paragraph is both the span retrieval is matched against and the gold passage an answer's
    citation should lie in; unanswerable questions keep it too, so they still count for retrieval.
    """
    if split not in SQUAD_SPLITS:
        raise ValidationError(f"SQuAD split must be one of {', '.join(SQUAD_SPLITS)}, got {split!r}")
    path = Path(path)
    payload = load_squad(path)
    items = []
    for q in iter_questions(select_articles(payload, split)):
        doc = slug_id(q.title)
        paragraph = GoldSpan(doc, q.paragraph_start, q.paragraph_start + len(q.context))
        answers = tuple(
            GoldAnswer(a.text, doc, q.paragraph_start + a.start, q.paragraph_start + a.start + len(a.text))
            for a in q.answers
        )
        items.append(
            GoldItem(
                id=q.id,
                question=q.question,
                answerable=not q.is_impossible,
                answers=answers,
                spans=(paragraph,),
                rule="overlaps",
                evidence=(paragraph,),
            )
        )
    if not items:
        raise LoadError(f"{path}: no questions in split {split!r}")
    return GoldSet(
        name=f"{path.stem}-{split}", format="squad", kind="qa", source=str(path), split=split, items=tuple(items)
    )


# ---------------------------------------------------------------------------------------------- BEIR


def _read_jsonl_records(path: Path) -> list[dict[str, Any]]:
    try:
        # split("\n"), not splitlines(): JSON may hold U+0085/U+2028/U+2029 raw, which splitlines() splits on
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadError(f"cannot read {path}: {exc}") from exc
    records = []
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LoadError(f"{path} line {lineno}: invalid JSON: {exc.msg}") from exc
    return records


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id corpus-id score`` rows (tab-separated, optional header) as relevance per query."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 3:
                    raise LoadError(f"{path} line {lineno}: expected query-id, corpus-id, score; got {row!r}")
                try:
                    score = int(row[2])
                except ValueError:
                    if lineno == 1:  # the header line
                        continue
                    raise LoadError(f"{path} line {lineno}: score must be an integer, got {row[2]!r}") from None
                qrels.setdefault(row[0].strip(), {})[row[1].strip()] = score
    except OSError as exc:
        raise LoadError(f"cannot read {path}: {exc}") from exc
    return qrels


def load_beir_gold(folder: str | Path, split: str = "test") -> GoldSet:
    """Retrieval-only items from a BEIR folder (``queries.jsonl``, ``qrels/<split>.tsv``); queries without a
    relevant document are left out, as BEIR's evaluation does."""
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        available = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
        raise ValidationError(
            f"BEIR split {split!r} has no {qrels_path}; splits there: {', '.join(available) or 'none'}"
        )
    queries_path = folder / "queries.jsonl"
    if not queries_path.is_file():
        raise LoadError(f"BEIR folder {folder} has no queries.jsonl")
    queries = {str(r.get("_id", r.get("id"))): r.get("text", "") for r in _read_jsonl_records(queries_path)}
    qrels = read_qrels(qrels_path)
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise LoadError(f"{qrels_path}: {len(missing)} query ids are not in queries.jsonl, e.g. {missing[0]!r}")
    items = tuple(
        GoldItem(id=qid, question=queries[qid], answerable=True, rule="relevance", relevance=dict(rel))
        for qid, rel in qrels.items()
        if any(r > 0 for r in rel.values()) and str(queries[qid]).strip()
    )
    if not items:
        raise LoadError(f"{qrels_path}: no query with a relevant document")
    return GoldSet(
        name=f"{folder.name}-{split}", format="beir", kind="retrieval", source=str(folder), split=split, items=items
    )
