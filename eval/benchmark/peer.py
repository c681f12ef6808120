"""The peer: Haystack 2.x doing the same job, in its own virtual environment (never a dependency of ours).

The benchmark writes a job (corpus, questions, settings), runs ``eval/haystack_peer.py`` with the peer's
interpreter, and reads back its timings and results; quality is scored here, with the same code as ours.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.corpora import Corpus, Question
from benchmark.queries import SEARCH_K, Observed, quality
from benchmark.records import Latency, PeerResult
from rag.embedding import model_dir
from rag.reader.model import base_model_path

HAYSTACK = "haystack-ai==2.31.0"
TORCH = "torch==2.13.0"  # first, alone: the CPU build lies on this disk; an unpinned torch pulls CUDA builds
PEER_SCRIPT = Path(__file__).resolve().parent.parent / "haystack_peer.py"


def requirements() -> list[str]:
    # The same sentence-transformers as ours, so the embedding code path is the same on both sides.
    # accelerate: ExtractiveReader refuses to start without it.
    return [HAYSTACK, f"sentence-transformers=={importlib.metadata.version('sentence-transformers')}", "accelerate"]


def ensure_venv(venv: Path, log) -> Path:
    """Create (once) the peer's venv: ``python3 -m venv``, torch first, then Haystack. Returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".bench-installed"
    wanted = "\n".join([TORCH, *requirements()])
    if python.exists() and stamp.is_file() and stamp.read_text() == wanted:
        return python
    base = shutil.which("python3") or sys.executable
    install_log = venv.with_suffix(".install.log")
    venv.parent.mkdir(parents=True, exist_ok=True)
    log(f"peer: creating {venv} (torch, then {' '.join(requirements())}); log in {install_log}")
    with open(install_log, "w") as out:
        for cmd in (
            [base, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "-q", TORCH],
            [str(python), "-m", "pip", "install", "-q", *requirements()],
        ):
            out.write("$ " + " ".join(cmd) + "\n")
            out.flush()
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False).returncode != 0:
                raise RuntimeError(f"`{' '.join(cmd)}` failed; see {install_log}")
    stamp.write_text(wanted)
    return python


def reader_source(reader_dir: Path | None) -> tuple[str | None, str]:
    """Weights for the peer's ExtractiveReader: our trained reader's, else the base encoder with an untrained QA
    head (same architecture and cost, so its timing still counts; its answers do not)."""
    if reader_dir is not None and (reader_dir / "model.safetensors").is_file():
        return str(reader_dir), "our trained reader's weights (fp16 on disk, loaded as fp32)"
    return None, "base MiniLM with an untrained QA head: timing only, answers not scored"


def _questions(runs: Sequence[Sequence[Question]]) -> list[list[dict]]:
    return [[{"id": q.id, "text": q.text} for q in run] for run in runs]


def run_peer(
    python: Path,
    work: Path,
    corpus: Corpus,
    *,
    search_runs: Sequence[Sequence[Question]],
    ask_runs: Sequence[Sequence[Question]],
    warmup: Sequence[Question],
    ingest_runs: int,
    reader_dir: Path | None,
    read_k: int,
    depth: int,
    max_length: int,
    stride: int,
    timeout_s: float,
    log,
) -> PeerResult:
    work.mkdir(parents=True, exist_ok=True)
    docs = work / "documents.jsonl"
    with open(docs, "w", encoding="utf-8") as fh:
        for d in corpus.documents:
            fh.write(json.dumps({"id": d.id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n")
    weights, reader_label = reader_source(reader_dir)
    job = {
        "documents": str(docs),
        "embedding_model": str(model_dir()),
        "reader": {"weights": weights, "tokenizer": base_model_path(), "max_seq_length": max_length, "stride": stride},
        # ~150 words is about our 200-token chunk; overlap about our one repeated sentence.
        "split": {"by": "word", "length": 150, "overlap": 15},
        "retrieval": {"depth": depth, "search_k": SEARCH_K, "read_k": read_k, "answers": 3},
        "ingest_runs": ingest_runs,
        "warmup": [q.text for q in warmup],
        "search_runs": _questions(search_runs),
        "ask_runs": _questions(ask_runs),
        "work_dir": str(work),
    }
    job_path, out_path = work / "job.json", work / "result.json"
    job_path.write_text(json.dumps(job, indent=1))
    out_path.unlink(missing_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))},
        "HAYSTACK_TELEMETRY_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    log_path = work / "peer.log"
    log(f"peer: running {PEER_SCRIPT.name} ({corpus.name}, {len(corpus.documents)} documents); log in {log_path}")
    with open(log_path, "w") as out:
        try:
            proc = subprocess.run(
                [str(python), str(PEER_SCRIPT), str(job_path), str(out_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return PeerResult("failed", f"the peer did not finish in {timeout_s:.0f} s; see {log_path}")
    if proc.returncode != 0 or not out_path.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
        return PeerResult("failed", f"the peer exited with {proc.returncode}; see {log_path}: {tail}")
    result = json.loads(out_path.read_text())
    by_id = {q.id: q for run in (*search_runs, *ask_runs) for q in run}

    def observed(rows: list[list[dict]]) -> list[list[Observed]]:
        return [
            [Observed(by_id[r["id"]], r["ms"], [tuple(p) for p in r["passages"]], r.get("answer")) for r in run]
            for run in rows
        ]

    searched, asked = observed(result["search"]), observed(result["ask"])
    scored_answers = weights is not None
    peer_quality = quality(
        "haystack",
        [o for run in searched for o in run],
        [o for run in asked for o in run] if scored_answers else [],
        note="" if scored_answers else "answers not scored: no trained reader weights",
    )
    return PeerResult(
        status="ok",
        note=f"{result['ingest']['chunks']} chunks (DocumentSplitter, 150 words, overlap 15)",
        versions=result["versions"],
        reader=reader_label,
        ingest_seconds=result["ingest"]["seconds"],
        ingest_documents=result["ingest"]["documents"],
        ingest_chunks=result["ingest"]["chunks"],
        search=Latency.of_runs([[o.ms for o in run] for run in searched]),
        ask=Latency.of_runs([[o.ms for o in run] for run in asked]),
        rss_peak_mib=result.get("rss_peak_mib"),
        quality=peer_quality,
    )
