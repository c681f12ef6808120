"""``rag eval``: score the service over HTTP against gold questions and write a report. Thin: the work is in
``datasets`` (gold), ``harness`` (the run: ``targets``, ``observe``, ``scoring``) and ``report`` (numbers, files)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.base import EXIT_INDEX, EXIT_PROBLEMS, EXIT_SERVICE, EXIT_USAGE, console, err, progress_bar, write_progress
from rag.errors import RagError

RESULTS_DIR = Path("eval/results")
READERS = ("trained", "heuristic")


def _usage(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(EXIT_USAGE)


def build_index(index: Path, paths: list[Path]) -> None:
    """Make ``index`` hold exactly the documents under ``paths`` (incremental: unchanged ones are kept as
    they are, documents no longer there are deleted), as ``rag ingest --sync`` does."""
    from rag.engine import Engine
    from rag.errors import IndexCorrupt
    from rag.loaders import load_paths
    from rag.settings import Settings

    loaded = load_paths(paths)
    for item, reason in loaded.skipped:
        err.print(f"[yellow]skipped[/yellow] {escape(item)}: {escape(reason)}")
    if not loaded.documents:
        raise RagError(f"--corpus {' '.join(map(str, paths))}: no documents could be read")
    # Engine.open builds the embedder from the settings exactly as the service will (model, backend).
    engine = Engine.open(Settings(index_dir=index), create=True, read=False)
    if engine.load_error:
        raise IndexCorrupt(engine.load_error)
    wanted = {d.id for d in loaded.documents}
    stale = [d for d in engine.snapshot.documents if d not in wanted]
    with write_progress(f"indexing {index}") as on_progress:
        report = engine.write(loaded.documents, stale, progress=on_progress)
    err.print(
        f"index {index}: {len(engine.snapshot.documents)} documents (added {len(report.added)}, replaced "
        f"{len(report.replaced)}, unchanged {len(report.unchanged)}, deleted {len(report.deleted)}; "
        f"{report.chunks_embedded} chunks embedded in {report.seconds:.1f} s)"
    )


def eval_command(
    gold: Annotated[
        Path,
        typer.Argument(
            help="Gold questions: our .jsonl, a SQuAD v1.1/v2.0 .json, or a BEIR folder (queries.jsonl, qrels/)",
            show_default=False,
        ),
    ],
    url: Annotated[
        str | None, typer.Option("--url", help="Evaluate the service running at this URL, e.g. http://127.0.0.1:8000")
    ] = None,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Run the app inside this process (no server, no network)")
    ] = False,
    index: Annotated[
        Path | None,
        typer.Option("--index", help="Index folder the service serves (default: RAG_INDEX_DIR or index/)"),
    ] = None,
    corpus: Annotated[
        list[Path] | None,
        typer.Option(
            "--corpus",
            help="First make --index hold exactly these files/folders (repeatable; incremental, so cheap to repeat)",
        ),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="SQuAD: train, validation (default) or all; BEIR: test (default) or train"),
    ] = None,
    reader: Annotated[
        str | None,
        typer.Option(
            "--reader", help="trained or heuristic, for a service started here (default: RAG_READER or trained)"
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once")] = 4,
    batch_size: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Questions per POST /ask/batch where the service offers it (the same answers as one /ask each; "
            "latencies are then batch round trips); 1: one /ask per question",
        ),
    ] = 16,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Evaluate a fixed random sample of N questions (the same every run)")
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=10, max=50, help="Passages asked of /ask (at least 10, for hit@10)")
    ] = 10,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: eval/results/NAME)")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Run name (default: the gold set's name and the reader)")
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option("--ready-timeout", min=1, help="Seconds to wait for the service to be ready")
    ] = 120.0,
) -> None:
    """Score the service against gold questions over HTTP; write summary.json, results.jsonl and report.png.

    Without --url or --in-process it starts `rag serve` on a free port and stops it afterwards.
    QA gold (.jsonl, SQuAD) goes through POST /ask; BEIR gold through GET /search.
    Exit codes: 0 done, 1 some questions failed, 2 bad usage or gold file, 3 service or index not ready.
    """
    from rag.evaluation.datasets import load_gold
    from rag.evaluation.harness import run_eval
    from rag.evaluation.report import print_summary, write_results_table, write_run
    from rag.evaluation.results import Mode, RunOptions
    from rag.evaluation.targets import ServiceUnavailable, Target

    if url and in_process:
        raise _usage("give --url or --in-process, not both")
    if reader is not None and reader not in READERS:
        raise _usage(f"--reader must be one of {', '.join(READERS)}, got {reader!r}")
    if corpus and url:
        raise _usage("--corpus builds an index for a service started here; a running service (--url) has its own")
    if corpus and index is None:
        raise _usage("--corpus needs --index: the folder to build (not the index you serve, it is made to match)")
    try:
        gold_set = load_gold(gold, split).sample(limit)
    except (RagError, ValueError) as exc:
        raise _usage(str(exc)) from None

    if corpus:
        try:
            build_index(index, list(corpus))  # type: ignore[arg-type]
        except RagError as exc:
            err.print(f"[red]error:[/red] cannot build the index {index}: {escape(str(exc))}")
            raise typer.Exit(EXIT_INDEX) from None

    mode: Mode = "url" if url else "in-process" if in_process else "serve"
    app_factory = None
    if mode == "in-process":
        from service.main import create_app

        app_factory = create_app
    target = Target(
        mode=mode, url=url, index=index, reader=reader, ready_timeout_s=ready_timeout, app_factory=app_factory
    )
    endpoint = "/ask" if gold_set.kind == "qa" else "/search"
    err.print(f"{gold_set.name}: {len(gold_set.items)} questions → {endpoint} ({mode})")
    with progress_bar() as bar:
        task = bar.add_task("starting the service" if mode != "url" else "connecting", total=None)

        def on_ready(ready: dict) -> None:
            if reader and ready.get("reader") and ready["reader"] != reader:
                err.print(f"[yellow]note:[/yellow] the service runs reader {ready['reader']!r}, not {reader!r}")
            doing = f"asking ({ready.get('reader', '?')} reader)" if gold_set.kind == "qa" else "searching"
            bar.reset(task, total=len(gold_set.items), description=doing)

        try:
            run = run_eval(
                gold_set,
                target,
                RunOptions(top_k=top_k, concurrency=concurrency, batch_size=batch_size),
                on_result=lambda: bar.advance(task),
                on_ready=on_ready,
            )
        except ServiceUnavailable as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}")
            raise typer.Exit(EXIT_SERVICE) from None

    run_name = name or (f"{gold_set.name}-{run.reader}" if gold_set.kind == "qa" else gold_set.name)
    out_dir = out or RESULTS_DIR / run_name
    summary = write_run(run, out_dir, run_name)
    print_summary(summary, console)
    for issue in summary["gold_issues"][:10]:
        err.print(f"[yellow]gold:[/yellow] {escape(issue)}")
    if len(summary["gold_issues"]) > 10:
        err.print(f"[yellow]gold:[/yellow] … and {len(summary['gold_issues']) - 10} more (summary.json)")
    if out is None:
        write_results_table(RESULTS_DIR)
    console.print(f"wrote {out_dir}/summary.json, results.jsonl, report.png")
    if summary["errors"]:
        failed = [r for r in run.results if r.error]
        first = failed[0]
        err.print(
            f"[red]{len(failed)} questions failed[/red], e.g. {escape(first.item.id)}: {escape(str(first.error))}"
        )
        raise typer.Exit(EXIT_PROBLEMS)
