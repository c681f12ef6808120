"""POST /ask/batch against one question per POST /ask: its section of the main run, and ``--batch-only``, which
measures just that on the served corpus."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from benchmark import report
from benchmark.machine import environment
from benchmark.plan import Plan, reader_choice
from benchmark.progress import log


def batch_section(index_dir: Path, reader: str, base, reader_dir: Path, cache: Path, pool, plan: Plan) -> dict:
    """POST /ask/batch against one question per POST /ask, same questions, on its own `rag serve` per batch mode."""
    from benchmark import batch

    warmup = pool.any(plan.warmup)
    runs = [pool.any(plan.batch_questions) for _ in range(plan.batch_runs)]
    rows = batch.compare(index_dir, reader, reader_dir, cache, runs, warmup, batch_size=plan.batch_size, log=log)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "reader": f"{reader} ({base.reader_backend})" if reader == "trained" else reader,
        "embedding": base.embed_backend,
        "index": index_dir.name,
        "load_average": os.getloadavg(),
        "rows": report.plain(rows),
    }


def batch_run(args: argparse.Namespace, plan: Plan, result: dict) -> None:
    """--batch-only: just the /ask/batch section, over the corpus the service is timed on (its index in --cache is
    reused; documents it lacks are added first)."""
    from benchmark.corpora import QuestionPool, load_data
    from rag.embedding import Embedder
    from rag.engine import Engine
    from rag.settings import Settings

    reader_dir = args.reader_dir.resolve()
    reader, note = reader_choice(args.reader, reader_dir)
    if reader == "none":
        raise SystemExit(f"bench --batch-only: {note}")
    data = load_data(args.shared, args.seeds, squad_articles=plan.squad_articles, scifact_docs=0, corpora=[])
    index_dir = args.cache / f"index-{data.serve}"
    base = Settings(reader=reader, reader_dir=reader_dir)
    log(f"bringing {index_dir} up to date with {data.corpus(data.serve).description}")
    writer = Engine(base.model_copy(update={"index_dir": index_dir}), Embedder(backend=base.embed_backend).load())
    writer.reload(create=True)
    writer.upsert(data.corpus(data.serve).documents)
    del writer
    pool = QuestionPool(data.scored, data.extra)
    result["environment"] = report.plain(environment(f"{plan.mode} --batch-only", {"reader": reader}))
    result["batch"] = batch_section(index_dir, reader, base, reader_dir, args.cache, pool, plan)
