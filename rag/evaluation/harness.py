"""Send gold questions to the service over HTTP and score each response.

The harness only talks HTTP, so it measures what a client sees. Three ways to reach a service:
``remote`` (a running one, ``--url``), ``in_process`` (the app behind ``httpx.ASGITransport``, lifespan run by
hand) and ``served`` (``rag serve`` started as a subprocess on a free port, stopped afterwards).

Questions go in batches through ``POST /ask/batch`` where the service offers it (its OpenAPI schema lists it),
one per ``POST /ask`` otherwise; the service answers a batch exactly as it answers each question alone, so the
scores are the same either way, and only the client-measured latencies differ (a batch's round trip).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx

from rag.evaluation.datasets import GoldItem, GoldSet
from rag.evaluation.metrics import exact_match, f1, ndcg_at, recall_at
from rag.evaluation.server import free_port, serve_command, stop

Mode = Literal["url", "in-process", "serve"]

CORRECT_F1 = 0.5  # an answer "is right" for calibration when its F1 against gold reaches this
REQUEST_TIMEOUT_S = 300.0  # a slow CPU under load can take long; a hung service still ends the run


class ServiceUnavailable(RuntimeError):
    """The service could not be reached, or never became ready; the message says why."""


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class PredictedAnswer:
    text: str
    score: float
    document_id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Observation:
    """What the service said about one question (``error`` when it said nothing usable)."""

    latency_ms: float
    no_answer: bool = True
    answers: tuple[PredictedAnswer, ...] = ()
    passages: tuple[tuple[str, int, int], ...] = ()  # (document_id, start, end), in rank order
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    possible: tuple[PredictedAnswer, ...] = ()  # no answer: the candidates below the threshold, best first


@dataclass(frozen=True, slots=True)
class QuestionResult:
    """One question, scored. Answer fields are SQuAD 2.0-style: an unanswerable question scores 1 iff the
    service abstained. Retrieval-only (BEIR) items leave the answer fields at their defaults."""

    item: GoldItem
    latency_ms: float
    rank: int | None  # 1-based rank of the first passage (QA) or document (BEIR) that counts as gold
    timings_ms: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    prediction: str = ""
    score: float | None = None  # the top answer's score, when there is an answer
    no_answer: bool = True
    em: float = 0.0
    f1: float = 0.0
    top_f1: float | None = None  # F1 of the top answer text, even when abstaining would have been right
    # The top candidate, given or not (a possible answer when the service declined): its score and whether it is
    # right, for the selective-QA figures (None: the service proposed nothing, or says nothing below its threshold).
    candidate_score: float | None = None
    candidate_right: bool | None = None
    citations_ok: tuple[bool, ...] = ()  # per returned answer: document.text[start:end] == text (a contract)
    top_document_gold: bool | None = None  # answerable and answered: the top answer cites the gold document
    # The top answer is right (see ``correct``) and its citation lies inside the gold passage; None when it is
    # not right or the gold set records no gold passage.
    cites_gold_passage: bool | None = None
    ranked_documents: tuple[str, ...] = ()  # BEIR: distinct document ids in rank order
    ndcg10: float | None = None
    recall100: float | None = None

    @property
    def correct(self) -> bool | None:
        """For calibration: the top answer is right (F1 >= 0.5; any answer to an unanswerable is wrong)."""
        if self.score is None:
            return None
        return self.item.answerable and (self.top_f1 or 0.0) >= CORRECT_F1


@dataclass(frozen=True, slots=True)
class EvalRun:
    gold: GoldSet
    results: tuple[QuestionResult, ...]
    wall_s: float  # questions only, without the document fetches for citation checks
    mode: Mode
    reader: str | None
    url: str | None
    index: str | None
    concurrency: int
    top_k: int
    gold_issues: tuple[str, ...] = ()
    batch_size: int = 1  # questions per request: > 1 when they went through POST /ask/batch


@dataclass(frozen=True, slots=True)
class RunOptions:
    top_k: int = 10  # passages asked of /ask (hit@10 and MRR@10 need 10)
    search_k: int = 200  # passages asked of /search for BEIR, deduplicated into documents
    concurrency: int = 4  # requests in flight at once (batches, with /ask/batch)
    batch_size: int = 16  # questions per POST /ask/batch where the service offers it; 1: one /ask per question
    request_timeout_s: float = REQUEST_TIMEOUT_S
    retries: int = 3  # on connection errors and 503 (the service's queue is full)


# ---------------------------------------------------------------------------------------------- targets


async def wait_ready(client: httpx.AsyncClient, timeout_s: float, proc: subprocess.Popen | None = None) -> dict:
    """Poll GET /readyz until 200 and return its body; raise ServiceUnavailable on timeout, exit or a 503 with
    a reason (the lifespan has finished, so it will not become ready by itself)."""
    deadline = time.monotonic() + timeout_s
    last = "no response yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise ServiceUnavailable(f"the service exited with code {proc.returncode} before it was ready")
        try:
            response = await client.get("/readyz", timeout=10)
            if response.status_code == 200:
                return response.json()
            body = _json(response)
            last = f"HTTP {response.status_code}: {body.get('detail') or response.text[:200]}"
            if response.status_code == 503 and body.get("detail"):
                raise ServiceUnavailable(f"the service is up but not ready: {body['detail']}")
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"the service was not ready after {timeout_s:.0f} s (last: {last})")
        await asyncio.sleep(0.5)


def _json(response: httpx.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=10), **kwargs)


@asynccontextmanager
async def remote(url: str, ready_timeout_s: float = 120) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    """A service that is already running; yields the client and the /readyz body."""
    async with _client(base_url=url.rstrip("/")) as client:
        yield client, await wait_ready(client, ready_timeout_s)


@asynccontextmanager
async def in_process(
    settings: Any, app_factory: Callable[..., Any], engine: Any = None
) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    """The app ``app_factory(settings, engine=engine)`` in this process (the caller passes the service's
    ``create_app``: the library does not import the service); ``engine`` (already loaded) skips opening one."""
    app = app_factory(settings, engine=engine)
    # ASGITransport does not run the lifespan, so run it here: it opens the engine when none was given.
    async with (
        app.router.lifespan_context(app),
        _client(transport=httpx.ASGITransport(app=app), base_url="http://in-process") as client,
    ):
        yield client, await wait_ready(client, 5)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@asynccontextmanager
async def served(
    index: str | Path | None, reader: str | None, ready_timeout_s: float = 120
) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    """Start ``rag serve`` on a free port, wait for /readyz, and stop it afterwards (its log goes to a temp
    file, quoted in the error when it never gets ready)."""
    port = free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="rag-eval-serve-", suffix=".log")
    log_path = Path(log_name)
    with os.fdopen(log_fd, "w") as log:
        proc = subprocess.Popen(
            serve_command(index, port, reader), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    failed = True
    try:
        async with _client(base_url=f"http://127.0.0.1:{port}") as client:
            try:
                ready = await wait_ready(client, ready_timeout_s, proc)
            except ServiceUnavailable as exc:
                raise ServiceUnavailable(f"{exc}\n--- server log ({log_path}) ---\n{_tail(log_path)}") from None
            yield client, ready
        failed = False
    finally:
        stop(proc, grace_s=15)
        if not failed:
            log_path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- requests


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


# ---------------------------------------------------------------------------------------------- scoring


def distinct_documents(passages: Sequence[tuple[str, int, int]]) -> tuple[str, ...]:
    """Document ids ranked by their first passage."""
    return tuple(dict.fromkeys(doc for doc, _, _ in passages))


def cites_correctly(answer: PredictedAnswer, document_text: str | None) -> bool:
    """The answer's document offsets point at exactly its text in the cited document. A contract check: the
    service slices each answer out of the document it cites, so this fails only on a bug."""
    return document_text is not None and document_text[answer.start : answer.end] == answer.text


def score_item(item: GoldItem, obs: Observation, kind: str, texts: Mapping[str, str | None]) -> QuestionResult:
    """Score one response against its gold item; ``texts`` holds the cited documents' texts."""
    if obs.error is not None:
        return QuestionResult(item=item, latency_ms=obs.latency_ms, rank=None, error=obs.error)
    if kind == "retrieval":
        ranked = distinct_documents(obs.passages)
        rank = next((i for i, doc in enumerate(ranked, 1) if item.relevance.get(doc, 0) > 0), None)
        return QuestionResult(
            item=item,
            latency_ms=obs.latency_ms,
            rank=rank,
            timings_ms=obs.timings_ms,
            ranked_documents=ranked,
            ndcg10=ndcg_at(ranked, dict(item.relevance), 10),
            recall100=recall_at(ranked, dict(item.relevance), 100),
        )
    rank = next((i for i, p in enumerate(obs.passages, 1) if item.passage_counts(*p)), None)
    top = obs.answers[0] if obs.answers else None
    prediction = "" if obs.no_answer or top is None else top.text
    golds = item.answer_texts
    if item.answerable:
        em, f1_score = exact_match(prediction, golds), f1(prediction, golds)
    else:
        em = f1_score = float(obs.no_answer)
    citations = tuple(cites_correctly(a, texts.get(a.document_id)) for a in obs.answers)
    top_f1 = None if top is None else (f1(top.text, golds) if item.answerable else 0.0)
    right = item.answerable and top_f1 is not None and top_f1 >= CORRECT_F1  # as QuestionResult.correct
    candidate = top if top is not None else (obs.possible[0] if obs.possible else None)
    return QuestionResult(
        item=item,
        latency_ms=obs.latency_ms,
        rank=rank,
        timings_ms=obs.timings_ms,
        prediction=prediction,
        score=None if top is None else top.score,
        no_answer=obs.no_answer,
        em=em,
        f1=f1_score,
        top_f1=top_f1,
        candidate_score=None if candidate is None else candidate.score,
        candidate_right=None
        if candidate is None
        else bool(item.answerable and f1(candidate.text, golds) >= CORRECT_F1),
        citations_ok=citations,
        top_document_gold=(top.document_id == item.document_id) if item.answerable and top is not None else None,
        cites_gold_passage=item.cites_gold_passage(top.document_id, top.start, top.end) if right and top else None,
    )


