"""Load test: a real uvicorn (`rag serve`) on 127.0.0.1, hit by httpx.AsyncClient at several concurrency levels.

Per level: requests, throughput, p50/p95/p99 latency, transport errors and timeouts, status codes; the server's
own time per request comes from its access log. The target is zero errors and no 5xx but 503. Then a deliberate
overload (a second server with RAG_MAX_CONCURRENCY=1 and RAG_MAX_QUEUE=4, hit at concurrency 64) must refuse
its excess with fast 503s that carry Retry-After, not with timeouts. Loopback only; every level is bounded in
requests and in seconds.

    .venv/bin/python eval/loadtest.py                 # 1000 requests at each of 8, 32, 64, then the overload
    .venv/bin/python eval/loadtest.py --quick         # 150 per level: a few hundred in all
    .venv/bin/python eval/loadtest.py --url http://127.0.0.1:8000 --levels 8,16   # a service already running

Without --index, seeds/ is ingested into a temporary index first (`rag ingest`). Writes eval/results/loadtest.md
and loadtest.json (--out) and exits 1 when a level misses its target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from rag.evaluation.metrics import percentile
from rag.evaluation.server import Server, serve, wait_ready

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "eval" / "gold" / "seed.jsonl"
SEEDS = ROOT / "seeds"
RAG = Path(sys.executable).parent / "rag"

console = Console(width=None if sys.stdout.isatty() else 160)


# ------------------------------------------------------------------------------------ the server under test


def build_seed_index(folder: Path) -> Path:
    """``rag ingest seeds/ --index FOLDER``: the index the service ships with, in a folder of our own."""
    done = subprocess.run(
        [str(RAG), "ingest", str(SEEDS), "--index", str(folder)], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"rag ingest failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return folder


def server_errors(log: Path) -> Counter:
    """The tracebacks a server logged, by their exception line: every 5xx leaves some there."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    found: Counter = Counter()
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            last = next((x for x in lines[i + 1 :] if x and not x[0].isspace()), "an unfinished traceback")
            found[last[:200]] += 1
    return found


