"""Ask the service the gold questions over HTTP: one ``POST /ask`` (or ``GET /search``) each, or in batches
through ``POST /ask/batch`` where the service offers it; retries on connection errors and 503; then fetch the
cited documents' texts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from rag.evaluation.datasets import GoldItem
from rag.evaluation.results import Observation, PredictedAnswer, RunOptions


async def _request(client: httpx.AsyncClient, method: str, url: str, options: RunOptions, **kwargs: Any):
    """One request with retries on connection errors and 503; returns (response or None, latency ms, error)."""
    error = "not sent"
    for attempt in range(options.retries + 1):
        if attempt:
            await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        t0 = time.perf_counter()
        try:
            response = await client.request(method, url, timeout=options.request_timeout_s, **kwargs)
        except httpx.TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"
            continue
        latency = (time.perf_counter() - t0) * 1000
        if response.status_code == 503:
            error = f"HTTP 503: {response.text[:200]}"
            continue
        if response.status_code != 200:
            return None, latency, f"HTTP {response.status_code}: {response.text[:300]}"
        return response, latency, None
    return None, 0.0, error


async def observe(client: httpx.AsyncClient, item: GoldItem, kind: str, options: RunOptions) -> Observation:
    if kind == "qa":
        response, latency, error = await _request(
            client, "POST", "/ask", options, json={"question": item.question, "top_k": options.top_k}
        )
    else:
        response, latency, error = await _request(
            client, "GET", "/search", options, params={"q": item.question, "k": options.search_k}
        )
    if response is None:
        return Observation(latency_ms=latency, error=error)
    return _observation(response.json(), latency)


def _observation(body: dict, latency: float) -> Observation:
    """An /ask (or /search) response body as an Observation."""
    passages = tuple(
        (p["document_id"], p["document_offset"]["start"], p["document_offset"]["end"]) for p in body["passages"]
    )

    def predicted(items: list[dict]) -> tuple[PredictedAnswer, ...]:
        return tuple(
            PredictedAnswer(
                a["text"],
                float(a["score"]),
                a["document_id"],
                a["document_offset"]["start"],
                a["document_offset"]["end"],
            )
            for a in items
        )

    answers = predicted(body.get("answers", []))
    return Observation(
        latency_ms=latency,
        no_answer=bool(body.get("no_answer", not answers)),
        answers=answers,
        possible=predicted(body.get("possible_answers", [])),
        passages=passages,
        timings_ms={k: float(v) for k, v in body.get("timings_ms", {}).items()},
    )


async def offers_batch(client: httpx.AsyncClient, options: RunOptions) -> bool:
    """Whether the service has ``POST /ask/batch`` (its OpenAPI schema says so; no schema, no batches)."""
    response, _, _ = await _request(client, "GET", "/openapi.json", options)
    if response is None:
        return False
    try:
        return "post" in response.json().get("paths", {}).get("/ask/batch", {})
    except (ValueError, AttributeError):
        return False


async def observe_batches(
    client: httpx.AsyncClient,
    items: Sequence[GoldItem],
    options: RunOptions,
    on_result: Callable[[], None] | None = None,
) -> list[Observation]:
    """The questions through ``POST /ask/batch``, ``options.batch_size`` per request and at most
    ``options.concurrency`` requests in flight; each question's latency is its batch's round trip. A batch the
    service refuses as a whole (422: a question it would refuse alone too) is asked again one /ask per question,
    so that every question gets what /ask says of it."""
    sem = asyncio.Semaphore(options.concurrency)

    async def one(batch: Sequence[GoldItem]) -> list[Observation]:
        async with sem:
            body = {"questions": [item.question for item in batch], "top_k": options.top_k}
            response, latency, error = await _request(client, "POST", "/ask/batch", options, json=body)
        if response is None and error is not None and error.startswith("HTTP 422"):
            observed = []
            for item in batch:
                async with sem:
                    observed.append(await observe(client, item, "qa", options))
        elif response is None:
            observed = [Observation(latency_ms=latency, error=error) for _ in batch]
        else:
            results = response.json().get("results", [])
            if len(results) == len(batch):
                observed = [_observation(r, latency) for r in results]
            else:
                wrong = f"/ask/batch answered {len(results)} results for {len(batch)} questions"
                observed = [Observation(latency_ms=latency, error=wrong) for _ in batch]
        if on_result is not None:
            for _ in batch:
                on_result()
        return observed

    size = options.batch_size
    parts = await asyncio.gather(*(one(items[i : i + size]) for i in range(0, len(items), size)))
    return [obs for part in parts for obs in part]


async def fetch_documents(
    client: httpx.AsyncClient, doc_ids: Sequence[str], options: RunOptions
) -> dict[str, str | None]:
    """Each document's text, fetched once (None when the service does not have it)."""
    sem = asyncio.Semaphore(options.concurrency)

    async def one(doc_id: str) -> tuple[str, str | None]:
        async with sem:
            response, _, _ = await _request(client, "GET", f"/documents/{quote(doc_id, safe='')}", options)
        return doc_id, None if response is None else response.json().get("text")

    return dict(await asyncio.gather(*(one(d) for d in dict.fromkeys(doc_ids))))
