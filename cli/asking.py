"""``rag ask``, ``rag search``, ``rag serve``: questions to the index, in this process or to a running service."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cli.base import (
    EXIT_PROBLEMS,
    EXIT_SERVICE,
    EXIT_USAGE,
    DocOpt,
    IndexOpt,
    MetaOpt,
    ReaderOpt,
    SinceOpt,
    SourceOpt,
    UntilOpt,
    _fail,
    _settings,
    app,
    console,
    err,
)
from rag.errors import IndexNotFound, RagError


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
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Serve a sharded index's shards as Ray Serve deployments on the Ray cluster at ADDRESS ('auto': "
            "the one `ray start` runs on this machine); this process routes (needs the ray extra)",
        ),
    ] = None,
    replicas: Annotated[int, typer.Option(min=1, max=64, help="With --ray: replicas of each shard")] = 2,
    replica_cpus: Annotated[float, typer.Option(min=0.0, help="With --ray: Ray CPUs each replica reserves")] = 0.5,
) -> None:
    """Serve the HTTP API, the OpenAPI docs (/docs) and the web page (/)."""
    import os

    import uvicorn

    settings = _settings(index, reader, host=host, port=port, ray_address=ray)
    if (refusal := settings.open_writes_refusal()) is not None:
        err.print(f"[red]error:[/red] {escape(refusal)}")
        raise typer.Exit(EXIT_USAGE)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing reads like an error
    if settings.ray_address:
        from rag.distributed.serving import connect_ray, deploy

        try:
            connect_ray(settings.ray_address)
            count = deploy(settings.index_dir, settings, replicas=replicas, cpus=replica_cpus)
        except RagError as exc:
            raise _fail(exc) from None
        err.print(f"{count} shards x {replicas} replicas serving on Ray at {settings.ray_address}")
        os.environ["RAG_RAY_ADDRESS"] = settings.ray_address
    # Workers are separate processes: pass the choices on through the environment the settings read.
    os.environ["RAG_INDEX_DIR"] = str(settings.index_dir)
    os.environ["RAG_READER"] = settings.reader
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