def server_times(log: Path, offset: int) -> tuple[int, dict[int, list[float]]]:
    """The service's own ms per status for the /ask and /search lines logged after ``offset``; the new offset."""
    times: dict[int, list[float]] = defaultdict(list)
    with open(log, "rb") as f:
        f.seek(offset)
        data = f.read()
    for line in data.decode(errors="replace").splitlines():
        start = line.find('{"request_id"')
        if start < 0:
            continue
        try:
            record = json.loads(line[start:])
        except ValueError:
            continue
        if record.get("route") in ("/ask", "/search"):
            times[int(record["status"])].append(float(record["ms"]))
    return offset + len(data), times


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (this one when ``pid`` is None), from /proc."""
    if pid is None:
        return time.process_time()
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


# ----------------------------------------------------------------------------------------------- the load


@dataclass(frozen=True)
class Request:
    endpoint: str  # "/ask" or "/search"
    question: str
    k: int


def workload(n: int, ask_share: float, seed: int = 0) -> list[Request]:
    """``n`` requests, /ask and /search mixed, over the gold questions, with varied k."""
    lines = GOLD.read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()]
    rng = random.Random(seed)
    return [
        Request("/ask", rng.choice(questions), rng.choice((3, 5)))
        if rng.random() < ask_share
        else Request("/search", rng.choice(questions), rng.choice((5, 10)))
        for _ in range(n)
    ]


@dataclass
class Level:
    name: str
    concurrency: int
    planned: int
    sent: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)  # transport errors and timeouts, by kind
    latencies_ms: list[float] = field(default_factory=list)
    ok_ms: list[float] = field(default_factory=list)
    busy_ms: list[float] = field(default_factory=list)  # 503s
    busy_without_retry_after: int = 0
    busy_not_overloaded: int = 0  # 503s whose error code is not "overloaded" (not ready, index unavailable)
    stopped_by_time: bool = False
    server_ms: dict[int, list[float]] = field(default_factory=dict)
    client_cpu_s: float = 0.0
    server_cpu_s: float | None = None

    def summary(self) -> dict:
        return {
            "level": self.name,
            "concurrency": self.concurrency,
            "planned": self.planned,
            "requests": self.sent,
            "seconds": round(self.seconds, 2),
            "throughput_rps": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "ok_rps": round(self.statuses.get(200, 0) / self.seconds, 1) if self.seconds else 0.0,
            "status": {str(s): n for s, n in sorted(self.statuses.items())},
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "other_5xx": sum(n for s, n in self.statuses.items() if s >= 500 and s != 503),
            "latency_ms": _pcts(self.latencies_ms),
            "ok_latency_ms": _pcts(self.ok_ms),
            "busy_latency_ms": _pcts(self.busy_ms),
            "server_latency_ms": _pcts([ms for times in self.server_ms.values() for ms in times]),
            "server_ok_ms": _pcts(self.server_ms.get(200, [])),
            "server_busy_ms": _pcts(self.server_ms.get(503, [])),
            "busy_without_retry_after": self.busy_without_retry_after,
            "busy_not_overloaded": self.busy_not_overloaded,
            "stopped_by_time": self.stopped_by_time,
            "client_cpu_s": round(self.client_cpu_s, 1),
            "server_cpu_s": None if self.server_cpu_s is None else round(self.server_cpu_s, 1),
        }


def _pcts(values: list[float]) -> dict[str, float | None]:
    stats: dict[str, float | None] = {"n": len(values)}
    for q in (50, 95, 99):
        stats[f"p{q}"] = round(percentile(values, q), 1) if values else None
    stats["max"] = round(max(values), 1) if values else None
    return stats


async def run_level(url: str, level: Level, requests: list[Request], seconds: float, timeout_s: float) -> Level:
    """``level.concurrency`` workers send ``requests`` in order until they run out or ``seconds`` pass; no retries."""
    queue = iter(requests)
    limits = httpx.Limits(max_connections=level.concurrency, max_keepalive_connections=level.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            for req in queue:
                if time.perf_counter() > deadline:
                    level.stopped_by_time = True
                    return
                level.sent += 1
                t0 = time.perf_counter()
                try:
                    if req.endpoint == "/ask":
                        r = await client.post("/ask", json={"question": req.question, "top_k": req.k})
                    else:
                        r = await client.get("/search", params={"q": req.question, "k": req.k})
                except httpx.TimeoutException as exc:
                    level.errors[f"timeout ({type(exc).__name__})"] += 1
                    continue
                except httpx.TransportError as exc:
                    level.errors[f"transport ({type(exc).__name__})"] += 1
                    continue
                ms = (time.perf_counter() - t0) * 1000
                level.statuses[r.status_code] += 1
                level.latencies_ms.append(ms)
                if r.status_code == 200:
                    level.ok_ms.append(ms)
                elif r.status_code == 503:
                    level.busy_ms.append(ms)
                    level.busy_without_retry_after += "retry-after" not in r.headers
                    level.busy_not_overloaded += _error_code(r) != "overloaded"

        await asyncio.gather(*(worker() for _ in range(level.concurrency)))
        level.seconds = time.perf_counter() - started
    return level


def _error_code(r: httpx.Response) -> str | None:
    try:
        return r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def warm_up(url: str, n: int = 6) -> None:
    """A few sequential requests first, so one-off costs (first model pass, connection set-up) are not measured."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for req in workload(n, 0.5, seed=999):
            if req.endpoint == "/ask":
                client.post("/ask", json={"question": req.question})
            else:
                client.get("/search", params={"q": req.question})


def measure(server: Server, name: str, concurrency: int, requests: list[Request], args: argparse.Namespace) -> dict:
    """One level against ``server``: client-side numbers, plus the server's own times and CPU when we started it."""
    offset = server.log.stat().st_size if server.log else 0
    cpu0, server_cpu0 = cpu_seconds(None), cpu_seconds(server.pid) if server.pid else None
    level = asyncio.run(
        run_level(server.url, Level(name, concurrency, len(requests)), requests, args.seconds, args.timeout)
    )
    level.client_cpu_s = cpu_seconds(None) - cpu0
    if server.pid and server_cpu0 is not None:
        level.server_cpu_s = cpu_seconds(server.pid) - server_cpu0
    if server.log:
        time.sleep(0.2)  # the last access lines
        _, level.server_ms = server_times(server.log, offset)
    return level.summary()


