"""Pushing the floor down: the same model passes on torch fp32, ONNX Runtime fp32 and ONNX Runtime int8.

Embedder: throughput on a fixed sample of chunks, single-query latency, and cosine to the torch fp32 vectors.
Reader: latency of one question against its gold paragraph, and the F1 of the best span against the gold
answers (answerable SQuAD validation questions), each backend against torch fp32.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmark.corpora import Question
from benchmark.records import EmbedBackend, ReaderBackend, timed_ms
from rag.embedding import Embedder
from rag.evaluation.metrics import f1, percentile

EMBED_BACKENDS = ("torch", "onnx", "onnx-int8")


def embedder_backends(
    texts: Sequence[str], queries: Sequence[str], *, runs: int, threads: int | None, log
) -> list[EmbedBackend]:
    vectors: dict[str, np.ndarray] = {}
    rows = []
    for backend in EMBED_BACKENDS:
        embedder = Embedder(backend=backend, threads=threads).load()
        embedder.encode(list(texts[:8]))  # warm-up (and the one-off ONNX export, if not cached)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            vectors[backend] = embedder.encode(list(texts))
            times.append(time.perf_counter() - t0)
        query_ms = [timed_ms(embedder.encode, [q])[0] for q in queries]
        cos = np.sum(vectors[backend] * vectors["torch"], axis=1)
        rows.append(
            EmbedBackend(
                backend=backend,
                chunks=len(texts),
                chunks_per_s=len(texts) / statistics.median(times),
                query_p50_ms=percentile(query_ms, 50),
                cos_min=float(cos.min()),
                cos_mean=float(cos.mean()),
            )
        )
        log(f"embedder {backend}: {rows[-1].chunks_per_s:.1f} chunks/s, query {rows[-1].query_p50_ms:.1f} ms")
        del embedder
    return rows


def reader_backends(folder: Path, questions: Sequence[Question], *, threads: int | None, log) -> list[ReaderBackend]:
    from rag.reader.model import SpanReader

    answerable = [q for q in questions if q.answers]
    readers = {
        "torch": SpanReader.load(folder, threads=threads, backend="torch"),
        "onnx": SpanReader.load(folder, threads=threads, backend="onnx"),
        "onnx-int8": SpanReader.load(folder, threads=threads, backend="onnx-int8"),  # the service's own int8 graph
    }
    rows: list[ReaderBackend] = []
    base_f1 = None
    for name, reader in readers.items():
        for q in answerable[:3]:  # warm-up
            reader.read(q.text, [q.context])
        times, scores = [], []
        for q in answerable:
            ms, (reading,) = timed_ms(reader.read, q.text, [q.context], top_n=1)
            times.append(ms)
            best = reading.candidates[0] if reading.candidates else None
            scores.append(f1(q.context[best.start : best.end] if best else "", q.answers))
        score = float(np.mean(scores)) if scores else float("nan")
        base_f1 = score if base_f1 is None else base_f1
        rows.append(ReaderBackend(name, len(answerable), percentile(times, 50), score, score - base_f1))
        log(f"reader {name}: {rows[-1].ms_per_passage_p50:.1f} ms/passage, F1 {score:.3f}")
    return rows
