"""Adapt the reader to a user's domain from their annotated questions (``rag feedback export``).

``rag train-reader --extra-gold GOLD`` runs this:

1. The gold questions are split **by document** into a training part and a held-out part (``held_out_share``;
   by question when there are too few documents), and the held-out part into folds, by document too.
2. The current reader continues training on the training part's questions, read as the service reads them (the
   chunk that holds the answer and a retrieved negative from the same index; a "not in the articles" question
   against its top retrieved chunks, labelled no answer), mixed with as many replayed SQuAD training questions
   (``replay`` per user question, from training articles only) so it keeps what it knew.
3. Both readers are calibrated the same way: the trust benchmark's rows (held-out *training* articles, as
   ``rag fit-calibration``) plus the user's held-out questions. Each held-out fold is scored by a calibration
   fitted on the benchmark and the *other* folds (cross-fitted), so the comparison is held out from every fit.
4. The adapted reader is installed (weights, ``reader.json``, and a calibration fitted on the benchmark and all
   the held-out questions) only when it beats the current reader on the held-out questions: F1 with the service's
   decision rule, paired bootstrap over questions, the 95% interval's lower bound above 0 (``--force-install``
   installs anyway; ``--no-install`` never does). Both are printed either way, and written to ``report.json``.

Resumable: the split, the groups and the replay are drawn from ``seed``, and training checkpoints in ``work_dir``
(``resume=True`` continues). Never reads validation articles: replay comes from the SQuAD training articles minus
the calibration ones, and the benchmark is the held-out training articles.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.errors import ValidationError
from rag.evaluation.metrics import exact_match
from rag.evaluation.metrics import f1 as f1_score
from rag.offline.examples import GroupExample, SourceQuestion, articles_from, build_groups, training_sources
from rag.offline.fit_calibration import QuestionRows, collect, decision, fit_on
from rag.squad import GoldAnswer, SquadQuestion

#: Fewer annotated questions than this cannot be split into a part to train on and a part to judge on.
MIN_QUESTIONS = 20
#: The files a reader folder holds (what an install copies).
READER_FILES = ("model.safetensors", "config.json", "reader.json", "onnx-reference.json", "calibration-trained.json")


@dataclass
class AdaptConfig:
    gold: str  # rag eval JSON lines, as rag feedback export writes them
    index_dir: str  # the index the gold's documents are in
    reader_dir: str  # the current reader and its calibration (rag/reader/model)
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


def as_squad(q: UserQuestion, fold: str) -> SquadQuestion:
    """A held-out question in the shape the calibration's row collection reads (``title``: its fold)."""
    return SquadQuestion(
        id=q.id,
        question=q.question,
        title=fold,
        context="",
        answers=tuple(GoldAnswer(text, start) for start, _, text in q.answers),
        is_impossible=not q.answerable,
        paragraph_index=0,
        paragraph_start=0,
    )


def held_out_rows(pipeline, index, folds: Sequence[Sequence[UserQuestion]], log) -> list[QuestionRows]:
    """The reader's candidates for every held-out question, with features and labels; ``article``: the fold."""
    questions = [as_squad(q, f"user-fold-{i}") for i, fold in enumerate(folds) for q in fold]
    kinds = ["answerable" if q.answers else "unanswerable" for q in questions]
    return collect(pipeline, index, questions, kinds, log)


@dataclass(frozen=True, slots=True)
class Scored:
    """One held-out question as the service would answer it under a cross-fitted calibration."""

    answered: bool
    f1: float  # SQuAD F1 of the response: 0/1 for a decline (1 when the question has no answer)
    em: float
    right: bool  # answered, and right (F1 >= 0.5 against a gold answer)


def cross_fit_user(benchmark: Sequence[QuestionRows], user: Sequence[QuestionRows]) -> list[Scored]:
    """Each held-out fold decided by a calibration (and threshold) fitted on the benchmark and the other folds."""
    from rag.evaluation.trust import operating_threshold
    from rag.offline.fit_calibration import decided_row

    out: dict[int, Scored] = {}
    for fold in sorted({q.article for q in user}):
        train = [*benchmark, *(q for q in user if q.article != fold)]
        calibrator = fit_on(train)
        threshold = operating_threshold([decided_row(calibrator, q) for q in train])
        for i, q in enumerate(user):
            if q.article == fold:
                out[i] = score(q, *decision(calibrator, q), threshold)
    return [out[i] for i in range(len(user))]


