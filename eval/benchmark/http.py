"""The service over HTTP: `rag serve` as a subprocess on 127.0.0.1, sequential latency, throughput at several
concurrency levels (errors counted, never retried), and the server's memory from /proc."""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmark.corpora import Question
from benchmark.queries import ASK_TOP_K, SEARCH_K, Observed
from benchmark.records import Throughput
from rag.evaluation.metrics import percentile

TIMEOUT_S = 120.0


@dataclass
class ServerProcess:
    url: str
    pid: int
    startup_s: float
    log: Path

    def memory_mib(self, field: str) -> float:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the server process, from /proc/<pid>/status."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rag_command() -> list[str]:
    script = Path(sys.executable).parent / "rag"
    return [str(script)] if script.exists() else [sys.executable, "-c", "from rag.cli import app; app()"]


@contextmanager
def serve(
    index: Path, reader: str, reader_dir: Path, log_path: Path, ready_timeout_s: float = 300
) -> Iterator[ServerProcess]:
    """``rag serve --index DIR --port P`` (plus ``--reader``), waited on until /readyz says ready."""
    port = free_port()
    cmd = [
        *rag_command(),
        "serve",
        "--index",
        str(index),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--reader",
        reader,
    ]
    env = {**os.environ, "RAG_LOG_LEVEL": "warning", "RAG_READER_DIR": str(reader_dir)}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"rag serve exited with code {proc.returncode}; see {log_path}")
                try:
                    r = client.get("/readyz")
                    if r.status_code == 200:
                        break
                    if r.status_code == 503 and r.json().get("detail"):
                        raise RuntimeError(f"rag serve is up but not ready: {r.json()['detail']}")
                except httpx.TransportError:
                    pass
                if time.perf_counter() - t0 > ready_timeout_s:
                    raise RuntimeError(f"rag serve not ready after {ready_timeout_s:.0f} s; see {log_path}")
                time.sleep(0.2)
        yield ServerProcess(url, proc.pid, time.perf_counter() - t0, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
