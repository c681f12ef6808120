"""The index's write path at 10k / 100k / 1M chunks, on SYNTHETIC documents and vectors.

What a write costs apart from embedding: chunk table, one new segment (FAISS + BM25 over its chunks), the
segment's files, the commit and the switch of CURRENT, under the folder's write lock, as ``Engine.write`` does
it. The documents are random words from a Zipf-shaped vocabulary and the vectors random unit vectors (the
write path's cost does not depend on what they mean); each added document has 10 chunks, given with its
vectors (``prepared``), so nothing is embedded. Also measured: replacing and deleting one document of the
large segment (a tombstone in the commit, nothing rebuilt), a search's p50 before and after those deletions,
loading the index in a new process (start to ready), and a search's latency while a writer adds a document
every second, against idle, in the same run.

    .venv/bin/python eval/benchmark/writes.py --sizes 10000 100000 1000000 --out eval/results
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rag.store import CorpusIndex, IndexSettings, merge, write_lock  # noqa: E402
from rag.types import Document  # noqa: E402

DIM = 384
CHUNKS_PER_DOC = 10
WORDS_PER_CHUNK = 30
MODEL = {"id": "synthetic", "checksum": "synthetic", "dim": DIM}


class Synthetic:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        words = [f"w{i}" for i in range(5000)]
        weights = 1.0 / np.arange(1, len(words) + 1)
        self.words = np.array(words)
        self.p = weights / weights.sum()

    def documents(self, first: int, count: int):
        """``count`` documents with their prepared chunk spans and vectors."""
        docs, prepared = [], {}
        for i in range(first, first + count):
            chunks = [" ".join(self.rng.choice(self.words, WORDS_PER_CHUNK, p=self.p)) for _ in range(CHUNKS_PER_DOC)]
            text = "\n\n".join(chunks)
            spans, at = [], 0
            for c in chunks:
                spans.append((at, at + len(c)))
                at += len(c) + 2
            vectors = self.rng.standard_normal((CHUNKS_PER_DOC, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            doc = Document(id=f"doc-{i}", title=f"Title {i}", text=text)
            docs.append(doc)
            prepared[doc.id] = (spans, vectors)
        return docs, prepared


def build_base(folder: Path, chunks: int, gen: Synthetic) -> tuple[CorpusIndex, float]:
    shutil.rmtree(folder, ignore_errors=True)
    index = CorpusIndex.empty(IndexSettings(), MODEL)
    started = time.perf_counter()
    step = 20_000  # documents per write while building (each a segment; merged below)
    for first in range(0, chunks // CHUNKS_PER_DOC, step):
        docs, prepared = gen.documents(first, min(step, chunks // CHUNKS_PER_DOC - first))
        index, _ = index.apply(docs, embedder=None, prepared=prepared)
    if len(index.segments) > 1:
        index = index.merged(0, len(index.segments))
    index.save(folder)
    return index, time.perf_counter() - started


def timed_adds(
    folder: Path, index: CorpusIndex, gen: Synthetic, adds: int, first: int
) -> tuple[list[float], list[float]]:
    """Milliseconds of each one-document add (lock, new segment, commit), and of each merge the policy asked
    for after it (the engine runs those in the background, outside the lock but for their commit)."""
    times, merges = [], []
    for i in range(adds):
        docs, prepared = gen.documents(first + i, 1)
        started = time.perf_counter()
        with write_lock(folder):
            index, _ = index.apply(docs, embedder=None, prepared=prepared)
            index.save(folder, locked=True)
        times.append((time.perf_counter() - started) * 1000)
        run = merge.plan([s.size for s in index.segments], [s.dead for s in index.segments])
        if run is not None:
            started = time.perf_counter()
            index = index.merged(*run)
            with write_lock(folder):
                index.save(folder, locked=True)
            merges.append((time.perf_counter() - started) * 1000)
    return times, merges


def timed_changes(
    folder: Path, index: CorpusIndex, gen: Synthetic, changes: int, base_docs: int
) -> tuple[CorpusIndex, list[float], list[float], float]:
    """Milliseconds of each delete and then of each replace (a new version) of a document of the large segment,
    each committed as ``Engine.write`` does; and the search p50 right after the deletes (the same segments as
    before them, less the deleted rows: what the tombstones cost a search)."""
    rng = np.random.default_rng(3)
    picked = rng.choice(base_docs, 2 * changes, replace=False)
    replaces, deletes = [], []
    for i in range(changes):
        started = time.perf_counter()
        with write_lock(folder):
            index, _ = index.apply((), [f"doc-{int(picked[i])}"], embedder=None)
            index.save(folder, locked=True)
        deletes.append((time.perf_counter() - started) * 1000)
    after_deletes = search_p50(index, gen)
    for i in range(changes, 2 * changes):
        docs, prepared = gen.documents(int(picked[i]), 1)  # the same id, new text and vectors
        started = time.perf_counter()
        with write_lock(folder):
            index, report = index.apply(docs, embedder=None, prepared=prepared)
            index.save(folder, locked=True)
        replaces.append((time.perf_counter() - started) * 1000)
        assert report.replaced == (docs[0].id,)
    return index, replaces, deletes, after_deletes


def timed_query(index: CorpusIndex, gen: Synthetic, rng: np.random.Generator) -> float:
    """Milliseconds of one hybrid retrieval: a random unit query vector and four words of the vocabulary."""
    from rag.retrieval import retrieve

    q = rng.standard_normal((1, DIM)).astype(np.float32)
    q /= np.linalg.norm(q)
    words = " ".join(rng.choice(gen.words[:2000], 4))
    started = time.perf_counter()
    retrieve(index, words, q, 10)
    return (time.perf_counter() - started) * 1000


def search_p50(index: CorpusIndex, gen: Synthetic, queries: int = 200) -> float:
    """Median hybrid retrieval over the same synthetic queries (seeded), in milliseconds."""
    rng = np.random.default_rng(11)
    return statistics.median(timed_query(index, gen, rng) for _ in range(queries))


def load_seconds(folder: Path) -> float:
    """Process start to a loaded index, in a new Python process."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
        f"from rag.store import CorpusIndex; i = CorpusIndex.load({str(folder)!r}); print(len(i.chunks))"
    )
    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - started if out.stdout else float("nan")