def score(q: QuestionRows, best: int, prob: float, threshold: float) -> Scored:
    answered = best >= 0 and prob >= threshold
    if not answered:
        ok = float(not q.golds)
        return Scored(False, ok, ok, False)
    if not q.golds:
        return Scored(True, 0.0, 0.0, False)
    f1 = f1_score(q.texts[best], q.golds)
    return Scored(True, f1, exact_match(q.texts[best], q.golds), f1 >= 0.5)


def figures(scored: Sequence[Scored], samples: int = 1000, seed: int = 13) -> dict:
    """F1, EM (percent), share answered, and share right among answers given, with 95% bootstrap intervals."""
    rng = np.random.default_rng(seed)
    f1 = np.array([s.f1 for s in scored]) * 100
    em = np.array([s.em for s in scored]) * 100
    out: dict = {"questions": len(scored)}
    for name, values in (("f1", f1), ("em", em)):
        draws = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(samples)]
        out[name] = round(float(values.mean()), 2)
        out[f"{name}_interval"] = [
            round(float(np.percentile(draws, 2.5)), 2),
            round(float(np.percentile(draws, 97.5)), 2),
        ]
    given = [s for s in scored if s.answered]
    out["answered"] = round(100 * len(given) / max(1, len(scored)), 1)
    out["right_among_given"] = round(100 * sum(s.right for s in given) / len(given), 1) if given else None
    return out


