"""Ingest: full builds through the engine (the path `rag ingest` takes), the bare embedding of the same chunks
(the floor), and an incremental add of one article to a built index."""

from __future__ import annotations

import random
import shutil
import statistics
import time
from pathlib import Path

from benchmark.corpora import SEED, Corpus
from benchmark.records import IncrementalAdd, Ingest
from rag.embedding import Embedder
from rag.engine import Engine
from rag.settings import Settings
from rag.store import CorpusIndex, indexed_text
from rag.types import Document


def dir_bytes(folders: Path | list[Path]) -> int:
    folders = folders if isinstance(folders, list) else [folders]
    return sum(p.stat().st_size for folder in folders for p in folder.rglob("*") if p.is_file())


def live_generation(folder: Path) -> list[Path]:
    """The live commit's folder and the segments it lists (what a copy of the live index needs)."""
    import json

    commit = folder / (folder / "CURRENT").read_text().strip()
    manifest = json.loads((commit / "manifest.json").read_text())
    return [commit, *(folder / "segments" / s["name"] for s in manifest.get("segments", []))]


def build(corpus: Corpus, folder: Path, embedder: Embedder, settings: Settings) -> tuple[float, float, CorpusIndex]:
    """One full build into an empty ``folder``: seconds in all, seconds of them saving, and the snapshot."""
    shutil.rmtree(folder, ignore_errors=True)
    engine = Engine(settings.model_copy(update={"index_dir": folder}), embedder)
    engine.reload(create=True)
    t0 = time.perf_counter()
    report = engine.upsert(corpus.documents)
    seconds = time.perf_counter() - t0
    return seconds, seconds - report.seconds, engine.snapshot


def chunk_texts(index: CorpusIndex) -> list[str]:
    return [indexed_text(index.documents[c.doc_id].title, c.text, index.settings.title_in_text) for c in index.chunks]


def measure_ingest(
    corpus: Corpus,
    folder: Path,
    embedder: Embedder,
    settings: Settings,
    *,
    runs: int,
    floor_sample: int | None,
    log,
) -> tuple[Ingest, CorpusIndex]:
    """``runs`` full builds, each followed by a floor run (so background load hits both alike). The floor
    embeds every chunk, or a fixed random sample of ``floor_sample`` chunks for big corpora."""
    builds: list[float] = []
    saves: list[float] = []
    floors: list[float] = []
    index: CorpusIndex | None = None
    texts: list[str] = []
    for run in range(runs):
        seconds, save_s, index = build(corpus, folder, embedder, settings)
        builds.append(seconds)
        saves.append(save_s)
        if not texts:
            texts = chunk_texts(index)
            if floor_sample is not None and floor_sample < len(texts):
                texts = [texts[i] for i in sorted(random.Random(SEED).sample(range(len(texts)), floor_sample))]
        t0 = time.perf_counter()
        embedder.encode(texts)
        floors.append(time.perf_counter() - t0)
        log(
            f"ingest {corpus.name} run {run + 1}/{runs}: {len(index.chunks)} chunks in {seconds:.1f} s; "
            f"floor {len(texts)} chunks in {floors[-1]:.1f} s"
        )
    assert index is not None
    seconds = statistics.median(builds)
    return (
        Ingest(
            corpus=corpus.name,
            documents=len(index.documents),
            chunks=len(index.chunks),
            runs=runs,
            seconds=seconds,
            save_seconds=statistics.median(saves),
            docs_per_s=len(index.documents) / seconds,
            chunks_per_s=len(index.chunks) / seconds,
            floor_chunks_per_s=len(texts) / statistics.median(floors),
            floor_chunks=len(texts),
            index_bytes=dir_bytes(live_generation(folder)),
        ),
        index,
    )


def measure_incremental(
    index: CorpusIndex, folder: Path, article: Document, embedder: Embedder, settings: Settings, *, runs: int, log
) -> IncrementalAdd:
    """Add ``article`` to ``index`` (without it) through ``Engine.upsert``: chunk, embed only the new text,
    update FAISS and BM25, save a new generation. Each run starts from a copy of the same base on disk."""
    base = index
    if article.id in index.documents:
        base, _ = index.apply(deletes=[article.id], embedder=embedder)
    base_dir, work = folder.with_name(folder.name + "-base"), folder.with_name(folder.name + "-work")
    shutil.rmtree(base_dir, ignore_errors=True)
    base.save(base_dir)
    times: list[float] = []
    chunks = 0
    for _ in range(runs):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base_dir, work)
        engine = Engine(settings.model_copy(update={"index_dir": work}), embedder)
        engine.reload()
        t0 = time.perf_counter()
        report = engine.upsert([article])
        times.append(time.perf_counter() - t0)
        chunks = report.chunks_embedded
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(base_dir, ignore_errors=True)
    log(
        f"incremental add of {article.id} ({chunks} chunks) to {len(base.chunks)} chunks: "
        f"{statistics.median(times):.2f} s"
    )
    return IncrementalAdd(
        document=article.title[:60],
        chunks=chunks,
        base_chunks=len(base.chunks),
        seconds=statistics.median(times),
        runs=runs,
    )
