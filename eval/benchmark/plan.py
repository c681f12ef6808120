"""What a run of ``eval/bench.py`` measures: how much of everything each mode does (``FULL``, ``QUICK``) and which
reader /ask is timed with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    """How much of everything a mode measures."""

    mode: str
    squad_articles: int | None  # None: all 35 (+ seed); else the smallest validation articles
    scifact_docs: int | None  # None: all 5,183
    ingest_runs: dict[str, int]
    floor_sample: dict[str, int]  # corpora whose floor embeds a fixed sample of chunks
    incremental_runs: int
    runs: int  # latency runs, each on new questions
    questions: int  # per latency run
    warmup: int
    requests: int  # per throughput run and concurrency level
    throughput_runs: int  # /search
    ask_throughput_runs: int
    concurrency: tuple[int, ...]
    cache_questions: int
    embed_sample: int
    embed_runs: int
    reader_questions: int
    peer_ingest_runs: int
    quality_questions: int  # validation questions scored (search + /ask) on every side, with bootstrap intervals
    calibration_questions: int  # the peer's no-answer threshold: held-out training questions asked in A and B
    calibration_others: int | None  # other training articles in the calibration corpora (None: all 24, as ours)
    batch_size: int = 16  # questions per POST /ask/batch
    batch_questions: int = 64  # per /ask/batch run (each way of asking gets the same ones)
    batch_runs: int = 3


FULL = Plan(
    mode="full",
    squad_articles=None,
    scifact_docs=None,
    ingest_runs={"seed": 3, "squad": 2, "scifact": 1},
    floor_sample={"scifact": 1000},
    incremental_runs=2,
    runs=3,
    questions=40,
    warmup=5,
    requests=200,
    throughput_runs=2,
    ask_throughput_runs=1,
    concurrency=(1, 8, 32),
    cache_questions=30,
    embed_sample=128,
    embed_runs=2,
    reader_questions=100,
    peer_ingest_runs=1,
    quality_questions=500,
    calibration_questions=400,
    calibration_others=None,
)
QUICK = Plan(
    mode="quick",
    squad_articles=2,
    scifact_docs=100,
    ingest_runs={"seed": 2, "squad": 1, "scifact": 1},
    floor_sample={},
    incremental_runs=2,
    runs=2,
    questions=12,
    warmup=3,
    requests=40,
    throughput_runs=1,
    ask_throughput_runs=1,
    concurrency=(1, 8, 32),
    cache_questions=10,
    embed_sample=64,
    embed_runs=2,
    reader_questions=30,
    peer_ingest_runs=1,
    quality_questions=60,
    calibration_questions=40,
    calibration_others=4,
    batch_questions=32,
    batch_runs=2,
)


def reader_choice(asked: str, folder: Path) -> tuple[str, str | None]:
    """(reader kind for /ask or 'none', a note when /ask is not timed with the trained reader)."""
    weights = folder / "model.safetensors"
    if asked == "heuristic":
        return "heuristic", "heuristic reader, a labelled fallback: not the service's reader"
    if weights.is_file():
        return "trained", None
    if asked == "trained":
        raise SystemExit(f"bench: --reader trained, but there are no weights at {weights}")
    return "none", f"no trained reader at {weights}: /ask and reader figures skipped"