def search_under_writes(folder: Path, index: CorpusIndex, gen: Synthetic, seconds: float, first: int) -> dict:
    """p50/p99 of hybrid retrieval (synthetic query vector + words) idle, then while a writer adds one document
    a second (the snapshot swapped after each commit, as the engine does)."""

    state = {"index": index}
    rng = np.random.default_rng(7)

    def queries(duration: float) -> list[float]:
        out = []
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            out.append(timed_query(state["index"], gen, rng))
        return out

    idle = queries(seconds)
    stop = threading.Event()

    def writer() -> None:
        n = first
        while not stop.is_set():
            docs, prepared = gen.documents(n, 1)
            with write_lock(folder):
                updated, _ = state["index"].apply(docs, embedder=None, prepared=prepared)
                updated.save(folder, locked=True)
            state["index"] = updated
            # the engine's background merge: built outside the lock, committed under it
            run = merge.plan([s.size for s in updated.segments], [s.dead for s in updated.segments])
            if run is not None:
                merged = updated.merged(*run)
                with write_lock(folder):
                    merged.save(folder, locked=True)
                state["index"] = merged
            n += 1
            stop.wait(1.0)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    busy = queries(seconds)
    stop.set()
    thread.join()

    def pct(xs: list[float], q: float) -> float:
        return float(np.percentile(xs, q))

    return {
        "idle_p50_ms": pct(idle, 50),
        "idle_p99_ms": pct(idle, 99),
        "writing_p50_ms": pct(busy, 50),
        "writing_p99_ms": pct(busy, 99),
        "p99_ratio": pct(busy, 99) / pct(idle, 99),
        "queries": len(idle) + len(busy),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--adds", type=int, default=20, help="timed one-document adds per size")
    p.add_argument("--changes", type=int, default=10, help="timed replaces and deletes per size")
    p.add_argument("--search-seconds", type=float, default=15.0, help="seconds idle and seconds under writes")
    p.add_argument("--work", type=Path, default=Path("/tmp/rag-write-bench"))
    p.add_argument("--out", type=Path, default=None, help="folder for writes.json and writes.md")
    args = p.parse_args()
    from rag import dense

    dense.set_search_threads(1)  # as the service searches (rag/engine.py Engine.open)
    rows = []
    for size in args.sizes:
        gen = Synthetic(seed=size)
        folder = args.work / f"index-{size}"
        index, build_s = build_base(folder, size, gen)
        base_docs = size // CHUNKS_PER_DOC
        adds, merges = timed_adds(folder, index, gen, args.adds, first=base_docs)
        index = CorpusIndex.load(folder)
        before = search_p50(index, gen)
        index, replaces, deletes, after = timed_changes(folder, index, gen, args.changes, base_docs)
        index = CorpusIndex.load(folder)
        load_s = load_seconds(folder)
        search = search_under_writes(folder, index, gen, args.search_seconds, first=base_docs + args.adds)
        row = {
            "chunks": size,
            "build_s": build_s,
            "add_p50_ms": statistics.median(adds),
            "add_max_ms": max(adds),
            "replace_p50_ms": statistics.median(replaces),
            "replace_max_ms": max(replaces),
            "delete_p50_ms": statistics.median(deletes),
            "delete_max_ms": max(deletes),
            "search_p50_before_deletes_ms": before,
            "search_p50_after_deletes_ms": after,
            "merges": len(merges),
            "merge_max_ms": max(merges, default=0.0),
            "load_s": load_s,
            "segments_after": len(CorpusIndex.load(folder).segments),
            **search,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    lines = [
        "| chunks (synthetic) | add one 10-chunk document p50 / max (ms) | replace one p50 / max (ms) | "
        "delete one p50 / max (ms) | search p50 before / after the deletes (ms) | "
        "merges of 10 small segments, max (ms) | "
        "load in a new process (s) | search p99 idle / under writes (ms) | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['chunks']:,} | {r['add_p50_ms']:.1f} / {r['add_max_ms']:.1f} | "
            f"{r['replace_p50_ms']:.1f} / {r['replace_max_ms']:.1f} | "
            f"{r['delete_p50_ms']:.1f} / {r['delete_max_ms']:.1f} | "
            f"{r['search_p50_before_deletes_ms']:.2f} / {r['search_p50_after_deletes_ms']:.2f} | "
            f"{r['merges']}, {r['merge_max_ms']:.0f} | "
            f"{r['load_s']:.2f} | "
            f"{r['idle_p99_ms']:.2f} / {r['writing_p99_ms']:.2f} | {r['p99_ratio']:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "writes.json").write_text(json.dumps(rows, indent=2) + "\n")
        (args.out / "writes.md").write_text(
            "# Index write path (synthetic documents and vectors)\n\n"
            f"Produced by `eval/benchmark/writes.py --sizes {' '.join(map(str, args.sizes))}`.\n\n"
            f"{' '.join(__doc__.split(chr(10))[2:10])}\n\n{table}\n"
        )


if __name__ == "__main__":
    main()
