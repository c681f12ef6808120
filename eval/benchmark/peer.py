"""The peer: Haystack 2.x doing the same job, in its own virtual environment (never a dependency of ours).

The benchmark writes a job (setup, corpus, questions, settings), runs ``eval/haystack_peer.py`` with the peer's
interpreter, and reads back its timings and raw results; quality is scored by the benchmark, with the same code
as ours. Two setups, two columns of the report (the peer script's docstring says what each sets):

- ``same_runtime``: our chunks, our BM25 parameters and fields, our depth / k / read_k, our reader weights, all
  in torch fp32 as our side then runs; its no-answer threshold is fitted by our rule (benchmark/calibration.py);
- ``default``: Haystack as its documentation sets it up for CPU, against ours as shipped.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.corpora import Corpus, Question
from benchmark.queries import SEARCH_K, Observed
from benchmark.records import Latency, PeerResult
from rag.chunking import chunk_text
from rag.embedding import Embedder, model_dir
from rag.reader.model import base_model_path
from rag.settings import Settings
from rag.store import CorpusIndex, indexed_text
from rag.types import Document

HAYSTACK = "haystack-ai==2.31.0"
TORCH = "torch==2.13.0"  # first, alone: the CPU build lies on this disk; an unpinned torch pulls CUDA builds
PEER_SCRIPT = Path(__file__).resolve().parent.parent / "haystack_peer.py"
SETUPS = ("same_runtime", "default")


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


def our_chunks(
    index: CorpusIndex, extra: Mapping[str, Sequence[Document]], embedder: Embedder, settings: Settings
) -> list[dict]:
    """Our chunks as the same-runtime peer's documents, each as we index it (title + chunk text): the served
    index's (store ``serve``) and, chunked here as ``rag ingest`` would, those of the ``extra`` corpora (the
    calibration stores). A chunk several stores hold is listed once, with all of them."""
    rows: dict[tuple[str, int, int], dict] = {}
    with_title = settings.title_in_text

    def add(doc: Document, start: int, end: int, store: str) -> None:
        row = rows.setdefault(
            (doc.id, start, end),
            {
                "id": f"{doc.id}#{start}-{end}",
                "doc_id": doc.id,
                "start": start,
                "end": end,
                "text": indexed_text(doc.title, doc.text[start:end], with_title),
                "stores": [],
            },
        )
        row["stores"].append(store)

    for c in index.chunks:
        add(index.documents[c.doc_id], c.start, c.end, "serve")
    chunker = settings.index_settings().chunker
    for store, docs in extra.items():
        for doc in docs:
            for s in chunk_text(doc.text, embedder.token_offsets, chunker):
                add(doc, s.start, s.end, store)
    return list(rows.values())


def _questions(questions: Sequence[Question]) -> list[dict]:
    return [{"id": q.id, "text": q.text} for q in questions]


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


@dataclass
class PeerRun:
    """One setup's figures and the raw results the benchmark scores (answers as the peer returned them:
    ``default`` after its own no-answer rule, ``same_runtime`` the top answer with its score, unthresholded)."""

    result: PeerResult
    quality_searched: list[Observed] = field(default_factory=list)
    quality_asked: list[Observed] = field(default_factory=list)
    calibration: dict[str, list[Observed]] = field(default_factory=dict)
    scored: bool = False  # answers come from our trained weights


def run_peer(
    python: Path,
    work: Path,
    setup: str,
    corpus: Corpus,
    *,
    search_runs: Sequence[Sequence[Question]],
    ask_runs: Sequence[Sequence[Question]],
    warmup: Sequence[Question],
    quality: Sequence[Question],
    ingest_runs: int,
    reader_dir: Path | None,
    ours: Settings,
    max_length: int,
    stride: int,
    timeout_s: float,
    log,
    chunks: Sequence[dict] = (),
    calibration: Mapping[str, Sequence[Question]] | None = None,
) -> PeerRun:
    """Run the peer in ``setup``. ``same_runtime`` needs ``chunks`` (``our_chunks``) and takes ``calibration``
    questions per store (covered, not_covered); ``default`` splits ``corpus`` itself."""
    if setup not in SETUPS:
        raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")
    work = work / setup
    work.mkdir(parents=True, exist_ok=True)
    weights, reader_label = reader_source(reader_dir)
    job: dict = {
        "setup": setup,
        "embedding_model": str(model_dir()),
        "reader": {"weights": weights, "tokenizer": base_model_path(), "max_seq_length": max_length, "stride": stride},
        "retrieval": {
            "depth": ours.retrieval_depth,
            "search_k": SEARCH_K,
            "read_k": ours.read_k,
            "answers": ours.max_answers,
            "dense_weight": ours.dense_weight,
            "lexical_weight": ours.lexical_weight,
        },
        "ingest_runs": ingest_runs,
        "warmup": [q.text for q in warmup],
        "search_runs": [_questions(run) for run in search_runs],
        "ask_runs": [_questions(run) for run in ask_runs],
        "quality": _questions(quality),
        "work_dir": str(work),
    }
    if setup == "same_runtime":
        job["chunks"] = str(work / "chunks.jsonl")
        _write_jsonl(work / "chunks.jsonl", chunks)
        job["bm25"] = {"algorithm": "BM25Plus", "parameters": {"k1": ours.bm25_k1, "b": ours.bm25_b, "delta": 0.0}}
        if calibration and weights is not None:
            job["calibration"] = {name: _questions(qs) for name, qs in calibration.items()}
    else:
        job["documents"] = str(work / "documents.jsonl")
        _write_jsonl(
            work / "documents.jsonl", [{"id": d.id, "title": d.title, "text": d.text} for d in corpus.documents]
        )
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
    log(f"peer ({setup}): running {PEER_SCRIPT.name} on {corpus.name}; log in {log_path}")
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
            return PeerRun(PeerResult("failed", f"the peer did not finish in {timeout_s:.0f} s; see {log_path}", setup))
    if proc.returncode != 0 or not out_path.is_file():
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-5:])
        return PeerRun(PeerResult("failed", f"the peer exited with {proc.returncode}; see {log_path}: {tail}", setup))
    result = json.loads(out_path.read_text())
    by_id = {q.id: q for qs in (*search_runs, *ask_runs, quality, *(calibration or {}).values()) for q in qs}

    def observed(rows: list[dict]) -> list[Observed]:
        out = []
        for r in rows:
            answer = r.get("top")
            if setup == "default" and r.get("abstained"):
                answer = None
            out.append(
                Observed(by_id[r["id"]], r["ms"], [tuple(p) for p in r["passages"]], answer, score=r.get("score"))
            )
        return out

    searched = [observed(run) for run in result["search"]]
    asked = [observed(run) for run in result["ask"]]
    chunker = (
        f"our {result['ingest']['chunks']:,} chunks, title prepended"
        if setup == "same_runtime"
        else f"{result['ingest']['chunks']:,} chunks (DocumentSplitter defaults: 200 words, no overlap)"
    )
    return PeerRun(
        PeerResult(
            status="ok",
            note=chunker,
            setup=setup,
            versions=result["versions"],
            reader=reader_label,
            ingest_seconds=result["ingest"]["seconds"],
            ingest_documents=result["ingest"]["documents"],
            ingest_chunks=result["ingest"]["chunks"],
            search=Latency.of_runs([[o.ms for o in run] for run in searched]),
            ask=Latency.of_runs([[o.ms for o in run] for run in asked]),
            rss_peak_mib=result.get("rss_peak_mib"),
        ),
        quality_searched=observed(result["quality"]["search"]),
        quality_asked=observed(result["quality"]["ask"]),
        calibration={name: observed(rows) for name, rows in result.get("calibration", {}).items()},
        scored=weights is not None,
    )
