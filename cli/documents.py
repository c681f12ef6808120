"""``rag ingest``, ``rag verify``, ``rag optimize``, ``rag export``: documents in, and the index kept."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cli.base import (
    EXIT_PROBLEMS,
    EXIT_USAGE,
    IndexOpt,
    _fail,
    _settings,
    app,
    console,
    err,
    write_progress,
)
from rag.errors import IndexCorrupt, LoadError, RagError


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
        with write_progress("embedding chunks") as on_progress:
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