def paired_difference(a: Sequence[Scored], b: Sequence[Scored], samples: int = 1000, seed: int = 13) -> dict:
    """F1 and EM of ``b`` minus ``a`` on the same questions, with 95% intervals from one resample for both."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in ("f1", "em"):
        d = (np.array([getattr(s, name) for s in b]) - np.array([getattr(s, name) for s in a])) * 100
        draws = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(samples)]
        out[name] = {
            "difference": round(float(d.mean()), 2),
            "low": round(float(np.percentile(draws, 2.5)), 2),
            "high": round(float(np.percentile(draws, 97.5)), 2),
        }
    return out


def adapt(
    config: AdaptConfig,
    *,
    install: str = "if-better",
    resume: bool = False,
    backend: str = "onnx-int8",
    log: Callable[[str], None] = print,
) -> dict:
    """Run steps 1-4 of the module's docstring; return (and write to ``work_dir/report.json``) the report.

    ``install``: ``if-better`` (default), ``never``, or ``always``."""
    from rag.engine import model_record
    from rag.offline.fit_calibration import collect_benchmark
    from rag.offline.train_groups import GroupTrainConfig, fit_groups
    from rag.pipeline import QAPipeline, reader_weights_sha256
    from rag.settings import Settings
    from rag.store import CorpusIndex

    if install not in ("if-better", "never", "always"):
        raise ValidationError(f"install must be if-better, never or always, got {install!r}")
    started = time.perf_counter()
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    current = Path(config.reader_dir)
    candidate = work / "candidate"
    questions = user_questions(config.gold)
    train, folds, split_by = split(questions, config.held_out_share, config.folds, config.seed)
    held = sum(len(f) for f in folds)
    log(
        f"{len(questions)} annotated questions: {len(train)} to train on, {held} held out in {len(folds)} folds "
        f"(split by {split_by})"
    )

    settings = Settings(index_dir=config.index_dir)
    pipeline = QAPipeline.load(
        "trained", reader_dir=current, backend=backend, settings=settings.ask_settings(), threads=config.threads
    )
    index = CorpusIndex.load(config.index_dir, model=model_record(pipeline.embedder))

    def search(q: str, k: int):
        return pipeline.search(index, q, k)[0]

    groups = user_groups(train, index, search, config.negatives, config.seed, log)
    replayed = replay_groups(config, round(config.replay * len(groups)), log)
    log(f"training on {len(groups)} of the user's questions and {len(replayed)} replayed ones")

    train_seconds = 0.0
    record_path = candidate / "reader.json"
    if not (resume and record_path.is_file() and json.loads(record_path.read_text()).get("adapt") == asdict(config)):
        group_config = GroupTrainConfig(
            squad_path=config.squad_path,
            out_dir=str(candidate),
            work_dir=str(work),
            init_from=str(current),
            epochs=config.epochs,
            learning_rate=config.learning_rate,
            questions_per_batch=config.questions_per_batch,
            negatives=config.negatives,
            max_length=config.max_length,
            stride=config.stride,
            seed=config.seed,
            threads=config.threads,
            device=config.device,
        )
        from rag.checksums import sha256_file

        data = {
            "gold_sha256": sha256_file(config.gold),
            "user_questions_trained_on": len(groups),
            "replayed": len(replayed),
            "current_reader_sha256": reader_weights_sha256("trained", current),
        }
        record = fit_groups(
            [*groups, *replayed],
            group_config,
            random.Random(config.seed),
            data=data,
            recipe="adapted from the current reader on users' annotated questions + replayed SQuAD training groups",
            resume=resume,
            log=log,
        )
        record["adapt"] = asdict(config)
        record_path.write_text(json.dumps(record, indent=2) + "\n")
        train_seconds = record["training"]["seconds"]
    else:
        train_seconds = json.loads(record_path.read_text())["training"]["seconds"]
        log(f"the candidate in {candidate} is already trained (resume)")

    results: dict[str, dict] = {}
    scored: dict[str, list[Scored]] = {}
    user_rows: dict[str, list[QuestionRows]] = {}
    bench_rows: dict[str, list[QuestionRows]] = {}
    for name, folder in (("current", current), ("adapted", candidate)):
        sha = reader_weights_sha256("trained", folder)
        # Rows need the reader's outputs and features, not its calibration: the current reader is already loaded.
        reader = (
            pipeline
            if name == "current"
            else QAPipeline.load(
                "trained",
                reader_dir=folder,
                backend=backend,
                embedder=pipeline.embedder,
                calibrated=False,
                settings=settings.ask_settings(),
                threads=config.threads,
            )
        )
        log(f"{name} reader: the trust benchmark's rows (cached per reader) and the held-out questions")
        bench_rows[name], _ = collect_benchmark(
            reader, config.squad_path, config.seeds, cache=Path(config.cache), reader_sha256=sha, log=log
        )
        user_rows[name] = held_out_rows(reader, index, folds, log)
        scored[name] = cross_fit_user(bench_rows[name], user_rows[name])
        results[name] = figures(scored[name])
    difference = paired_difference(scored["current"], scored["adapted"])
    better = difference["f1"]["low"] > 0
    installed = install == "always" or (install == "if-better" and better)
    report = {
        "questions": len(questions),
        "trained_on": len(train),
        "held_out": held,
        "folds": len(folds),
        "split_by": split_by,
        "replayed": len(replayed),
        "training_seconds": train_seconds,
        "current": results["current"],
        "adapted": results["adapted"],
        "adapted_minus_current": difference,
        "better": better,
        "rule": "installed when the held-out F1's paired difference has a 95% interval above 0",
        "installed": installed,
        "seconds": round(time.perf_counter() - started, 1),
        "config": asdict(config),
    }
    report["threshold"] = fit_calibration(candidate, current, [*bench_rows["adapted"], *user_rows["adapted"]])
    if installed:
        install_reader(candidate, current)
        log(f"installed the adapted reader in {current} (threshold {report['threshold']})")
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def fit_calibration(candidate: Path, current: Path, rows: Sequence[QuestionRows]) -> float:
    """The candidate's calibration, fitted on every row (benchmark + all held-out questions), written in its
    folder; returns its threshold."""
    from rag.evaluation.trust import THRESHOLD_RULE, operating_threshold
    from rag.offline.fit_calibration import decided_row
    from rag.pipeline import reader_weights_sha256

    calibrator = fit_on(rows)
    calibrator.reader_sha256 = reader_weights_sha256("trained", candidate)
    calibrator.threshold = operating_threshold([decided_row(calibrator, q) for q in rows])
    previous = current / "calibration-trained.json"
    fitted = json.loads(previous.read_text()).get("fitted_on", {}) if previous.is_file() else {}
    calibrator.fitted_on = {
        **{
            k: fitted[k]
            for k in ("reader", "read_k", "reader_backend", "squad_sha256", "calibration_articles")
            if k in fitted
        },
        "questions": {"benchmark and held-out annotated": len(rows)},
        "candidates": sum(len(q.rows) for q in rows),
        "threshold_rule": THRESHOLD_RULE + "; with the users' held-out annotated questions added",
    }
    calibrator.save(candidate / "calibration-trained.json")
    return calibrator.threshold


def install_reader(candidate: Path, current: Path) -> None:
    """Copy the candidate's files over the current reader's, the calibration last: the old calibration goes first,
    and a reader without its calibration refuses to load, so a crash part-way leaves a reader that says so rather
    than one answering with another reader's calibration."""
    (current / "calibration-trained.json").unlink(missing_ok=True)
    for name in READER_FILES:
        if (candidate / name).is_file():
            tmp = current / f".{name}.tmp"
            shutil.copyfile(candidate / name, tmp)
            tmp.replace(current / name)
