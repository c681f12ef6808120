"""What adapting the reader trains on (steps 1 and 2 of ``rag.offline.adapt``): the user's annotated questions,
split by document into a training part and held-out folds, read as serving-like groups, and the replayed SQuAD
training questions that keep the reader from forgetting what it knew."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ValidationError
from rag.offline.examples import GroupExample, SourceQuestion, articles_from, build_groups, training_sources

#: Fewer annotated questions than this cannot be split into a part to train on and a part to judge on.
MIN_QUESTIONS = 20


@dataclass
class AdaptConfig:
    gold: str  # rag eval JSON lines, as rag feedback export writes them
    index_dir: str  # the index the gold's documents are in
    reader_dir: str  # the current reader and its calibration (rag/reader/weights)
    work_dir: str  # the candidate reader, checkpoints, cached rows, report.json
    squad_path: str  # SQuAD 2.0 JSON: replay (training articles) and the trust benchmark (held-out training ones)
    seeds: str  # the seed articles (the trust benchmark's off-topic corpus)
    train_part: str | None = None  # more SQuAD training articles for replay
    cache: str = "eval/.cache/calibration"  # the trust benchmark's indexes and reader rows (shared with make eval)
    held_out_share: float = 0.3
    folds: int = 4
    replay: float = 1.0  # replayed SQuAD training questions per user question trained on
    epochs: float = 2.0
    learning_rate: float = 3e-5
    questions_per_batch: int = 8
    negatives: int = 1
    seed: int = 13
    threads: int = 2
    device: str = "cpu"
    max_length: int = 256
    stride: int = 96


@dataclass(frozen=True, slots=True)
class UserQuestion:
    id: str
    question: str
    document_id: str | None  # None: not in the articles
    answers: tuple[tuple[int, int, str], ...]  # (start, end, text) in the document

    @property
    def answerable(self) -> bool:
        return bool(self.answers)

    @property
    def unit(self) -> str:
        """What the split keeps together: the document (a question with none stands alone)."""
        return f"doc:{self.document_id}" if self.document_id else f"q:{self.id}"


def user_questions(path: str | Path) -> list[UserQuestion]:
    """The QA items of a gold file (``rag eval``'s formats; the feedback export is JSON lines)."""
    from rag.evaluation.datasets import load_gold

    gold = load_gold(path)
    if gold.kind != "qa":
        raise ValidationError(f"{path}: a retrieval-only gold set has no answers to train on")
    out = []
    for item in gold.items:
        answers = tuple(dict.fromkeys((a.start, a.end, a.text) for a in item.answers)) if item.answerable else ()
        if item.answerable and not answers:
            continue
        out.append(UserQuestion(item.id, item.question, item.document_id if answers else None, answers))
    return out


def split(
    questions: Sequence[UserQuestion], share: float, folds: int, seed: int
) -> tuple[list[UserQuestion], list[list[UserQuestion]], str]:
    """(training part, held-out folds, how it was split): whole documents go to one side and one fold, so no
    held-out question is about a document trained on; by question when there are fewer than 2 * folds documents."""
    if len(questions) < MIN_QUESTIONS:
        raise ValidationError(
            f"{len(questions)} annotated questions; at least {MIN_QUESTIONS} are needed to train on some and judge "
            "on the rest"
        )
    if not 0 < share < 1:
        raise ValidationError(f"held_out_share must be between 0 and 1, got {share}")
    units = sorted({q.unit for q in questions})
    by = "document"
    key: Callable[[UserQuestion], str] = lambda q: q.unit  # noqa: E731
    if len({q.document_id for q in questions if q.document_id}) < 2 * folds:
        units, by, key = sorted(q.id for q in questions), "question", lambda q: q.id
    random.Random(seed).shuffle(units)
    sizes: dict[str, int] = {}
    for q in questions:
        sizes[key(q)] = sizes.get(key(q), 0) + 1
    held_units: list[str] = []
    held = 0
    for u in units:
        if held >= share * len(questions):
            break
        held_units.append(u)
        held += sizes[u]
    fold_of = {u: i % folds for i, u in enumerate(held_units)}
    train = [q for q in questions if key(q) not in fold_of]
    parts: list[list[UserQuestion]] = [[] for _ in range(min(folds, len(held_units)))]
    for q in questions:
        if key(q) in fold_of:
            parts[fold_of[key(q)]].append(q)
    if not train or not parts:
        raise ValidationError("the annotated questions could not be split into a training and a held-out part")
    return train, parts, by


def user_groups(
    questions: Sequence[UserQuestion], index, search: Callable[[str, int], list], negatives: int, seed: int, log
) -> list[GroupExample]:
    """Serving-like groups: an answerable question's chunk holding the answer and retrieved negatives; a question
    the articles do not answer against its top retrieved chunks, with no answer."""
    answerable = [
        SourceQuestion(q.id, q.question, q.document_id or "", (0, 0), q.answers, "feedback")
        for q in questions
        if q.answerable
    ]
    groups = build_groups(answerable, index, search, negatives=negatives, seed=seed, log=log)
    for q in questions:
        if not q.answerable:
            passages = tuple(hit.chunk.text for hit in search(q.question, 1 + negatives)[: 1 + negatives])
            if passages:
                groups.append(GroupExample(q.id, q.question, "", passages, (), "feedback-not-in-articles"))
    return groups


def replay_groups(config: AdaptConfig, n: int, log: Callable[[str], None]) -> list[GroupExample]:
    """``n`` SQuAD training questions as serving-like groups, negatives retrieved among the articles drawn (cached
    in the work folder). Validation and calibration articles are never drawn."""
    from rag.embedding import Embedder
    from rag.engine import model_record
    from rag.offline.examples import load_groups, save_groups
    from rag.offline.train import calibration_titles
    from rag.records import squad_documents
    from rag.retrieval import RetrievalSettings, retrieve
    from rag.squad import VALIDATION_TITLES, load_squad, select_articles
    from rag.store import CorpusIndex, IndexSettings

    if n <= 0:
        return []
    cached = Path(config.work_dir) / f"replay-{n}-seed{config.seed}.jsonl"
    if cached.is_file():
        return load_groups(cached)
    calibration = calibration_titles([a["title"] for a in select_articles(load_squad(config.squad_path), "train")])
    sources = training_sources(config.squad_path, config.train_part, set(VALIDATION_TITLES) | set(calibration))
    articles = [(name, article) for name, payload in sources for article in payload["data"]]
    rng = random.Random(config.seed)
    rng.shuffle(articles)
    docs: list = []
    questions: list[SourceQuestion] = []
    for name, article in articles:
        if len(questions) >= 2 * n:
            break
        payload = {"data": [article]}
        docs += squad_documents(payload, source=name)
        questions += articles_from(payload, name)[1]
    embedder = Embedder().load()
    index, _ = CorpusIndex.empty(IndexSettings(), model_record(embedder)).apply(docs, embedder=embedder)
    settings = RetrievalSettings()

    def search(q: str, k: int):
        return retrieve(index, q, embedder.encode_query(q), k, settings)

    rng.shuffle(questions)
    groups = build_groups(questions[: n + n // 4], index, search, negatives=config.negatives, seed=config.seed, log=log)
    groups = groups[:n]
    cached.parent.mkdir(parents=True, exist_ok=True)
    save_groups(groups, cached)
    log(f"{len(groups)} replayed SQuAD training questions from {len(docs)} training articles")
    return groups
