"""The load of eval/loadtest.py: the requests, the concurrency levels that send them, and what each level measures
(client latency per status, the server's own time from its access log, CPU on both sides)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rag.evaluation.metrics import percentile
from rag.evaluation.server import Server

ROOT = Path(__file__).resolve().parent.parent
GOLD = ROOT / "eval" / "gold" / "seed.jsonl"


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
