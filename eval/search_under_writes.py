"""`/search` latency over HTTP while a client adds a document every second, against idle, in the same run.

A copy of an index (default: the SciFact evaluation index `make eval` builds, 5,183 abstracts) is served by
`rag serve` (1 worker). One client sends `/search` requests back to back for ``--seconds`` with nothing else
running (idle), then again while another client POSTs one new document a second (each a new segment and a
commit; merges run in the service's background thread). Queries are document titles drawn at random.

    .venv/bin/python eval/search_under_writes.py --out eval/results
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rag.evaluation.server import Server  # noqa: E402
from rag.evaluation.server import serve as served  # noqa: E402
from rag.store import CorpusIndex  # noqa: E402

RAG = str(Path(sys.executable).parent / "rag")
#: Open writes (no API key) for these local runs; warnings only in the log.
SERVER_ENV = {"RAG_LOG_LEVEL": "warning", "RAG_ALLOW_OPEN_WRITES": "true"}
ENV = {**os.environ, **SERVER_ENV}


def serve(work: Path, index: Path, port: int, workers: int = 1) -> AbstractContextManager[Server]:
    """`rag serve` on ``index`` (its log in ``work``), ready when entered; its process group is stopped after."""
    return served(index, work / "serve.log", env=SERVER_ENV, cwd=ROOT, port=port, workers=workers, grace_s=60)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", type=Path, default=ROOT / "eval" / ".cache" / "index-scifact")
    p.add_argument(
        "--corpus",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "scifact" / "corpus.jsonl",
        help="built into --index first when that holds no index",
    )
    p.add_argument("--seconds", type=float, default=60.0, help="seconds idle, then as many under writes")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--work", type=Path, default=Path("/tmp/rag-search-under-writes"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    if not (args.index / "CURRENT").exists():
        subprocess.run([RAG, "ingest", str(args.corpus), "--index", str(args.index)], cwd=ROOT, check=True)
    shutil.rmtree(args.work, ignore_errors=True)
    index = args.work / "index"
    shutil.copytree(args.index, index, ignore=shutil.ignore_patterns("write.lock"))
    titles = [d.title for d in CorpusIndex.load(index).documents.values() if d.title]
    rng = random.Random(3)
    written = [0]
    with serve(args.work, index, args.port) as server:
        base = server.url
        with httpx.Client(timeout=120) as client:

            def add(i: int) -> None:
                text = f"Bulletin {i}: the harbour ferry timetable changes on day {i}; {rng.choice(titles)}."
                r = client.post(f"{base}/documents", json={"documents": [{"id": f"bulletin-{i}", "text": text}]})
                r.raise_for_status()
                written[0] += 1

            add(0)  # the first write saves an index of the previous format as segments: not part of the runs

            def searches(seconds: float) -> list[float]:
                out = []
                end = time.perf_counter() + seconds
                while time.perf_counter() < end:
                    q = rng.choice(titles)
                    t = time.perf_counter()
                    r = client.get(f"{base}/search", params={"q": q, "k": 10})
                    out.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                return out

            searches(5)  # warm-up
            idle = searches(args.seconds)
            stop = threading.Event()

            def writer() -> None:
                with httpx.Client(timeout=120) as wc:
                    i = 1
                    while not stop.is_set():
                        text = f"Bulletin {i}: the harbour ferry timetable changes on day {i}."
                        r = wc.post(f"{base}/documents", json={"documents": [{"id": f"bulletin-{i}", "text": text}]})
                        r.raise_for_status()
                        written[0] += 1
                        i += 1
                        stop.wait(1.0)

            thread = threading.Thread(target=writer, daemon=True)
            thread.start()
            busy = searches(args.seconds)
            stop.set()
            thread.join()
    final = CorpusIndex.load(index)
    result = {
        "index": str(args.index.name),
        "chunks": len(final.chunks),
        "segments_at_end": len(final.segments),
        "documents_written": written[0],
        "idle": {
            "requests": len(idle),
            "p50_ms": float(np.percentile(idle, 50)),
            "p99_ms": float(np.percentile(idle, 99)),
        },
        "writing": {
            "requests": len(busy),
            "p50_ms": float(np.percentile(busy, 50)),
            "p99_ms": float(np.percentile(busy, 99)),
        },
    }
    result["p99_ratio"] = result["writing"]["p99_ms"] / result["idle"]["p99_ms"]
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "search_under_writes.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
