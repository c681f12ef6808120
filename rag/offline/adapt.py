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
from dataclasses import asdict
from pathlib import Path

from rag.errors import ValidationError
from rag.offline.adapt_data import AdaptConfig, replay_groups, split, user_groups, user_questions
from rag.offline.adapt_scoring import Scored, cross_fit_user, figures, held_out_rows, paired_difference
from rag.offline.fit_calibration import QuestionRows, fit_on

#: The files a reader folder holds (what an install copies).
READER_FILES = ("model.safetensors", "config.json", "reader.json", "onnx-reference.json", "calibration-trained.json")


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
    from rag.pipeline import QAPipeline
    from rag.reader_calibration import reader_weights_sha256
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
    from rag.reader_calibration import reader_weights_sha256

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
