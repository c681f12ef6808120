"""``rag train-reader`` (and --extra-gold), ``rag fit-calibration``, ``rag trust``: the offline jobs (rag/offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.base import (
    EXIT_USAGE,
    IndexOpt,
    _fail,
    _settings,
    app,
    console,
    err,
)
from rag.errors import RagError


@app.command("train-reader")
def train_reader(
    squad: Annotated[Path, typer.Option(help="SQuAD 2.0 JSON (only its training articles are used)")] = Path(
        "../shared/data/squad-v2.0-dev/dev-v2.0.json"
    ),
    train_part: Annotated[Path | None, typer.Option(help="Folder of SQuAD training-set parts (groups recipe)")] = Path(
        "../shared/data/squad-v2.0-train-part"
    ),
    out: Annotated[Path, typer.Option(help="Where the weights and reader.json go")] = Path("rag/reader/weights"),
    recipe: Annotated[
        str, typer.Option(help="groups: serving-like chunks + retrieved negatives, shared normalisation; paragraphs")
    ] = "groups",
    work: Annotated[Path, typer.Option(help="Checkpoints and cached groups (groups recipe)")] = Path(
        "eval/.cache/reader-train"
    ),
    init_from: Annotated[Path | None, typer.Option(help="Continue from this reader folder (groups recipe)")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in --work")] = False,
    epochs: Annotated[float | None, typer.Option(help="[default: 1 for groups, 3 for paragraphs]")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="[default: 5e-5 for groups, 1e-4 for paragraphs]")] = None,
    dev_train_share: Annotated[float, typer.Option(help="Share of the SQuAD dev training questions kept")] = 0.5,
    negatives: Annotated[int, typer.Option(help="Retrieved negative chunks per question (groups)")] = 1,
    batch_size: int = 16,
    max_length: int = 256,
    stride: int = 96,
    seed: int = 13,
    threads: int = 2,
    device: Annotated[str, typer.Option(help="torch device: cpu, or cuda where a GPU is lent")] = "cpu",
    max_questions: Annotated[int | None, typer.Option(help="Train on a sample (for timing runs)")] = None,
    train_part_share: Annotated[float, typer.Option(help="Share of the training-set parts' questions kept")] = 1.0,
    qa_more: Annotated[
        Path | None, typer.Option(help="../shared/data/qa-more: more answerable questions (never its Reddit file)")
    ] = None,
    qa_more_share: Annotated[float, typer.Option(help="Share of the qa-more questions kept")] = 1.0,
    near_miss_share: Annotated[
        float, typer.Option(help="Share of answerable groups that also give a near-miss (no answer) group")
    ] = 0.0,
    skip_trained_by: Annotated[
        Path | None,
        typer.Option(help="An earlier run's reader.json: leave out the questions it trained on (groups recipe)"),
    ] = None,
    prepare_only: Annotated[bool, typer.Option(help="Only build and cache the training groups")] = False,
    extra_gold: Annotated[
        Path | None,
        typer.Option(
            help="Adapt the reader in --out to these annotated questions (rag feedback export's gold file): "
            "continue on part of them with replayed SQuAD, judge on the rest, install only when better"
        ),
    ] = None,
    index: IndexOpt = None,
    seeds: Annotated[Path, typer.Option(help="Seed articles (the trust benchmark's off-topic corpus)")] = Path("seeds"),
    held_out: Annotated[float, typer.Option(help="--extra-gold: share of the questions held out to judge on")] = 0.3,
    replay: Annotated[float, typer.Option(help="--extra-gold: replayed SQuAD questions per annotated one")] = 1.0,
    install: Annotated[
        str, typer.Option(help="--extra-gold: if-better (95% interval of the F1 gain above 0), never, always")
    ] = "if-better",
) -> None:
    """Fine-tune the span reader on SQuAD training data (validation articles untouched), or with --extra-gold
    adapt it to a domain from users' annotated questions.

    After training from SQuAD, refit the calibration: rag fit-calibration --reader trained --reader-dir OUT.
    --extra-gold refits it itself (the trust benchmark plus the held-out annotated questions)."""
    from rag.extras import need

    try:
        need("torch", "train", "rag train-reader")
        need("transformers", "train", "rag train-reader")
    except RagError as exc:
        raise _fail(exc) from None
    if extra_gold is not None:
        _adapt_reader(
            extra_gold,
            index,
            out,
            work,
            squad,
            train_part,
            seeds,
            held_out,
            replay,
            install,
            resume,
            epochs=epochs or 2.0,
            lr=lr or 3e-5,
            seed=seed,
            threads=threads,
            device=device,
        )
        return
    if recipe == "groups":
        from rag.offline.train_groups import GroupTrainConfig, prepare_groups, train_groups

        group_config = GroupTrainConfig(
            squad_path=str(squad),
            out_dir=str(out),
            work_dir=str(work),
            train_part=str(train_part) if train_part else None,
            init_from=str(init_from) if init_from else None,
            epochs=epochs or 1.0,
            learning_rate=lr or 5e-5,
            questions_per_batch=max(1, batch_size // (1 + negatives)),
            negatives=negatives,
            max_length=max_length,
            stride=stride,
            seed=seed,
            threads=threads,
            device=device,
            dev_train_share=dev_train_share,
            train_part_share=train_part_share,
            max_questions=max_questions,
            qa_more=str(qa_more) if qa_more else None,
            qa_more_share=qa_more_share,
            near_miss_share=near_miss_share,
            skip_trained_by=json.loads(skip_trained_by.read_text())["config"] if skip_trained_by else None,
        )
        if prepare_only:
            prepare_groups(group_config, lambda m: err.print(escape(m)))
            return
        train_groups(group_config, resume=resume, log=lambda m: err.print(escape(m)))
        return
    if recipe != "paragraphs":
        err.print(f"[red]error:[/red] --recipe must be groups or paragraphs, got {escape(recipe)}")
        raise typer.Exit(EXIT_USAGE)
    from rag.offline.train import TrainConfig, train

    config = TrainConfig(
        squad_path=str(squad),
        out_dir=str(out),
        epochs=epochs or 3.0,
        learning_rate=lr or 1e-4,
        batch_size=batch_size,
        max_length=max_length,
        stride=stride,
        seed=seed,
        threads=threads,
        device=device,
        max_questions=max_questions,
    )
    train(config, log=lambda m: err.print(escape(m)))


# The trust benchmark's inputs, shared by fit-calibration and trust.
def _adapt_reader(
    gold: Path,
    index: Path | None,
    reader_dir: Path,
    work: Path,
    squad: Path,
    train_part: Path | None,
    seeds: Path,
    held_out: float,
    replay: float,
    install: str,
    resume: bool,
    **config,
) -> None:
    from rag.offline.adapt import AdaptConfig, adapt

    settings = _settings(index)
    adapt_config = AdaptConfig(
        gold=str(gold),
        index_dir=str(settings.index_dir),
        reader_dir=str(reader_dir),
        work_dir=str(work / "adapt" if work == Path("eval/.cache/reader-train") else work),
        squad_path=str(squad),
        seeds=str(seeds),
        train_part=str(train_part) if train_part else None,
        held_out_share=held_out,
        replay=replay,
        epochs=config["epochs"],
        learning_rate=config["lr"],
        seed=config["seed"],
        threads=config["threads"],
        device=config["device"],
    )
    try:
        report = adapt(
            adapt_config,
            install=install,
            resume=resume,
            backend=settings.reader_backend,
            log=lambda m: err.print(escape(m)),
        )
    except RagError as exc:
        raise _fail(exc) from None
    table = Table(title=f"held-out annotated questions ({report['held_out']}, split by {report['split_by']})")
    for col in ("reader", "F1", "EM", "answered", "right among given"):
        table.add_column(col, justify="right" if col != "reader" else "left")
    for name in ("current", "adapted"):
        r = report[name]
        table.add_row(
            name,
            f"{r['f1']:.1f} [{r['f1_interval'][0]:.1f}, {r['f1_interval'][1]:.1f}]",
            f"{r['em']:.1f}",
            f"{r['answered']:.1f}%",
            "-" if r["right_among_given"] is None else f"{r['right_among_given']:.1f}%",
        )
    console.print(table)
    d = report["adapted_minus_current"]["f1"]
    console.print(
        f"F1 adapted - current: {d['difference']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]; "
        + ("installed in " + str(reader_dir) if report["installed"] else "not installed")
        + f" ({report['rule']}); trained {report['training_seconds']:.0f} s on {report['trained_on']} annotated + "
        f"{report['replayed']} replayed questions"
    )


BenchmarkSquadOpt = Annotated[Path, typer.Option(help="SQuAD 2.0 JSON (only held-out training articles are used)")]
BenchmarkCacheOpt = Annotated[Path, typer.Option(help="Where the benchmark's indexes and reader outputs are kept")]


@app.command("fit-calibration")
def fit_calibration(
    reader: Annotated[str, typer.Option(help="trained or heuristic")] = "trained",
    squad: BenchmarkSquadOpt = Path("../shared/data/squad-v2.0-dev/dev-v2.0.json"),
    seeds: Annotated[Path, typer.Option(help="The seed articles")] = Path("seeds"),
    reader_dir: Annotated[Path | None, typer.Option(help="Reader folder [default: the shipped reader]")] = None,
    cache: BenchmarkCacheOpt = Path("eval/.cache/calibration"),
    report: Annotated[Path | None, typer.Option(help="Also write the trust benchmark's report here")] = None,
) -> None:
    """Fit the answer/no-answer calibration for a reader on held-out training articles (the trust benchmark's
    questions), and measure the benchmark by a cross-fit."""
    _calibrate(reader, squad, seeds, reader_dir, cache, report, write=True)


@app.command("trust")
def trust(
    reader: Annotated[str, typer.Option(help="trained or heuristic")] = "trained",
    squad: BenchmarkSquadOpt = Path("../shared/data/squad-v2.0-dev/dev-v2.0.json"),
    seeds: Annotated[Path, typer.Option(help="The seed articles")] = Path("seeds"),
    reader_dir: Annotated[Path | None, typer.Option(help="Reader folder [default: the shipped reader]")] = None,
    cache: BenchmarkCacheOpt = Path("eval/.cache/calibration"),
    out: Annotated[Path, typer.Option(help="Where summary.json and report.png go")] = Path("eval/results/trust"),
) -> None:
    """The trust benchmark: answerable, adversarial unanswerable, near-miss and not-covered questions from
    held-out training articles; per kind and selective-QA figures, each article scored by a calibration fitted
    on the others. Writes nothing but the report."""
    _calibrate(reader, squad, seeds, reader_dir, cache, out, write=False)


def _calibrate(
    reader: str, squad: Path, seeds: Path, reader_dir: Path | None, cache: Path, report: Path | None, write: bool
) -> None:
    from rag.embedding import Embedder
    from rag.evaluation.trust import print_trust, write_trust
    from rag.offline.fit_calibration import fit
    from rag.pipeline import QAPipeline
    from rag.reader.model import DEFAULT_READER_DIR
    from rag.reader_calibration import reader_weights_sha256

    folder = reader_dir or DEFAULT_READER_DIR
    settings = _settings()  # the runtimes the service will use (RAG_READER_BACKEND, RAG_EMBED_BACKEND)
    try:
        embedder = Embedder(backend=settings.embed_backend)
        pipeline = QAPipeline.load(
            reader,
            reader_dir=folder,
            backend=settings.reader_backend,
            embedder=embedder,
            calibrated=False,
            settings=settings.ask_settings(),  # RAG_READ_K: the calibration is fitted for that many passages
        )
    except RagError as exc:
        raise _fail(exc) from None
    calibrator, figures = fit(
        pipeline,
        str(squad),
        seeds,
        folder / f"calibration-{reader}.json" if write else None,
        cache=cache,
        reader_sha256=reader_weights_sha256(reader, folder),
        log=lambda m: err.print(escape(m)),
    )
    figures["reader_dir"] = str(folder)
    figures["shipped_threshold"] = calibrator.threshold
    print_trust(figures, console)
    if report is not None:
        write_trust(figures, report)
        err.print(f"report written to {report}")