# ------------------------------------------------------------------------------------------------ verdicts


def verdict(s: dict, *, overload: bool, fast_503_ms: float) -> list[str]:
    """What a level got wrong; empty when it met its target."""
    problems = []
    if s["error_count"]:
        problems.append(f"{s['error_count']} transport errors/timeouts")
    if s["other_5xx"]:
        problems.append(f"{s['other_5xx']} 5xx other than 503")
    if s["busy_without_retry_after"]:
        problems.append(f"{s['busy_without_retry_after']} 503s without Retry-After")
    if s["busy_not_overloaded"]:
        problems.append(f"{s['busy_not_overloaded']} 503s not coded 'overloaded'")
    if overload:
        if not s["status"].get("503"):
            problems.append("no 503 under deliberate overload: the queue bound did not bite")
        else:
            # The service's own time when its log is at hand: client time on a shared box is mostly CPU queueing.
            p95, where = s["server_busy_ms"]["p95"], "server"
            if p95 is None:
                p95, where = s["busy_latency_ms"]["p95"], "client"
            if p95 > fast_503_ms:
                problems.append(f"503 p95 ({where}) {p95:.0f} ms > {fast_503_ms:.0f} ms: not a fast refusal")
    return problems


# ------------------------------------------------------------------------------------------------- reports


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _pair(p: dict) -> str:
    return "-" if p["p50"] is None else f"{p['p50']:.0f} / {p['p95']:.0f}"


def render(results: list[dict]) -> None:
    table = Table(title="rag serve under load (loopback; client-side ms unless marked server)")
    columns = ("level", "conc", "requests", "req/s", "200", "503", "other", "errors", "p50", "p95", "p99",
               "200 p50/p95 server", "503 p50/p95", "503 p50/p95 server", "verdict")  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("level", "verdict") else "right")
    for s in results:
        st, lat = s["status"], s["latency_ms"]
        table.add_row(
            s["level"], str(s["concurrency"]), str(s["requests"]), f"{s['throughput_rps']:.1f}",
            str(st.get("200", 0)), str(st.get("503", 0)), _other(st), str(s["error_count"]),
            _fmt(lat["p50"]), _fmt(lat["p95"]), _fmt(lat["p99"]),
            _pair(s["server_ok_ms"]), _pair(s["busy_latency_ms"]), _pair(s["server_busy_ms"]),
            "[green]ok[/green]" if not s["problems"] else "[red]" + "; ".join(s["problems"]) + "[/red]",
        )  # fmt: skip
    console.print(table)


