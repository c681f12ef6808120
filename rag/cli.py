"""The ``rag`` command: ingest, ask, search, serve, eval, train-reader. Thin: the work is in the library.

Exit codes: 0 success, 1 the command ran but found problems (files skipped, no answer), 2 bad usage,
3 the index is missing, broken or mismatched, 4 a model could not be loaded.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from rag.errors import IndexCorrupt, IndexMismatch, IndexNotFound, LoadError, ModelError, RagError

app = typer.Typer(help="Extractive question answering over your articles, with exact citations.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

EXIT_PROBLEMS, EXIT_USAGE, EXIT_INDEX, EXIT_MODEL, EXIT_SERVICE = 1, 2, 3, 4, 5

IndexOpt = Annotated[Path | None, typer.Option("--index", help="Index folder [default: RAG_INDEX_DIR or index/]")]
ReaderOpt = Annotated[
    str | None, typer.Option("--reader", help="trained or heuristic [default: RAG_READER or trained]")
]
DocOpt = Annotated[list[str] | None, typer.Option("--doc", help="Only this document id (repeatable: any of them)")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Only documents published on or after YYYY-MM-DD")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Only documents published on or before YYYY-MM-DD")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="Only this publisher (any case)")]
MetaOpt = Annotated[
    list[str] | None, typer.Option("--meta", help="Only documents whose meta KEY equals VALUE: KEY=VALUE (repeatable)")
]


def _settings(index: Path | None = None, reader: str | None = None, **extra):
    from rag.settings import Settings

    overrides = {k: v for k, v in {"index_dir": index, "reader": reader, **extra}.items() if v is not None}
    return Settings(**overrides)


def _fail(exc: Exception) -> typer.Exit:
    code = (
        EXIT_INDEX
        if isinstance(exc, IndexNotFound | IndexCorrupt | IndexMismatch)
        else EXIT_MODEL
        if isinstance(exc, ModelError)
        else EXIT_USAGE
    )
    err.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(code)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files or folders: .txt .md .html .pdf .docx .json .jsonl (records or SQuAD JSON)"),
    ],
    index: IndexOpt = None,
    rebuild: Annotated[
        bool,
        typer.Option(help="Build a new index from PATHS only, beside the live one, which it replaces when done"),
    ] = False,
    delete: Annotated[
        list[str] | None, typer.Option("--delete", help="Also delete this document id (repeatable)")
    ] = None,
    sync: Annotated[bool, typer.Option(help="Delete indexed documents that are not in PATHS")] = False,
    engine_name: Annotated[
        str, typer.Option("--engine", help="local (one process) or ray (Ray Data; needs the ray extra)")
    ] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster to join (ray engine) [default: start a local Ray]")
    ] = None,
    workers: Annotated[int, typer.Option(help="Embedding actors (ray engine), each loads the model once")] = 2,
    shards: Annotated[int | None, typer.Option(help="Write a sharded index with this many shards (ray engine)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="List every skipped file with its reason")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any file was skipped")] = False,
) -> None:
    """Add or update documents in an index (incremental: unchanged documents are not embedded again). Files that
    cannot be read are skipped with a one-line summary (--verbose lists them); the exit code is 0 when the
    readable ones were ingested (1 with --strict if anything was skipped)."""
    if engine_name not in ("local", "ray"):
        err.print(f"[red]error:[/red] --engine must be local or ray, got {escape(engine_name)!r}")
        raise typer.Exit(EXIT_USAGE)
    if engine_name == "local" and (address is not None or shards is not None):
        err.print("[red]error:[/red] --address and --shards need --engine ray")
        raise typer.Exit(EXIT_USAGE)
    if engine_name == "ray":
        _ingest_ray(paths, index, rebuild, list(delete or []), sync, address, workers, shards)
        return
    from rag.embedding import Embedder
    from rag.engine import Engine
    from rag.loaders import SUPPORTED_SUFFIXES, load_paths

    settings = _settings(index)
    loaded = load_paths(paths)
    report_skipped(loaded.skipped, verbose or not loaded.documents)
    if not loaded.documents and (sync or not delete):
        # Nothing to write (and --sync would empty the index): stop before --rebuild removes anything.
        err.print(
            f"[red]error:[/red] no usable documents found in {escape(', '.join(map(str, paths)))} "
            f"({len(loaded.skipped)} skipped); nothing was written. Supported file types: "
            f"{', '.join(sorted(SUPPORTED_SUFFIXES))}"
        )
        raise typer.Exit(EXIT_PROBLEMS)
    try:
        engine = Engine(settings, Embedder(backend=settings.embed_backend, threads=settings.threads).load())
        if not rebuild:  # --rebuild builds beside the live index: it stays live until the new one commits
            engine.reload(create=True)
            if engine.load_error:
                raise IndexCorrupt(engine.load_error)
        deletes = list(delete or [])
        if sync and not rebuild:
            wanted = {d.id for d in loaded.documents}
            deletes += [d for d in engine.snapshot.documents if d not in wanted]
        with progress_bar() as bar:
            task = bar.add_task("embedding chunks", total=None)

            def on_progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            report = engine.write(
                loaded.documents, deletes, skipped=loaded.skipped, progress=on_progress, fresh=rebuild
            )
        engine.wait_for_merges()  # a merge the write started commits before the process exits
    except RagError as exc:
        raise _fail(exc) from None
    snap = engine.snapshot
    console.print(
        f"index {settings.index_dir}: {len(snap.documents)} documents, {len(snap.chunks)} chunks "
        f"in {len(snap.segments)} segment{'s' if len(snap.segments) != 1 else ''} "
        f"(added {len(report.added)}, replaced {len(report.replaced)}, unchanged {len(report.unchanged)}, "
        f"deleted {len(report.deleted)}, skipped {len(report.skipped)}; "
        f"{report.chunks_embedded} chunks embedded in {report.seconds:.1f} s)"
    )
    if report.skipped and strict:
        raise typer.Exit(EXIT_PROBLEMS)


def report_skipped(skipped: Sequence[tuple[str, str]], verbose: bool) -> None:
    """Every skipped file with its reason (``verbose``), or one line counting them by reason."""
    if verbose:
        for item, reason in skipped:
            err.print(f"[yellow]skipped[/yellow] {escape(item)}: {escape(reason)}")
        return
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for _, reason in skipped:
        key = reason.split(";")[0]
        reasons[key] = reasons.get(key, 0) + 1
    summary = ", ".join(f"{n} {escape(key)}" for key, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
    files = f"{len(skipped)} file{'s' if len(skipped) != 1 else ''}"
    err.print(f"[yellow]skipped {files}[/yellow] ({summary}); --verbose lists them")


def _ingest_ray(
    paths: list[Path],
    index: Path | None,
    rebuild: bool,
    deletes: list[str],
    sync: bool,
    address: str | None,
    workers: int,
    shards: int | None,
) -> None:
    from rag.embedding import Embedder
    from rag.engine import model_record

    settings = _settings(index)
    try:
        from rag.distributed import RayOptions, ingest

        options = RayOptions(address=address, workers=workers, embed_backend=settings.embed_backend)
        folder = settings.index_dir
        logging.getLogger("ray").setLevel(logging.WARNING)
        # The model record (id, weights checksum) needs no loaded model; the actors load it.
        model = model_record(Embedder(backend=settings.embed_backend))
        report, stats = ingest(
            paths,
            folder,
            settings=settings.index_settings(),
            model=model,
            options=options,
            shards=shards,
            deletes=deletes,
            sync=sync,
            rebuild=rebuild,  # removes the old index only once there is something to write
        )
    except LoadError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(EXIT_PROBLEMS) from None
    except RagError as exc:
        raise _fail(exc) from None
    for item, reason in report.skipped:
        err.print(f"[yellow]skipped[/yellow] {escape(item)}: {escape(reason)}")
    console.print(
        f"index {settings.index_dir}{f' ({shards} shards)' if shards else ''}: added {len(report.added)}, "
        f"replaced {len(report.replaced)}, unchanged {len(report.unchanged)}, deleted {len(report.deleted)}, "
        f"skipped {len(report.skipped)}; {report.chunks_embedded} chunks embedded in {stats.total:.1f} s "
        f"(Ray start {stats.ray_init:.1f} s, load {stats.load:.1f} s, embed {stats.pipeline:.1f} s on {workers} "
        f"workers, {stats.documents_resumed} documents resumed from an interrupted run, write {stats.assemble:.1f} s)"
    )
    if report.skipped:
        raise typer.Exit(EXIT_PROBLEMS)


def _filters(doc: list[str] | None, since: str | None, until: str | None, source: str | None, meta: list[str] | None):
    """The filter flags as a ``Filters`` (None when none is given); a bad value exits with its message."""
    from rag.dates import filter_date
    from rag.errors import ValidationError
    from rag.filters import Filters, parse_meta

    try:
        start = filter_date(since, "--since") if since is not None else None
        end = filter_date(until, "--until") if until is not None else None
        if start and end and start > end:
            raise ValidationError(f"--since ({start}) is after --until ({end}); nothing could match")
        filters = Filters(
            document_ids=tuple(doc or ()),
            published_from=start,
            published_to=end,
            source=source,
            meta=parse_meta(meta or ()),
        )
    except RagError as exc:
        raise _fail(exc) from None
    return None if filters.is_empty else filters


def _open_engine(index: Path | None, reader: str | None):
    from rag.engine import Engine
    from rag.shards import is_sharded
    from rag.store import index_exists

    settings = _settings(index, reader)
    folder = settings.index_dir
    try:
        # Say so before spending seconds on loading the models.
        if not (index_exists(folder) or is_sharded(folder)):
            raise IndexNotFound(f"no index in {folder}; build one with: rag ingest <your files> --index {folder}")
        # The engine also logs a load error (for the service's log); here _fail prints it, once.
        engine_log = logging.getLogger("rag.engine")
        level = engine_log.level
        engine_log.setLevel(logging.CRITICAL)
        try:
            engine = Engine.open(settings)
        finally:
            engine_log.setLevel(level)
        if not engine.ready:
            raise IndexNotFound(engine.load_error or "no index")
        return engine
    except RagError as exc:
        raise _fail(exc) from None


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question")],
    index: IndexOpt = None,
    reader: ReaderOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Passages shown")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API response as JSON")] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="Ask a running service (e.g. http://127.0.0.1:8000) instead")
    ] = None,
    min_score: Annotated[
        float | None,
        typer.Option(
            "--min-score", min=0.0, max=1.0, help="Answer only at or above this score [default: the fitted threshold]"
        ),
    ] = None,
    doc: DocOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    source: SourceOpt = None,
    meta: MetaOpt = None,
) -> None:
    """Answer a question: the span, highlighted in its passage, with its citation. Exit 1 when no answer.
    With --url, a running service answers (no models loaded here: fast)."""
    filters = _filters(doc, since, until, source, meta)
    if url is not None:
        body = _ask_service(url, question, top_k, min_score, filters)
    else:
        engine = _open_engine(index, reader)
        try:
            result = engine.ask(question, top_k, filters=filters, min_score=min_score)
        except RagError as exc:
            raise _fail(exc) from None
        from rag.wire import ask_json

        body = ask_json(result)
    if as_json:
        console.print_json(json.dumps(body))
    else:
        print_ask(body, top_k)
    if body["no_answer"]:
        raise typer.Exit(EXIT_PROBLEMS)


def _ask_service(url: str, question: str, top_k: int, min_score: float | None, filters) -> dict:
    """POST /ask to a running service; its error message, or why it could not be reached, exits."""
    import httpx

    payload: dict = {"question": question, "top_k": top_k, "min_score": min_score}
    if filters is not None:
        payload["filters"] = {
            "document_ids": list(filters.document_ids) or None,
            "published_from": filters.published_from.isoformat() if filters.published_from else None,
            "published_to": filters.published_to.isoformat() if filters.published_to else None,
            "source": filters.source,
            "meta": dict(filters.meta) or None,
        }
    try:
        response = httpx.post(url.rstrip("/") + "/ask", json=payload, timeout=60.0)
    except httpx.HTTPError as exc:
        err.print(f"[red]error:[/red] cannot reach the service at {escape(url)}: {escape(str(exc))}")
        raise typer.Exit(EXIT_SERVICE) from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        err.print(f"[red]error:[/red] the service answered {response.status_code}: {escape(message)}")
        raise typer.Exit(EXIT_USAGE if response.status_code == 422 else EXIT_SERVICE)
    return response.json()


def print_ask(body: dict, top_k: int) -> None:
    """An /ask response for a person: each answer in its sentence with its citation, or why there is none and
    what came close."""
    if body["no_answer"]:
        if body.get("no_answer_reason") == "not_stated":
            titles = ", ".join(dict.fromkeys(p["title"] for p in body["passages"]))
            console.print(
                f"[bold yellow]No answer:[/bold yellow] the articles touch on this ({escape(titles)}) but do not "
                "seem to say it."
            )
        else:
            console.print("[bold yellow]No answer:[/bold yellow] nothing in the articles is about this question.")
        for a in body.get("possible_answers", []):
            console.print(
                f"  [yellow]Unconfirmed[/yellow] {escape(a['text'])}  [dim](score {a['score']:.2f}, below "
                f"{body['threshold']:.2f}) — {escape(a['sentence'][:200])}[/dim]"
            )
        for p in body["passages"][:top_k]:
            console.print(f"  [dim]{escape(p['chunk_id'])}[/dim] {escape(p['text'][:160])}…")
    else:
        for i, a in enumerate(body["answers"]):
            head = "[bold green]Answer[/bold green]" if i == 0 else "[green]Also[/green]"
            console.print(f"{head} {escape(a['text'])}  [dim](score {a['score']:.2f})[/dim]")
            # The sentence that holds the answer (the passage is in --json): readable for "why" and "how".
            start, end = a["document_offset"]["start"], a["document_offset"]["end"]
            lo, hi = start - a["sentence_offset"]["start"], end - a["sentence_offset"]["start"]
            before, after = a["sentence"][:lo], a["sentence"][hi:]
            console.print(f"  {escape(before)}[reverse bold]{escape(a['text'])}[/reverse bold]{escape(after)}")
            page = f", page {a['page']}" if a.get("page") else ""
            console.print(
                f"  [dim]— {escape(a['title'])} \\[{escape(a['document_id'])}]{page}, characters {start}–{end}[/dim]"
            )
    console.print(f"[dim]{json.dumps(body['timings_ms'])}[/dim]")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The query")],
    index: IndexOpt = None,
    k: Annotated[int, typer.Option("-k", help="Passages")] = 5,
    doc: DocOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    source: SourceOpt = None,
    meta: MetaOpt = None,
) -> None:
    """Retrieve passages (hybrid dense + BM25), without reading them; the filters search only the documents they
    keep."""
    filters = _filters(doc, since, until, source, meta)
    engine = _open_engine(index, "heuristic")
    try:
        hits, timings, snap = engine.search(query, k, filters)
    except RagError as exc:
        raise _fail(exc) from None
    table = Table("rank", "score", "chunk", "passage")
    for rank, hit in enumerate(hits, 1):
        table.add_row(str(rank), f"{hit.score:.4f}", escape(hit.chunk.chunk_id), escape(hit.chunk.text[:200]))
    console.print(table)
    console.print(f"[dim]{json.dumps(timings)}[/dim]")


@app.command()
def serve(
    index: IndexOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8000]")] = None,
    reader: ReaderOpt = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes (each loads the models)")] = 1,
) -> None:
    """Serve the HTTP API, the OpenAPI docs (/docs) and the web page (/)."""
    import os

    import uvicorn

    settings = _settings(index, reader, host=host, port=port)
    if (refusal := settings.open_writes_refusal()) is not None:
        err.print(f"[red]error:[/red] {escape(refusal)}")
        raise typer.Exit(EXIT_USAGE)
    # Workers are separate processes: pass the choices on through the environment the settings read.
    os.environ["RAG_INDEX_DIR"] = str(settings.index_dir)
    os.environ["RAG_READER"] = settings.reader
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing reads like an error
    uvicorn.run(
        "service.main:app_factory",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        access_log=False,
        # Past this many open connections uvicorn answers 503 at once (its own plain-text "Service Unavailable"),
        # before any body is read: a client cannot hold an unbounded number of sockets and buffers.
        limit_concurrency=settings.max_connections,
    )


@app.command("train-reader")
def train_reader(
    squad: Annotated[Path, typer.Option(help="SQuAD 2.0 JSON (only its training articles are used)")] = Path(
        "../shared/data/squad-v2.0-dev/dev-v2.0.json"
    ),
    train_part: Annotated[Path | None, typer.Option(help="Folder of SQuAD training-set parts (groups recipe)")] = Path(
        "../shared/data/squad-v2.0-train-part"
    ),
    out: Annotated[Path, typer.Option(help="Where the weights and reader.json go")] = Path("rag/reader/model"),
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
            extra_gold, index, out, work, squad, train_part, seeds, held_out, replay, install, resume,
            epochs=epochs or 2.0, lr=lr or 3e-5, seed=seed, threads=threads, device=device,
        )
        return
    if recipe == "groups":
        from rag.reader.train_groups import GroupTrainConfig, train_groups

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
            max_questions=max_questions,
        )
        train_groups(group_config, resume=resume, log=lambda m: err.print(escape(m)))
        return
    if recipe != "paragraphs":
        err.print(f"[red]error:[/red] --recipe must be groups or paragraphs, got {escape(recipe)}")
        raise typer.Exit(EXIT_USAGE)
    from rag.reader.train import TrainConfig, train

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
    from rag.reader.adapt import AdaptConfig, adapt

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
    from rag.pipeline import QAPipeline, reader_weights_sha256
    from rag.reader.fit_calibration import fit
    from rag.reader.model import DEFAULT_READER_DIR

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


feedback_app = typer.Typer(
    help="Users' verdicts on answers (POST /feedback): export them as a gold set, evaluate on it."
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(
    index: IndexOpt = None,
    out: Annotated[Path | None, typer.Option(help="Gold set (JSON lines) [default: INDEX/feedback/gold.jsonl]")] = None,
    negatives: Annotated[Path | None, typer.Option(help="Also write the spans marked wrong here")] = None,
) -> None:
    """Write the feedback as a gold set that `rag eval --gold` reads: a span marked right or selected as the
    answer is gold, "not in the articles" makes a question unanswerable, the latest verdict wins; feedback on a
    document that changed since is stale and left out."""
    from rag.errors import DocumentNotFound
    from rag.feedback import FeedbackStore, export_gold, write_jsonl
    from rag.store import CorpusIndex

    settings = _settings(index)
    store = FeedbackStore(settings.feedback_path())
    records = store.records()
    if not records:
        err.print(f"no feedback in {store.path}")
        raise typer.Exit(1)
    try:
        snapshot = CorpusIndex.load(settings.index_dir)
    except RagError as exc:
        raise _fail(exc) from None

    def document(doc_id: str):
        try:
            return snapshot.get(doc_id)
        except DocumentNotFound:
            return None

    exported = export_gold(records, document)
    target = write_jsonl(exported.gold, out or settings.feedback_path().with_name("gold.jsonl"))
    if negatives is not None:
        write_jsonl(exported.negatives, negatives)
    answerable = sum(1 for g in exported.gold if g["answerable"])
    err.print(
        f"{len(exported.gold)} questions ({answerable} answerable, {len(exported.gold) - answerable} not in the "
        f"articles) from {exported.records} records; {exported.stale} stale, {len(exported.negatives)} spans "
        f"marked wrong -> {escape(str(target))}"
    )
    err.print(f"evaluate: rag feedback eval --url http://127.0.0.1:8000 (the page then shows the F1)")


@feedback_app.command("eval")
def feedback_eval(
    index: IndexOpt = None,
    url: Annotated[
        str | None, typer.Option("--url", help="The running service to ask [default: start one on --index]")
    ] = None,
) -> None:
    """Export the feedback (INDEX/feedback/gold.jsonl) and evaluate the service on it (rag eval), writing the run to
    INDEX/feedback/evaluation/; GET /feedback/summary and the page's documents view show its F1 from there."""
    from rag.evaluation.command import eval_command

    settings = _settings(index)
    feedback_export(index=index, out=None, negatives=None)
    eval_command(
        settings.feedback_path().with_name("gold.jsonl"),
        url=url,
        index=None if url else settings.index_dir,
        out=settings.feedback_evaluation_dir(),
        name="feedback",
    )


