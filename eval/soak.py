"""Soak test: a real ``rag serve`` under mixed reads and steady writes for a long time (issue 24).

Concurrency 16 of ``/ask``, ``/search`` and ``/documents`` reads (a page of the list, or one document), while a
writer adds or replaces a document every second and deletes one every ten, on an index of a few thousand
documents (SQuAD paragraphs, each a document). Per window: requests and 5xx per route, p50/p99 latency per route,
the server's resident memory and open file descriptors, and the disk the index uses against its live data (the
segments its current commit names). At the end every acknowledged write is checked: a document added or
replaced and not deleted since must be there with its latest title, a deleted one must be gone.

Targets: no 5xx, no acknowledged document missing, p99 per route within 1.5x of the first window, resident
memory growth <= 10% after the first window (warm-up), open file descriptors flat (within 16 of the first
window), disk <= 2x the live data. Writes eval/results/soak.json and soak.md; exit 1 when a target is missed.

    .venv/bin/python eval/soak.py [--minutes 30] [--window-minutes 5] [--documents 3000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rag.evaluation.metrics import percentile
from rag.evaluation.server import serve

ROOT = Path(__file__).resolve().parent.parent
ROUTES = ("ask", "search", "list", "get", "write", "delete")
WRITES = {
    "mixed": "an add or a replace every second and a delete every ten",
    "replace": "a replace of a live document every second (the data stays the same size)",
    "none": "none (reads only)",
}


def paragraphs(squad_dir: Path, n: int) -> list[dict]:
    """Up to ``n`` documents, one per paragraph of the SQuAD files (dev and the training parts)."""
    docs = []
    files = [
        squad_dir / "squad-v2.0-dev" / "dev-v2.0.json",
        *sorted((squad_dir / "squad-v2.0-train-part").glob("*.json")),
    ]
    for path in files:
        for article in json.loads(path.read_text())["data"]:
            for i, para in enumerate(article["paragraphs"]):
                title = article.get("title") or "untitled"
                docs.append({"id": f"{title}-{i}"[:120], "title": f"{title} ({i})", "text": para["context"]})
                if len(docs) >= n:
                    return docs
    return docs


@dataclass
class Window:
    started: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    status: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    transport_errors: int = 0
    rss_mib: float = 0.0
    anon_mib: float = 0.0  # of rss: anonymous memory (heap, arenas)
    file_mib: float = 0.0  # of rss: file-backed pages (mapped index files, libraries)
    open_fds: int = 0
    disk_mib: float = 0.0
    live_mib: float = 0.0

    def summary(self, index: int) -> dict:
        routes = {}
        for route in ROUTES:
            lat = self.latencies.get(route, [])
            codes = self.status.get(route, {})
            routes[route] = {
                "requests": len(lat),
                "5xx": sum(c for s, c in codes.items() if s >= 500),
                "p50_ms": round(percentile(lat, 50), 1) if lat else None,
                "p99_ms": round(percentile(lat, 99), 1) if lat else None,
            }
        return {
            "window": index,
            "routes": routes,
            "transport_errors": self.transport_errors,
            "rss_mib": round(self.rss_mib, 1),
            "anon_mib": round(self.anon_mib, 1),
            "file_mib": round(self.file_mib, 1),
            "open_fds": self.open_fds,
            "disk_mib": round(self.disk_mib, 1),
            "live_mib": round(self.live_mib, 1),
        }


def _size_mib(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # removed by a merge meanwhile
                total += (Path(root) / name).stat().st_size
    return total / 2**20


def live_mib(index: Path) -> float:
    """The segments the current commit names (what a freshly merged index would need, roughly)."""
    try:
        commit = (index / "CURRENT").read_text().strip()
        manifest = json.loads((index / commit / "manifest.json").read_text())
        names = [s["name"] if isinstance(s, dict) else s for s in manifest.get("segments", [])]
    except (OSError, ValueError, KeyError):
        return float("nan")
    return sum(_size_mib(index / "segments" / name) for name in names)


def process_figures(pid: int) -> tuple[dict[str, float], int]:
    """(resident memory in MiB: VmRSS, RssAnon and RssFile; open file descriptors) of the server process."""
    keys = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    mem = {v: 0.0 for v in keys.values()}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name = line.split(":", 1)[0]
        if name in keys:
            mem[keys[name]] = int(line.split()[1]) / 1024
    return mem, len(os.listdir(f"/proc/{pid}/fd"))


async def soak(url: str, pid: int, index: Path, docs: list[dict], questions: list[str], args) -> tuple[list, dict]:
    rng = random.Random(13)
    deadline = time.monotonic() + args.minutes * 60
    windows = [Window(time.monotonic())]
    expected: dict[str, str | None] = {d["id"]: d["title"] for d in docs}  # id -> latest title, None: deleted
    spare = iter(range(10**9))

    def record(route: str, started: float, status: int | None) -> None:
        w = windows[-1]
        if status is None:
            w.transport_errors += 1
            return
        w.latencies[route].append((time.perf_counter() - started) * 1000)
        w.status[route][status] += 1

    async def call(client: httpx.AsyncClient, route: str, method: str, path: str, **kw) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            r = await client.request(method, path, **kw)
        except httpx.TransportError:
            record(route, started, None)
            return None
        record(route, started, r.status_code)
        return r

    async def reader(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            roll = rng.random()
            q = rng.choice(questions)
            if roll < 0.45:
                await call(client, "ask", "POST", "/ask", json={"question": q, "top_k": 1})
            elif roll < 0.8:
                await call(client, "search", "POST", "/search", json={"query": q, "k": 5})
            elif roll < 0.9:
                await call(client, "list", "GET", "/documents", params={"limit": 50})
            else:
                live = [i for i, t in expected.items() if t is not None]
                await call(client, "get", "GET", f"/documents/{rng.choice(live)}")

    async def writer(client: httpx.AsyncClient) -> None:
        tick = 0
        while time.monotonic() < deadline:
            tick += 1
            live = [i for i, t in expected.items() if t is not None]
            if args.writes == "none":
                await asyncio.sleep(1.0)
                continue
            if tick % 10 == 0 and args.writes == "mixed":
                victim = rng.choice(live)
                r = await call(client, "delete", "DELETE", f"/documents/{victim}")
                if r is not None and r.status_code == 200:
                    expected[victim] = None
            else:
                base = rng.choice(docs)
                new = args.writes == "mixed" and rng.random() >= 0.5
                doc_id = f"soak-{next(spare)}" if new else rng.choice(live)
                title = f"{base['title']} v{tick}"
                body = {"documents": [{"id": doc_id, "title": title, "text": base["text"]}]}
                r = await call(client, "write", "POST", "/documents", json=body)
                if r is not None and r.status_code == 200:
                    expected[doc_id] = title
            await asyncio.sleep(1.0)

    async def monitor() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(min(args.window_minutes * 60, max(0.0, deadline - time.monotonic())))
            w = windows[-1]
            mem, w.open_fds = process_figures(pid)
            w.rss_mib, w.anon_mib, w.file_mib = mem["rss"], mem["anon"], mem["file"]
            w.disk_mib, w.live_mib = _size_mib(index), live_mib(index)
            if time.monotonic() < deadline - 1:
                windows.append(Window(time.monotonic()))

    limits = httpx.Limits(max_connections=args.concurrency + 2)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        tasks = [reader(client) for _ in range(args.concurrency)] + [writer(client), monitor()]
        await asyncio.gather(*tasks)
        missing, wrong, still_there = [], [], []
        for doc_id, title in expected.items():
            r = await client.get(f"/documents/{doc_id}")
            if title is None:
                if r.status_code != 404:
                    still_there.append(doc_id)
            elif r.status_code != 200:
                missing.append(doc_id)
            elif r.json()["title"] != title:
                wrong.append(doc_id)
    checks = {
        "documents_checked": len(expected),
        "acknowledged_missing": len(missing),
        "acknowledged_stale": len(wrong),
        "deleted_still_there": len(still_there),
    }
    return windows, checks


def verdict(summaries: list[dict], checks: dict) -> list[str]:
    failures = []
    five = sum(r["5xx"] for s in summaries for r in s["routes"].values())
    if five:
        failures.append(f"{five} responses were 5xx")
    if checks["acknowledged_missing"] or checks["acknowledged_stale"] or checks["deleted_still_there"]:
        failures.append(f"acknowledged writes not as acknowledged: {checks}")
    first, rest = summaries[0], summaries[1:]
    for s in rest:
        for route in ("ask", "search", "list", "get"):
            a, b = first["routes"][route]["p99_ms"], s["routes"][route]["p99_ms"]
            if a and b and b > 1.5 * a:
                failures.append(f"window {s['window']}: {route} p99 {b} ms > 1.5x the first window's {a} ms")
        if s["rss_mib"] > 1.10 * first["rss_mib"]:
            failures.append(f"window {s['window']}: resident memory {s['rss_mib']} MiB > 1.10x {first['rss_mib']}")
        if s["open_fds"] > first["open_fds"] + 16:
            failures.append(f"window {s['window']}: {s['open_fds']} open files, {first['open_fds']} at first")
    for s in summaries:
        if s["live_mib"] and s["disk_mib"] > 2 * s["live_mib"]:
            failures.append(f"window {s['window']}: disk {s['disk_mib']} MiB > 2x live {s['live_mib']} MiB")
    return failures


def markdown(meta: dict, summaries: list[dict], checks: dict, failures: list[str]) -> str:
    lines = [
        "# Soak test (`make soak`, eval/soak.py)",
        "",
        f"{meta['minutes']} minutes at concurrency {meta['concurrency']} of mixed reads; writes: "
        + WRITES[meta.get("writes", "mixed")]
        + f"; {meta['documents']} documents at the start; {meta['machine']}; commit {meta['commit']}"
        + (f"; server environment {', '.join(meta['server_env'])}" if meta.get("server_env") else "")
        + ".",
        "",
        "| window | ask p50 / p99 ms | search p50 / p99 ms | list p50 / p99 ms | writes | 5xx | RSS MiB "
        "(anon / file) | open fds | disk / live MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        r = s["routes"]
        five = sum(x["5xx"] for x in r.values())
        lines.append(
            f"| {s['window']} | {r['ask']['p50_ms']} / {r['ask']['p99_ms']} | {r['search']['p50_ms']} / "
            f"{r['search']['p99_ms']} | {r['list']['p50_ms']} / {r['list']['p99_ms']} | "
            f"{r['write']['requests'] + r['delete']['requests']} | {five} | {s['rss_mib']} "
            f"({s.get('anon_mib', '?')} / {s.get('file_mib', '?')}) | {s['open_fds']} | "
            f"{s['disk_mib']} / {s['live_mib']} |"
        )
    lines += ["", f"Acknowledged writes checked at the end: {checks}.", ""]
    lines += ["Targets missed:", *[f"- {f}" for f in failures]] if failures else ["Every target met."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import subprocess

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--window-minutes", type=float, default=5)
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--writes",
        choices=("mixed", "replace", "none"),
        default="mixed",
        help="mixed: add or replace every second, delete every ten (the data grows); replace: only replace live "
        "documents (the data stays the same size); none: reads only",
    )
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE", help="set for the server (repeatable)"
    )
    parser.add_argument("--name", default="soak", help="results file stem: eval/results/NAME.json and NAME.md")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results")
    args = parser.parse_args(argv)
    docs = paragraphs(args.shared / "data", args.documents)
    dev = json.loads((args.shared / "data" / "squad-v2.0-dev" / "dev-v2.0.json").read_text())["data"]
    questions = [q["question"] for a in dev for p in a["paragraphs"] for q in p["qas"]][:2000]
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
        started = time.perf_counter()
        rag = Path(sys.executable).parent / "rag"
        subprocess.run([str(rag), "ingest", str(corpus), "--index", str(index)], check=True, capture_output=True)
        print(f"indexed {len(docs)} documents in {time.perf_counter() - started:.0f} s", flush=True)
        env = {"RAG_ALLOW_OPEN_WRITES": "true", **dict(kv.split("=", 1) for kv in args.server_env)}
        with serve(index, Path(tmp) / "server.log", env=env) as server:
            assert server.pid is not None
            windows, checks = asyncio.run(soak(server.url, server.pid, index, docs, questions, args))
    summaries = [w.summary(i + 1) for i, w in enumerate(windows)]
    failures = verdict(summaries, checks)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    meta = {
        "minutes": args.minutes,
        "window_minutes": args.window_minutes,
        "concurrency": args.concurrency,
        "writes": args.writes,
        "server_env": args.server_env,
        "documents": len(docs),
        "machine": f"{os.cpu_count()} cores",
        "commit": commit.stdout.strip(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(
        json.dumps({**meta, "windows": summaries, "checks": checks, "failures": failures}, indent=2) + "\n"
    )
    (args.out / f"{args.name}.md").write_text(markdown(meta, summaries, checks, failures))
    print(markdown(meta, summaries, checks, failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
