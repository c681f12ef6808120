"""The ``rag`` command's shared parts: the Typer app, consoles, exit codes, options and error handling.

Exit codes: 0 success, 1 the command ran but found problems (files skipped, no answer), 2 bad usage,
3 the index is missing, broken or mismatched, 4 a model could not be loaded, 5 the service was not there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from rag.errors import IndexCorrupt, IndexMismatch, IndexNotFound, ModelError

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


@contextmanager
def write_progress(description: str) -> Iterator[Callable[[int, int], None]]:
    """A bar for an index write: yields the ``progress(done, total)`` hook that ``Engine.write`` calls as it
    embeds (the total is unknown until the chunks are counted)."""
    with progress_bar() as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
