"""The service over HTTP: `rag serve` as a subprocess on 127.0.0.1, sequential latency, throughput at several
concurrency levels (errors counted, never retried), and the server's memory from /proc."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmark.corpora import Question
from benchmark.queries import ASK_TOP_K, SEARCH_K, Observed
from benchmark.records import Throughput
from rag.evaluation.metrics import percentile
from rag.evaluation.server import Server
from rag.evaluation.server import serve as served

TIMEOUT_S = 120.0


@contextmanager
def serve(index: Path, reader: str, reader_dir: Path, log_path: Path, ready_timeout_s: float = 300) -> Iterator[Server]:
    """``rag serve --index DIR --port P --reader R`` with the benchmark's reader weights, ready when yielded."""
    env = {"RAG_LOG_LEVEL": "warning", "RAG_READER_DIR": str(reader_dir)}
    with served(index, log_path, reader=reader, env=env, ready_s=ready_timeout_s) as server:
        yield server


# ------------------------------------------------------------------------------------------------ latency


def _request(client: httpx.Client, endpoint: str, q: Question) -> httpx.Response:
    if endpoint == "/search":
        return client.get("/search", params={"q": q.text, "k": SEARCH_K})
    return client.post("/ask", json={"question": q.text, "top_k": ASK_TOP_K})


def http_runs(
    url: str, endpoint: str, runs: Sequence[Sequence[Question]], warmup: Sequence[Question]
) -> list[list[Observed]]:
    """Sequential requests on one keep-alive connection; a non-200 answer stops the benchmark (a latency of an
    error is no latency)."""
    out = []
    with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
        for q in warmup:
            _request(client, endpoint, q)
        for questions in runs:
            row = []
            for q in questions:
                t0 = time.perf_counter()
                r = _request(client, endpoint, q)
                ms = (time.perf_counter() - t0) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"{endpoint} answered {r.status_code}: {r.text[:300]}")
                body = r.json()
                passages = [
                    (p["document_id"], p["document_offset"]["start"], p["document_offset"]["end"])
                    for p in body["passages"]
                ]
                answer = body["answers"][0]["text"] if endpoint == "/ask" and body["answers"] else None
                row.append(Observed(q, ms, passages, answer, timings=body.get("timings_ms", {})))
            out.append(row)
    return out


# ------------------------------------------------------------------------------------------------ throughput


async def _load(
    url: str, endpoint: str, questions: Sequence[Question], concurrency: int
) -> tuple[float, list[float], Counter]:
    """All ``questions`` with at most ``concurrency`` in flight; (wall seconds, latencies of 200s, error kinds)."""
    sem = asyncio.Semaphore(concurrency)
    errors: Counter = Counter()
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as client:

        async def one(q: Question) -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    if endpoint == "/search":
                        r = await client.get("/search", params={"q": q.text, "k": SEARCH_K})
                    else:
                        r = await client.post("/ask", json={"question": q.text, "top_k": ASK_TOP_K})
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] += 1
                    return
                if r.status_code == 200:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors[f"HTTP {r.status_code}"] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(q) for q in questions))
        return time.perf_counter() - t0, latencies, errors


def throughput(url: str, endpoint: str, concurrency: int, runs: Sequence[Sequence[Question]]) -> Throughput:
    rps, p50, p95 = [], [], []
    errors: Counter = Counter()
    for questions in runs:
        wall, latencies, errs = asyncio.run(_load(url, endpoint, questions, concurrency))
        rps.append(len(latencies) / wall)
        p50.append(percentile(latencies, 50))
        p95.append(percentile(latencies, 95))
        errors.update(errs)
    return Throughput(
        endpoint=endpoint,
        concurrency=concurrency,
        requests=len(runs[0]),
        runs=len(runs),
        rps=statistics.median(rps),
        p50=statistics.median(p50),
        p95=statistics.median(p95),
        errors=sum(errors.values()),
        error_kinds=dict(errors),
    )
