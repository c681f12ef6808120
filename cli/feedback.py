"""``rag feedback export`` and ``rag feedback eval``: users' verdicts as a gold set, and the service measured on it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.base import (
    IndexOpt,
    _fail,
    _settings,
    app,
    err,
)
from rag.errors import RagError

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
    err.print("evaluate: rag feedback eval --url http://127.0.0.1:8000 (the page then shows the F1)")


@feedback_app.command("eval")
def feedback_eval(
    index: IndexOpt = None,
    url: Annotated[
        str | None, typer.Option("--url", help="The running service to ask [default: start one on --index]")
    ] = None,
) -> None:
    """Export the feedback (INDEX/feedback/gold.jsonl) and evaluate the service on it (rag eval), writing the run to
    INDEX/feedback/evaluation/; GET /feedback/summary and the page's documents view show its F1 from there."""
    from cli.evaluate import eval_command

    settings = _settings(index)
    feedback_export(index=index, out=None, negatives=None)
    eval_command(
        settings.feedback_path().with_name("gold.jsonl"),
        url=url,
        index=None if url else settings.index_dir,
        out=settings.feedback_evaluation_dir(),
        name="feedback",
    )