def write_report(out: Path, meta: dict, results: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "levels": results}, indent=2) + "\n")
    lines = [
        "# Load test",
        "",
        f"`{meta['command']}`, {meta['date']}, commit {meta['commit']}.",
        "",
        f"- Machine: {meta['machine']}; load average {meta['loadavg']} at start. {meta['machine_note']}",
        f"- Server: {meta['server']}.",
        f"- Workload: {meta['workload']}.",
        f"- Bounds: at most {meta['requests_per_level']} requests and {meta['seconds_per_level']:.0f} s per level; "
        f"client timeout {meta['timeout_s']:.0f} s, no retries. Under the deliberate overload a 503 counts as "
        f"fast when its p95 (the server's own time, from its access log) is under {meta['fast_503_ms']:.0f} ms.",
        "",
        "Latencies in ms. *client*: request sent to response read, as a caller sees it; *server*: the service's own "
        "time for the request (middleware in to response out), from its access log.",
        "",
        "| level | concurrency | requests | s | req/s | 200/s | 200 | 503 | other | errors | p50 | p95 | p99 "
        "| 200 p50 / p95 server | 503 p50 / p95 client | 503 p50 / p95 server | CPU s client / server | verdict |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for s in results:
        st, lat = s["status"], s["latency_ms"]
        server_cpu = "-" if s["server_cpu_s"] is None else f"{s['server_cpu_s']:.1f}"
        lines.append(
            f"| {s['level']} | {s['concurrency']} | {s['requests']} | {s['seconds']:.1f} | {s['throughput_rps']:.1f} "
            f"| {s['ok_rps']:.1f} | {st.get('200', 0)} | {st.get('503', 0)} | {_other(st)} | {_errors(s)} "
            f"| {_fmt(lat['p50'])} | {_fmt(lat['p95'])} | {_fmt(lat['p99'])} | {_pair(s['server_ok_ms'])} "
            f"| {_pair(s['busy_latency_ms'])} | {_pair(s['server_busy_ms'])} | {s['client_cpu_s']:.1f} / {server_cpu} "
            f"| {'ok' if not s['problems'] else '; '.join(s['problems'])} |"
        )
    lines += ["", *(f"- {note}" for note in meta["notes"]), ""]
    out.with_suffix(".md").write_text("\n".join(lines))


def _other(status: dict[str, int]) -> str:
    return ", ".join(f"{n}×{code}" for code, n in status.items() if code not in ("200", "503")) or "0"


def _errors(s: dict) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in s["errors"].items()) or "0"


def git_commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    return sha.strip() + (" with uncommitted changes" if dirty.strip() else "")


def _machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"


