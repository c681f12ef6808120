"""Send gold questions to the service over HTTP and score each response.

The harness only talks HTTP, so it measures what a client sees: ``targets`` reaches the service (a running one,
the app in this process, or ``rag serve`` started for the run), ``observe`` asks the questions, ``scoring``
scores each response, ``results`` holds what comes out.

Questions go in batches through ``POST /ask/batch`` where the service offers it (its OpenAPI schema lists it),
one per ``POST /ask`` otherwise; the service answers a batch exactly as it answers each question alone, so the
scores are the same either way, and only the client-measured latencies differ (a batch's round trip).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from rag.evaluation.datasets import GoldItem, GoldSet
from rag.evaluation.observe import fetch_documents, observe, observe_batches, offers_batch
from rag.evaluation.results import EvalRun, Observation, QuestionResult, RunOptions
from rag.evaluation.scoring import check_gold, score_item
from rag.evaluation.targets import Target


async def evaluate(
    gold: GoldSet,
    client: httpx.AsyncClient,
    options: RunOptions = RunOptions(),
    on_result: Callable[[], None] | None = None,
) -> tuple[list[QuestionResult], float, list[str]]:
    """Ask every question (at most ``options.concurrency`` requests at once; in batches where the service offers
    them), then fetch the cited and gold documents and score. Returns the results in gold order, the wall time of
    the questions, and gold issues."""
    results, wall_s, issues, _ = await evaluate_batched(gold, client, options, on_result)
    return results, wall_s, issues


async def evaluate_batched(
    gold: GoldSet,
    client: httpx.AsyncClient,
    options: RunOptions = RunOptions(),
    on_result: Callable[[], None] | None = None,
) -> tuple[list[QuestionResult], float, list[str], int]:
    """``evaluate``, also returning the questions per request it used (1: one /ask per question)."""
    if options.concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {options.concurrency}")
    if options.batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {options.batch_size}")
    batched = gold.kind == "qa" and options.batch_size > 1 and await offers_batch(client, options)
    sem = asyncio.Semaphore(options.concurrency)

    async def one(item: GoldItem) -> Observation:
        async with sem:
            obs = await observe(client, item, gold.kind, options)
        if on_result is not None:
            on_result()
        return obs

    t0 = time.perf_counter()
    if batched:
        observations = await observe_batches(client, gold.items, options, on_result)
    else:
        observations = list(await asyncio.gather(*(one(item) for item in gold.items)))
    wall_s = time.perf_counter() - t0
    texts: dict[str, str | None] = {}
    if gold.kind == "qa":
        wanted = [a.document_id for o in observations for a in o.answers]
        wanted += [a.document_id for item in gold.items for a in item.answers]
        texts = await fetch_documents(client, wanted, options)
    results = [score_item(item, obs, gold.kind, texts) for item, obs in zip(gold.items, observations, strict=True)]
    issues = check_gold(gold, texts) if gold.kind == "qa" else []
    return results, wall_s, issues, options.batch_size if batched else 1


def run_eval(
    gold: GoldSet,
    target: Target,
    options: RunOptions = RunOptions(),
    on_result: Callable[[], None] | None = None,
    on_ready: Callable[[dict], None] | None = None,
) -> EvalRun:
    """Connect to the target, evaluate every gold item, and return the scored run (sync entry point)."""

    async def main() -> EvalRun:
        async with target.connect() as (client, ready):
            if on_ready is not None:
                on_ready(ready)
            results, wall_s, issues, batch_size = await evaluate_batched(gold, client, options, on_result)
        index = target.index or (target.settings.index_dir if target.settings is not None else None)
        return EvalRun(
            gold=gold,
            results=tuple(results),
            wall_s=wall_s,
            mode=target.mode,
            reader=ready.get("reader"),
            url=target.url,
            index=None if index is None else str(index),
            concurrency=options.concurrency,
            top_k=options.search_k if gold.kind == "retrieval" else options.top_k,
            gold_issues=tuple(issues),
            batch_size=batch_size,
        )

    return asyncio.run(main())
