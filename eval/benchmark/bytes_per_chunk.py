"""Resident memory per chunk, load time and search latency of a large index (issue 27), measured, not computed.

The index is built from synthetic documents shaped like the seed article (15 chunks of about 560 characters,
sentences drawn from the seed's own sentences with words swapped in from a 60,000-word vocabulary, so BM25 has a
realistic vocabulary) and isotropic unit vectors, in IVF-SQ8 segments of ``--segment-chunks`` chunks through the
store's own write path (``CorpusIndex.apply`` with prepared chunks and vectors, then ``save``: one segment a
write). Nothing is embedded: the vectors stand in for MiniLM's (their distribution changes search latency a
little, not memory). The build is resumable: the segments of an earlier, interrupted build are kept.

Then a fresh process loads the index and reports the resident memory the load added (``/proc/self/status``
before and after, divided by the chunks), again after ``--queries`` searches (which touch memory-mapped pages:
split into anonymous memory and file-backed pages, which are page cache the kernel can take back),
the load's seconds, and ``retrieve`` p50/p99 (dense + BM25 + RRF, in process: what ``/search`` adds HTTP to).

    python eval/benchmark/bytes_per_chunk.py --chunks 1000000     (results: eval/results/bytes-per-chunk.json)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "eval" / ".cache" / "bytes-per-chunk"
CHUNKS_PER_DOC = 15
VOCABULARY = 60_000
DIM = 384


def _sentence_pool(seed_dir: Path, size: int = 50_000) -> list[str]:
    """``size`` sentences: the seed's own, with about 30% of their words swapped for Zipf-drawn vocabulary words
    (so BM25's vocabulary and postings look like a real corpus's, not like one article's)."""
    text = " ".join(p.read_text(encoding="utf-8") for p in sorted(seed_dir.glob("*.txt")))
    seed = [s.split() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 5]
    rng = np.random.default_rng(0)
    pool = []
    for _ in range(size):
        sentence = list(seed[int(rng.integers(len(seed)))])
        for i in np.flatnonzero(rng.random(len(sentence)) < 0.3):
            sentence[i] = f"w{min(int(rng.zipf(1.2)) - 1, VOCABULARY - 1):05d}"
        pool.append(" ".join(sentence))
    return pool


def _documents(start: int, count: int, rng: np.random.Generator, pool: list[str]):
    """``count`` documents from number ``start`` on, each with its 15 chunk spans of about 560 characters."""
    from rag.types import Document

    picks = iter(rng.integers(len(pool), size=count * CHUNKS_PER_DOC * 12).tolist())
    for number in range(start, start + count):
        pieces, spans, at = [], [], 0
        for _ in range(CHUNKS_PER_DOC):
            parts, length = [], -1
            while length < 560:
                sentence = pool[next(picks)]
                parts.append(sentence)
                length += len(sentence) + 1
            piece = " ".join(parts)
            spans.append((at, at + len(piece)))
            pieces.append(piece)
            at += len(piece) + 1
        yield Document(id=f"doc-{number:08d}", title=f"Synthetic article {number}", text=" ".join(pieces)), spans


def build(folder: Path, chunks: int, segment_chunks: int, seed_dir: Path) -> None:
    from rag.embedding import MODEL_ID, model_checksum
    from rag.store import CorpusIndex, IndexSettings, index_exists

    settings = IndexSettings(dense_kind="ivf-sq8")
    model = {"id": MODEL_ID, "checksum": model_checksum(), "dim": DIM}
    index = (
        CorpusIndex.load(folder, settings=settings, model=model, verify=False)
        if index_exists(folder)
        else CorpusIndex.empty(settings, model)
    )
    pool = _sentence_pool(seed_dir)
    per_segment = max(1, segment_chunks // CHUNKS_PER_DOC)
    while len(index.chunks) < chunks:
        done = len(index.documents)
        count = min(per_segment, (chunks - len(index.chunks)) // CHUNKS_PER_DOC)
        if count == 0:  # (within one document of the size asked for)
            break
        rng = np.random.default_rng(done)  # the same documents whether the build ran at once or resumed
        started = time.perf_counter()
        docs, prepared = [], {}
        for doc, spans in _documents(done, count, rng, pool):
            vectors = rng.standard_normal((len(spans), DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            docs.append(doc)
            prepared[doc.id] = (spans, vectors)
        written, _ = index.apply(docs, embedder=None, prepared=prepared)
        written.save(folder)
        # Read back from disk (only the new segment: the others are reused): a segment then keeps its text and
        # vectors in its files, so the builder's memory stays bounded (10M chunks: some 14 GB of text otherwise).
        index = CorpusIndex.load(folder, settings=settings, model=model, verify=False, reuse=index)
        print(
            f"built {len(index.chunks):,} of {chunks:,} chunks ({len(index.segments)} segments) "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )


CHILD = """
import gc, json, os, sys, time
import numpy as np
from rag.retrieval import retrieve
from rag.lexical import _bm25s
from rag.store import CorpusIndex

_bm25s()  # the libraries a load imports are not the index's memory

def rss(kind="VmRSS"):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith(kind + ":"))

folder, queries = sys.argv[1], int(sys.argv[2])
gc.collect()
before, anon_before = rss(), rss("RssAnon")
started = time.perf_counter()
index = CorpusIndex.load(folder, verify=True)
load_s = time.perf_counter() - started
gc.collect()
loaded = rss()
rng = np.random.default_rng(7)
times = []
for i in range(queries):
    vector = rng.standard_normal((1, 384)).astype(np.float32)
    vector /= np.linalg.norm(vector)
    words = " ".join(f"w{int(rng.zipf(1.2)) - 1:05d}" for _ in range(6)) + " troops Korea alliance"
    t = time.perf_counter()
    retrieve(index, words, vector, 10)
    times.append((time.perf_counter() - t) * 1000)
after, anon_after = rss(), rss("RssAnon")
n = len(index.chunks)
print(json.dumps({
    "chunks": n, "documents": len(index.documents), "segments": len(index.segments),
    "dense_kind": index.dense.kind, "load_s": round(load_s, 2),
    "rss_loaded_bytes": loaded - before, "rss_after_queries_bytes": after - before,
    "rss_bytes_per_chunk_loaded": round((loaded - before) / n), "rss_bytes_per_chunk": round((after - before) / n),
    "anon_bytes_per_chunk": round((anon_after - anon_before) / n),
    "file_bytes_per_chunk": round(((after - anon_after) - (before - anon_before)) / n),
    "search_p50_ms": round(float(np.percentile(times, 50)), 2),
    "search_p99_ms": round(float(np.percentile(times, 99)), 2),
    "queries": queries,
}))
"""


PARTS = """
import gc, json, sys
from pathlib import Path
import numpy as np
from rag.dense import DenseIndex
from rag.lexical import BM25Index, LexicalSettings, _bm25s
from rag.store.texts import read_documents

_bm25s()

def anon():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssAnon:"))

seg = Path(sys.argv[1])
manifest = json.loads((seg / "segment.json").read_text())
n = manifest["counts"]["chunks"]
out, at = {}, anon()
def step(name):
    global at
    gc.collect()
    now = anon()
    out[name] = round((now - at) / n)
    at = now
keep = [BM25Index(LexicalSettings()).load(seg / "bm25", n)]
step("bm25")
info = manifest["dense_index"]
keep.append(DenseIndex.load(seg / "dense.faiss", info["kind"], 384, info["params"]))
step("faiss")
docs = read_documents(seg / "documents.jsonl")  # (as a segment loads them: the text left in the file)
step("documents")
arrays = np.load(seg / "chunks.npz")
keep.append({k: arrays[k] for k in arrays.files})
step("chunks_npz")
out["text_chars_per_chunk"] = round(sum(len(d.text) for d in docs) / n)
out["segment_chunks"] = n
print(json.dumps(out))
"""


def _child(script: str, *args: str) -> dict:
    """Run ``script`` in a fresh interpreter (memory counted from a clean start); its last line of output, JSON."""
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def parts(folder: Path) -> dict:
    """Anonymous memory per chunk of each part of the index's largest segment, loaded one after another."""
    largest = max((folder / "segments").iterdir(), key=lambda p: (p / "vectors.npy").stat().st_size)
    return _child(PARTS, str(largest))


def measure(folder: Path, queries: int) -> dict:
    return _child(CHILD, str(folder), str(queries))


def serve_check(folder: Path, queries: int, asks: int = 20) -> dict:
    """``rag serve`` on the index (models and all, as a user starts it): seconds until ready, its resident
    memory, and ``/search`` (embed + retrieve + JSON over HTTP) and ``/ask`` latency from a client, with the
    seed's gold questions (the synthetic documents are made of the seed's sentences)."""
    import httpx

    from rag.evaluation.server import serve

    gold = ROOT / "eval" / "gold" / "seed.jsonl"
    questions = [json.loads(line)["question"] for line in gold.read_text(encoding="utf-8").splitlines() if line]
    mib = 1024 * 1024
    with serve(folder, folder.parent / f"serve-{folder.name}.log", cwd=ROOT, ready_s=3600) as server:
        rss_ready = round(server.memory_mib("VmRSS") * mib)
        search_ms, ask_ms, answered = [], [], 0
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for i in range(queries):
                t = time.perf_counter()
                client.get("/search", params={"q": questions[i % len(questions)], "k": 10}).raise_for_status()
                search_ms.append((time.perf_counter() - t) * 1000)
            for i in range(asks):
                t = time.perf_counter()
                reply = client.post("/ask", json={"question": questions[i % len(questions)]})
                reply.raise_for_status()
                ask_ms.append((time.perf_counter() - t) * 1000)
                answered += bool(reply.json().get("answers"))
        return {
            "ready_s": round(server.startup_s, 1),
            "rss_ready_bytes": rss_ready,
            "rss_after_bytes": round(server.memory_mib("VmRSS") * mib),
            "search_http_p50_ms": round(float(np.percentile(search_ms, 50)), 1),
            "search_http_p99_ms": round(float(np.percentile(search_ms, 99)), 1),
            "searches": queries,
            "ask_http_p50_ms": round(float(np.percentile(ask_ms, 50)), 1),
            "asks": asks,
            "asks_answered": answered,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--segment-chunks", type=int, default=250_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seeds", type=Path, default=ROOT / "seeds")
    parser.add_argument(
        "--no-http", dest="http", action="store_false", help="skip `rag serve` on the index (/search over HTTP)"
    )
    parser.add_argument("--folder", type=Path, default=None, help="default: eval/.cache/bytes-per-chunk/<chunks>")
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "eval" / "results" / "bytes-per-chunk.json",
        help="results by size (this run's replaces an earlier one of the same size)",
    )
    parser.add_argument(
        "--bench-json",
        type=Path,
        default=ROOT / "eval" / "results" / "bench.json",
        help="where rss_bytes_per_chunk_1m / _10m go (1M and 10M runs only; '' for nowhere)",
    )
    args = parser.parse_args(argv)
    if args.bench_json == Path(""):
        args.bench_json = None
    folder = args.folder or CACHE / str(args.chunks)
    started = time.perf_counter()
    build(folder, args.chunks, args.segment_chunks, args.seeds)
    result = {**measure(folder, args.queries), "build_s": round(time.perf_counter() - started)}
    result["anon_bytes_per_chunk_by_part"] = parts(folder)
    if args.http:
        result["service"] = serve_check(folder, args.queries)
    result["commit"] = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    print(json.dumps(result, indent=2))
    try:
        runs = json.loads(args.out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        runs = {}
    runs[str(args.chunks)] = {**result, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")
    name = {1_000_000: "1m", 10_000_000: "10m"}.get(args.chunks)
    if name and args.bench_json:
        bench = json.loads(args.bench_json.read_text(encoding="utf-8")) if args.bench_json.is_file() else {}
        bench[f"rss_bytes_per_chunk_{name}"] = result["rss_bytes_per_chunk"]
        bench.setdefault("memory_per_chunk", {})[name] = {
            k: result[k]
            for k in ("chunks", "rss_bytes_per_chunk_loaded", "rss_bytes_per_chunk", "load_s", "commit")
            if k in result
        } | {k: v for k, v in result.get("service", {}).items() if k.startswith(("search_http", "ready"))}
        args.bench_json.write_text(json.dumps(bench, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
