"""Questions per second through POST /ask/batch against one question per POST /ask: same server, same questions.

Each server mode gets its own `rag serve`: the default (exact batches: with the int8 models every question keeps
its own forward passes, so a batch answers exactly as /ask) and RAG_BATCH_EXACT=false (questions share passes).
In each, the three ways of asking take turns over the same questions, run after run (each run on new questions),
so that a change in the machine's load falls on all of them; the figures are medians over the runs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmark.corpora import Question
from benchmark.queries import ASK_TOP_K
from rag.evaluation.server import serve

TIMEOUT_S = 600.0
ASK_CONCURRENCY = 4  # what `rag eval` sends at once by default


@dataclass(frozen=True)
class BatchThroughput:
    mode: str  # "exact" (the default) or "shared passes" (RAG_BATCH_EXACT=false)
    questions: int  # in all runs together
    batch_size: int
    runs: int
    ask_qps: float  # one question per /ask, one request at a time
    ask_concurrent_qps: float  # one question per /ask, ASK_CONCURRENCY requests in flight
    batch_qps: float  # /ask/batch, one batch at a time
    same_top_answers: int  # questions whose top answer (text and offsets) /ask/batch gave as /ask did
    errors: int

    @property
    def speedup(self) -> float | None:
        """/ask/batch against the faster way of sending one question per /ask request."""
        best = max(self.ask_qps, self.ask_concurrent_qps)
        return self.batch_qps / best if best > 0 else None


def _top(body: dict) -> tuple | None:
    answers = body.get("answers") or []
    if not answers:
        return None
    a = answers[0]
    return a["text"], a["document_id"], a["document_offset"]["start"], a["document_offset"]["end"]


async def _asks(url: str, questions: Sequence[Question], concurrency: int) -> tuple[float, list, int]:
    """(seconds, each question's top answer, errors) for one /ask per question, ``concurrency`` in flight."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, limits=limits) as client:

        async def one(q: Question) -> tuple | None | Exception:
            async with sem:
                r = await client.post("/ask", json={"question": q.text, "top_k": ASK_TOP_K})
            return _top(r.json()) if r.status_code == 200 else RuntimeError(r.status_code)

        t0 = time.perf_counter()
        tops = await asyncio.gather(*(one(q) for q in questions))
        seconds = time.perf_counter() - t0
    return seconds, list(tops), sum(isinstance(t, Exception) for t in tops)


def _batches(url: str, questions: Sequence[Question], size: int) -> tuple[float, list, int]:
    """(seconds, each question's top answer, errors) for /ask/batch, one batch of ``size`` at a time."""
    tops: list = []
    errors = 0
    with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
        t0 = time.perf_counter()
        for at in range(0, len(questions), size):
            part = questions[at : at + size]
            r = client.post("/ask/batch", json={"questions": [q.text for q in part], "top_k": ASK_TOP_K})
            if r.status_code == 200:
                tops += [_top(body) for body in r.json()["results"]]
            else:
                errors += len(part)
                tops += [RuntimeError(r.status_code)] * len(part)
        seconds = time.perf_counter() - t0
    return seconds, tops, errors


def measure(
    url: str, mode: str, runs: Sequence[Sequence[Question]], warmup: Sequence[Question], *, batch_size: int
) -> BatchThroughput:
    """The three ways of asking in turns, each run over its own questions (after a warm-up of each way). The
    batches go first, so the /ask runs find the questions' embeddings in the service's query cache: that favours
    /ask by the embedding's share of a question (a few per cent)."""
    _batches(url, warmup, batch_size)
    asyncio.run(_asks(url, warmup, ASK_CONCURRENCY))
    seq, conc, bat = [], [], []
    errors = same = asked = 0
    for questions in runs:
        b_seconds, b_tops, b_errors = _batches(url, questions, batch_size)
        s_seconds, s_tops, s_errors = asyncio.run(_asks(url, questions, 1))
        c_seconds, _, c_errors = asyncio.run(_asks(url, questions, ASK_CONCURRENCY))
        bat.append(len(questions) / b_seconds)
        seq.append(len(questions) / s_seconds)
        conc.append(len(questions) / c_seconds)
        errors += s_errors + c_errors + b_errors
        same += sum(a == b and not isinstance(a, Exception) for a, b in zip(s_tops, b_tops, strict=True))
        asked += len(questions)
    return BatchThroughput(
        mode=mode,
        questions=asked,
        batch_size=batch_size,
        runs=len(runs),
        ask_qps=statistics.median(seq),
        ask_concurrent_qps=statistics.median(conc),
        batch_qps=statistics.median(bat),
        same_top_answers=same,
        errors=errors,
    )


def compare(
    index: Path,
    reader: str,
    reader_dir: Path,
    cache: Path,
    runs: Sequence[Sequence[Question]],
    warmup: Sequence[Question],
    *,
    batch_size: int = 16,
    log: Callable[[str], None] = print,
) -> list[BatchThroughput]:
    """/ask/batch against one /ask per question, on a server in each batch mode (the same questions in both)."""
    out = []
    for mode, exact in (("exact", "true"), ("shared passes", "false")):
        env = {"RAG_LOG_LEVEL": "warning", "RAG_READER_DIR": str(reader_dir), "RAG_BATCH_EXACT": exact}
        log(f"/ask/batch ({mode}): starting rag serve --index {index} (reader {reader})")
        with serve(index, cache / f"serve-batch-{exact}.log", reader=reader, env=env, ready_s=300) as server:
            x = measure(server.url, mode, runs, warmup, batch_size=batch_size)
        log(
            f"/ask/batch ({mode}): {x.batch_qps:.2f} q/s against /ask {x.ask_qps:.2f} q/s one at a time, "
            f"{x.ask_concurrent_qps:.2f} q/s {ASK_CONCURRENCY} at a time; {x.same_top_answers}/{x.questions} "
            f"top answers as /ask's; {x.errors} errors"
        )
        out.append(x)
    return out
