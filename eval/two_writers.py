"""Two writers at once on one index: a service on 2 workers taking documents over HTTP, and `rag ingest`.

A copy of the seed index is served by `rag serve --workers 2`; clients POST ``--docs`` one-document requests
while `rag ingest` adds ``--docs`` files to the same folder. Afterwards every one of the 2 x ``--docs``
documents must be in the index (read from disk in a new process, and by both workers over HTTP), and no write
may have failed. Documents are short synthetic news-like paragraphs (real embedding, real commits, real
merges in the background).

    .venv/bin/python eval/two_writers.py --docs 500 --out eval/results
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search_under_writes import ENV, RAG, serve  # noqa: E402  (beside this script)

from rag.store import CorpusIndex  # noqa: E402

CITIES = ["Seoul", "Tokyo", "Lagos", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Accra", "Riga"]


def text(kind: str, i: int) -> str:
    city = CITIES[i % len(CITIES)]
    return (
        f"{city} council report {kind} {i}. The council of {city} met on day {i} and approved {i * 7} new "
        f"homes, a budget of {i * 3} million and a new bus line number {i}. Residents of district {i % 13} "
        f"asked for more parks; the mayor said the plan would be reviewed in {2026 + i % 5}."
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=500, help="documents per writer")
    p.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--seed-index", type=Path, default=ROOT / "index")
    p.add_argument("--work", type=Path, default=Path("/tmp/rag-two-writers"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    index = args.work / "index"
    shutil.copytree(args.seed_index, index, ignore=shutil.ignore_patterns("write.lock"))
    before = set(CorpusIndex.load(index).documents)
    files = args.work / "files"
    files.mkdir(parents=True)
    for i in range(args.docs):
        (files / f"ingest-{i:04d}.json").write_text(
            json.dumps({"id": f"ingest-{i:04d}", "title": f"Ingested {i}", "text": text("ingest", i)})
        )
    with serve(args.work, index, args.port, workers=2) as server:
        base = server.url
        with httpx.Client(timeout=600) as client:
            started = time.perf_counter()
            ingest = subprocess.Popen(
                [RAG, "ingest", str(files), "--index", str(index)],
                cwd=ROOT,
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )

            def post(i: int) -> int:
                body = {"documents": [{"id": f"http-{i:04d}", "title": f"Posted {i}", "text": text("http", i)}]}
                for _ in range(20):
                    r = client.post(f"{base}/documents", json=body)
                    if r.status_code not in (429, 503):
                        return r.status_code
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                return r.status_code

            with ThreadPoolExecutor(args.clients) as pool:
                statuses = list(pool.map(post, range(args.docs)))
            ingest_out, _ = ingest.communicate(timeout=1800)
            seconds = time.perf_counter() - started
            time.sleep(3)  # both workers notice the last commit within a second, then load what it added
            seen_by_workers = set()
            for _ in range(10):  # connections land on either worker
                r = client.get(f"{base}/documents")
                if r.status_code == 200:
                    payload = r.json()  # one page of the list; "count" is how many the worker holds
                    seen_by_workers.add(payload["count"] if isinstance(payload, dict) else len(payload))
    final = CorpusIndex.load(index)
    wanted = {f"http-{i:04d}" for i in range(args.docs)} | {f"ingest-{i:04d}" for i in range(args.docs)}
    missing = sorted(wanted - set(final.documents))
    result = {
        "documents_per_writer": args.docs,
        "http_status_counts": {str(s): statuses.count(s) for s in sorted(set(statuses))},
        "ingest_exit": ingest.returncode,
        "present": len(wanted) - len(missing),
        "missing": len(missing),
        "missing_examples": missing[:10],
        "kept_before": len(before - set(final.documents)) == 0,
        "segments": len(final.segments),
        "documents_listed_by_workers": sorted(seen_by_workers),
        "seconds": round(seconds, 1),
        "ingest_said": " ".join(ingest_out.split())[-300:] if ingest_out else "",
    }
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "two_writers.json").write_text(json.dumps(result, indent=2) + "\n")
    if missing or ingest.returncode != 0 or set(result["http_status_counts"]) - {"200", "201"}:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
