"""What each benchmark section returns: frozen records, so the report and bench.json read one shape.

Times are milliseconds unless a field says seconds; throughputs are per second. ``None`` means "not measured"
and always comes with a note saying why.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rag.evaluation.metrics import percentile


@dataclass(frozen=True, slots=True)
class Latency:
    """p50/p95 in ms: each the median, over ``runs`` runs, of that run's percentile."""

    p50: float
    p95: float
    mean: float
    n: int  # timed calls per run
    runs: int

    @classmethod
    def of_runs(cls, runs: Sequence[Sequence[float]]) -> Latency:
        runs = [r for r in runs if r]
        if not runs:
            return cls(float("nan"), float("nan"), float("nan"), 0, 0)
        return cls(
            p50=statistics.median(percentile(r, 50) for r in runs),
            p95=statistics.median(percentile(r, 95) for r in runs),
            mean=statistics.median(statistics.fmean(r) for r in runs),
            n=min(len(r) for r in runs),
            runs=len(runs),
        )


def timed_ms(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(milliseconds, result) of one call of ``fn(*args, **kwargs)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return (time.perf_counter() - t0) * 1000, out


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or a != a or b != b:  # a != a: NaN
        return None
    return a / b


# ------------------------------------------------------------------------------------------------ sections


@dataclass(frozen=True, slots=True)
class Environment:
    date: str
    mode: str
    cores: int
    cores_usable: int
    cpu_model: str
    memory_gib: float
    load_average: tuple[float, float, float]
    versions: dict[str, str]
    settings: dict[str, Any]
    commit: str = "unknown"  # git HEAD of the benchmarked tree (loadtest.git_commit: says so when it had changes)


@dataclass(frozen=True, slots=True)
class IncrementalAdd:
    """Seconds to add one article (embed, re-index, save a new generation) to an index of ``base_chunks``."""

    document: str
    chunks: int
    base_chunks: int
    seconds: float
    runs: int


@dataclass(frozen=True, slots=True)
class Ingest:
    """A full build (load nothing, chunk, embed, BM25, FAISS, save) against the bare embedding of its chunks."""

    corpus: str
    documents: int
    chunks: int
    runs: int
    seconds: float  # median full build
    save_seconds: float  # of which: writing the generation to disk (checksums, fsync)
    docs_per_s: float
    chunks_per_s: float
    floor_chunks_per_s: float  # embedder.encode on the same chunk texts
    floor_chunks: int  # how many chunks the floor embedded (all, or a fixed sample for big corpora)
    index_bytes: int
    incremental: IncrementalAdd | None = None

    @property
    def floor_ratio(self) -> float | None:
        return ratio(self.chunks_per_s, self.floor_chunks_per_s)


@dataclass(frozen=True, slots=True)
class QueryLatency:
    """One endpoint measured one way, against its floor (the bare model passes on the same questions)."""

    endpoint: str  # /search or /ask
    where: str  # in-process or http
    latency: Latency
    floor: Latency | None
    note: str = ""
    stages: dict[str, float] = field(default_factory=dict)  # p50 of each stage the service reports (ms)
    floor_stages: dict[str, float] = field(default_factory=dict)  # p50 of each floor pass (ms)

    @property
    def floor_ratio(self) -> float | None:
        return ratio(self.latency.p50, self.floor.p50 if self.floor else None)


@dataclass(frozen=True, slots=True)
class Throughput:
    endpoint: str
    concurrency: int
    requests: int  # per run
    runs: int
    rps: float  # median over runs of successful requests / wall seconds
    p50: float  # client-side latency under this load, median over runs
    p95: float
    errors: int  # non-200 responses and transport errors, all runs together
    error_kinds: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Server:
    corpus: str
    reader: str
    startup_s: float
    rss_ready_mib: float  # VmRSS once /readyz answers 200
    rss_peak_mib: float  # VmHWM after every HTTP measurement
    index_bytes: int


@dataclass(frozen=True, slots=True)
class CacheEffect:
    """The same question twice: the second query embedding comes from the Embedder's LRU cache."""

    questions: int
    first_ms: float  # p50 of /search (in-process) on a new question
    repeat_ms: float  # p50 of the same call again
    first_embed_ms: float
    repeat_embed_ms: float

    @property
    def speedup(self) -> float | None:
        return ratio(self.first_ms, self.repeat_ms)


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean over questions with its 95% percentile-bootstrap interval (resampling the questions)."""

    value: float
    lo: float
    hi: float
    n: int  # questions it is a mean over


@dataclass(frozen=True, slots=True)
class Quality:
    """One system in one column of the comparison, on the quality questions (each asked through search for
    recall@5 and through /ask for F1)."""

    system: str
    column: str  # same_runtime | default (ours as shipped, Haystack as documented)
    questions: int
    recall_at_5: Interval | None  # gold paragraph among the first 5 passages
    f1_squad2: Interval | None  # SQuAD 2.0 style: abstaining on an unanswerable question scores 1
    f1_answerable: Interval | None  # top answer vs gold, answerable questions only
    answered: float | None  # share of questions that got an answer
    no_answer: str  # how it decides to abstain
    note: str = ""


@dataclass(frozen=True, slots=True)
class QualityDifference:
    """Ours minus Haystack on the same questions, in one column: a paired bootstrap interval."""

    column: str
    metric: str  # recall_at_5 | f1_squad2 | f1_answerable
    ours_minus_haystack: Interval


@dataclass(frozen=True, slots=True)
class EmbedBackend:
    backend: str
    chunks: int
    chunks_per_s: float
    query_p50_ms: float
    cos_min: float  # to torch fp32
    cos_mean: float


@dataclass(frozen=True, slots=True)
class ReaderBackend:
    backend: str
    questions: int
    ms_per_passage_p50: float
    f1: float
    f1_delta: float  # vs torch fp32


@dataclass(frozen=True, slots=True)
class PeerResult:
    """Haystack 2.x doing the same job in its own virtual environment, in one setup (eval/haystack_peer.py)."""

    status: str  # ok | skipped | failed
    note: str = ""
    setup: str = ""  # same_runtime | default
    versions: dict[str, str] = field(default_factory=dict)
    reader: str = ""  # which weights its ExtractiveReader was given
    ingest_seconds: float | None = None
    ingest_documents: int = 0
    ingest_chunks: int = 0
    search: Latency | None = None
    ask: Latency | None = None
    rss_peak_mib: float | None = None
    threshold: float | None = None  # same_runtime: the no-answer threshold fitted on its top answer's score
    threshold_fit: dict[str, Any] = field(default_factory=dict)  # on what, by which rule


@dataclass(frozen=True, slots=True)
class ScalePoint:
    """One index kind at one size, at one search setting (nprobe or efSearch)."""

    vectors: int
    kind: str
    params: dict[str, Any]
    build_s: float | None
    index_bytes: int | None
    p50_ms: float
    p95_ms: float
    recall_at_10: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    goal: str
    measured: str
    ok: bool | None  # None: not measured