# ---------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a service already running (nothing started, no overload level)")
    parser.add_argument("--index", type=Path, help="index to serve (default: seeds/, ingested to a temp folder)")
    parser.add_argument("--reader", default="heuristic", choices=("heuristic", "trained"), help="[heuristic]")
    parser.add_argument("--levels", default="8,32,64", help="concurrency levels [8,32,64]")
    parser.add_argument("--requests", type=int, help="requests per level [1000; --quick: 150]")
    parser.add_argument("--seconds", type=float, help="time bound per level [120; --quick: 40]")
    parser.add_argument("--quick", action="store_true", help="150 requests per level")
    parser.add_argument("--ask-share", type=float, default=0.7, help="share of /ask among requests [0.7]")
    parser.add_argument("--timeout", type=float, default=30.0, help="client timeout per request, seconds [30]")
    parser.add_argument("--no-overload", action="store_true", help="skip the deliberate overload level")
    parser.add_argument("--overload-concurrency", type=int, default=64, help="[64]")
    parser.add_argument("--fast-503-ms", type=float, default=1000.0, help="overload 503 p95 bound, ms [1000]")
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "loadtest", help="report path stem")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    args.requests = args.requests or (150 if args.quick else 1000)
    args.seconds = args.seconds or (40.0 if args.quick else 120.0)
    overload = not args.no_overload and not args.url
    loadavg = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results: list[dict] = []
    notes: list[str] = []
    logged: Counter = Counter()

    def run_levels(server: Server, plan: list[tuple[str, int]], overload_level: bool) -> None:
        warm_up(server.url)
        for i, (name, concurrency) in enumerate(plan):
            console.print(
                f"[dim]{name}: concurrency {concurrency}, {args.requests} requests or {args.seconds:.0f} s[/dim]"
            )
            s = measure(server, name, concurrency, workload(args.requests, args.ask_share, seed=i), args)
            s["problems"] = verdict(s, overload=overload_level, fast_503_ms=args.fast_503_ms)
            results.append(s)

    plan = [(f"c{c}", c) for c in levels]
    with tempfile.TemporaryDirectory(prefix="rag-loadtest-") as tmp:
        if args.url:
            health = wait_ready(args.url, None, None, 30)
            server_desc = (
                f"already running at {args.url}: {health.get('documents')} documents, reader {health.get('reader')}"
            )
            run_levels(Server(args.url, None, None, 0.0, health), plan, overload_level=False)
        else:
            index = args.index
            if index is None:
                console.print("[dim]ingesting seeds/ into a temporary index[/dim]")
                index = build_seed_index(Path(tmp) / "index")
            from rag.settings import Settings

            gate = Settings()  # what the server will read: the defaults, or RAG_ variables set for this run
            admitted = gate.max_concurrency + gate.max_queue
            with serve(index, Path(tmp) / "serve.log", reader=args.reader) as server:
                server_desc = (
                    f"`rag serve --reader {args.reader}`, one uvicorn worker, over {server.health.get('documents')} "
                    f"documents / {server.health.get('chunks')} chunks; admission gate RAG_MAX_CONCURRENCY="
                    f"{gate.max_concurrency}, RAG_MAX_QUEUE={gate.max_queue}; ready in {server.startup_s:.1f} s"
                )
                notes.append(
                    f"The gate admits {admitted} requests at once ({gate.max_concurrency} computing, {gate.max_queue} "
                    f"queued), so levels up to {admitted} should see no 503, only queueing: the server's own time "
                    "grows with the level because it includes the wait in the queue."
                )
                run_levels(server, plan, overload_level=False)
            logged += server_errors(Path(tmp) / "serve.log")
            if overload:
                env = {"RAG_MAX_CONCURRENCY": "1", "RAG_MAX_QUEUE": "4"}
                with serve(index, Path(tmp) / "overload.log", reader=args.reader, env=env) as server:
                    run_levels(server, [("overload", args.overload_concurrency)], overload_level=True)
                logged += server_errors(Path(tmp) / "overload.log")
                server_desc += (
                    f". The overload level runs a second server with RAG_MAX_CONCURRENCY=1 RAG_MAX_QUEUE=4 and hits it "
                    f"at concurrency {args.overload_concurrency}"
                )

    notes.insert(
        0,
        "Targets: no transport errors or timeouts and no 5xx but 503, at every level; under the deliberate "
        "overload, 503s coded `overloaded` with Retry-After, answered fast.",
    )
    gaps = [
        f"{r['level']} {r['latency_ms']['p50']:.0f} vs {r['server_latency_ms']['p50']:.0f}"
        for r in results
        if r["server_latency_ms"]["p50"] and r["latency_ms"]["p50"] > 2 * r["server_latency_ms"]["p50"]
    ]
    if gaps:
        notes.append(
            "Where a caller waits far longer than the service works (p50 client vs server ms: "
            + "; ".join(gaps)
            + "), "
            "the difference is spent outside the handler: in the kernel's socket queue and the server's event loop "
            "(which shares the GIL with the model thread), and in the load generator's own event loop, all on the "
            "same busy cores."
        )
    if overload:
        notes.append(
            "The overload level is the admission gate at work (service/gate.py): one request computes, four wait, "
            "and every further one is refused at once with 503, `Retry-After: 1` and error code `overloaded`, so "
            "a client learns to back off instead of waiting for a timeout."
        )
    if logged:
        notes.append("Exceptions in the server logs: " + "; ".join(f"{n}× `{line}`" for line, n in logged.items()))
    elif not args.url:
        notes.append("The server logs hold no exceptions.")
    meta = {
        "command": " ".join(["eval/loadtest.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git_commit(),
        "machine": _machine(),
        "machine_note": "The load generator and the server share these cores, so the numbers are what this box "
        "gives, not the service's capacity.",
        "loadavg": loadavg,
        "server": server_desc,
        "workload": f"{args.ask_share:.0%} POST /ask (top_k 3 or 5), the rest GET /search (k 5 or 10), questions "
        f"drawn from {GOLD.relative_to(ROOT)} with a fixed seed; httpx.AsyncClient, one keep-alive connection per "
        "worker; a few warm-up requests before the first level",
        "requests_per_level": args.requests,
        "seconds_per_level": args.seconds,
        "timeout_s": args.timeout,
        "fast_503_ms": args.fast_503_ms,
        "notes": notes,
    }
    render(results)
    write_report(args.out, meta, results)
    console.print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    failed = [s["level"] for s in results if s["problems"]] + (["server log"] if logged else [])
    if failed:
        console.print(f"[red]missed the target: {', '.join(failed)}[/red]")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