def check_gold(gold: GoldSet, texts: Mapping[str, str | None]) -> list[str]:
    """Gold documents that the index lacks and answer offsets that do not point at the answer text."""
    issues: list[str] = []
    for doc in sorted({a.document_id for i in gold.items for a in i.answers}):
        if texts.get(doc) is None:
            issues.append(f"gold document {doc!r} is not in the index (wrong --index or --corpus?)")
    for item in gold.items:
        for a in item.answers:
            text = texts.get(a.document_id)
            if text is not None and text[a.start : a.end] != a.text:
                issues.append(f"{item.id}: gold answer {a.text!r} at {a.start}-{a.end} reads {text[a.start : a.end]!r}")
    return issues


# ---------------------------------------------------------------------------------------------- running


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


@dataclass(frozen=True, slots=True)
class Target:
    """Where the service is: ``url`` (running), ``in-process`` (``settings``/``engine``) or ``serve``."""

    mode: Mode
    url: str | None = None
    index: Path | None = None
    reader: str | None = None
    settings: Any = None  # rag.settings.Settings for in-process
    engine: Any = None  # a loaded rag.engine.Engine to reuse in-process (tests)
    app_factory: Callable[..., Any] | None = None  # in-process: the service's create_app(settings, engine=...)
    ready_timeout_s: float = 120.0

    def connect(self) -> AbstractAsyncContextManager[tuple[httpx.AsyncClient, dict]]:
        """An async context that yields a client for the ready service and its /readyz body."""
        if self.mode == "url":
            if not self.url:
                raise ValueError("mode 'url' needs a url")
            return remote(self.url, self.ready_timeout_s)
        if self.mode == "in-process":
            settings = self.settings
            if settings is None:
                from rag.settings import Settings

                overrides: dict[str, Any] = {"index_dir": self.index, "reader": self.reader}
                settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
            if self.app_factory is None:
                raise ValueError("mode 'in-process' needs app_factory (service.main.create_app)")
            return in_process(settings, self.app_factory, self.engine)
        return served(self.index, self.reader, self.ready_timeout_s)


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