@app.command("verify")
def verify_index(index: IndexOpt = None) -> None:
    """Check every byte of an index against its manifest's checksums (a load checks every file's size and
    hashes the small ones; this also hashes the vectors, the FAISS index and the BM25 arrays)."""
    from rag.shards import ShardedIndex, is_sharded
    from rag.store import CorpusIndex

    folder = _settings(index).index_dir
    try:
        if is_sharded(folder):
            ShardedIndex.load(folder, verify="full")
        else:
            CorpusIndex.load(folder, verify="full")
    except RagError as exc:
        raise _fail(exc) from None
    err.print(f"{escape(str(folder))}: every file matches its manifest")


@app.command("optimize")
def optimize_index(
    index: IndexOpt = None,
    purge: Annotated[
        bool,
        typer.Option(
            "--purge",
            help="Also remove every earlier commit and the files only they list, so that no deleted document's "
            "text is left on disk",
        ),
    ] = False,
) -> None:
    """Merge every segment of the index into one (searches touch one FAISS and one BM25 index; the merge
    policy otherwise keeps about ten segments per size tier), leaving deleted documents out. Nothing is
    embedded; readers switch when it commits.

    A delete hides a document at once, but its text stays in its segment's files until a merge writes that
    segment again, and in the earlier commits kept for processes still reading them (the two before the live
    one and any younger than 30 s). ``--purge`` removes those too: afterwards the index folder holds no byte
    of a deleted document."""
    from rag.embedding import Embedder
    from rag.engine import Engine
    from rag.store import merge, read_current, write_lock
    from rag.store.commit import collect_garbage

    settings = _settings(index)
    try:
        engine = Engine(settings, Embedder(backend=settings.embed_backend, threads=settings.threads).load())
        engine.reload()
        if engine.load_error:
            raise IndexCorrupt(engine.load_error)
        before = len(engine.snapshot.segments)
        dead = sum(s.dead for s in engine.snapshot.segments)
        started = time.perf_counter()
        while engine.merge_once(merge.plan_all):
            pass
        left: list[str] = []
        if purge:
            with write_lock(settings.index_dir):
                current = read_current(settings.index_dir)
                if current is not None:
                    left = collect_garbage(settings.index_dir, current, keep_previous=0, keep_seconds=0)
    except RagError as exc:
        raise _fail(exc) from None
    if left:
        err.print(f"[red]error:[/red] --purge could not remove {len(left)} path(s); deleted text may remain:")
        for failure in left:
            err.print(f"  {escape(failure)}")
        raise typer.Exit(EXIT_PROBLEMS)
    snap = engine.snapshot
    console.print(
        f"index {settings.index_dir}: {before} segments -> {len(snap.segments)} ({len(snap.chunks)} chunks; "
        f"{dead} chunks of deleted documents dropped) in {time.perf_counter() - started:.1f} s"
        + ("; earlier commits and their files removed" if purge else "")
    )


@app.command("export")
def export_models() -> None:
    """Build the embedder's and the reader's ONNX files (and int8) for the configured runtimes, once per machine.

    Built from the weights without torch and checked against torch's recorded outputs; serving finds them in
    the cache. Without this step the first start makes them (about 15 s)."""
    from rag import onnx
    from rag.embedding import model_dir
    from rag.reader.model import DEFAULT_READER_DIR

    settings = _settings()
    wanted = [("embedder", model_dir(), settings.embed_backend)]
    if settings.reader == "trained":
        wanted.append(("reader", settings.reader_dir or DEFAULT_READER_DIR, settings.reader_backend))
    for kind, folder, backend in wanted:
        if backend == "torch":
            err.print(
                f"{kind}: runs in torch (RAG_{'EMBED' if kind == 'embedder' else 'READER'}_BACKEND), nothing to export"
            )
            continue
        try:
            path = onnx.ensure(kind, Path(folder), int8=backend == "onnx-int8")
        except RagError as exc:
            raise _fail(exc) from None
        err.print(f"{kind}: {escape(str(path))}")


from rag.evaluation.command import eval_command  # noqa: E402

app.command("eval")(eval_command)


def main() -> None:  # pragma: no cover
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
