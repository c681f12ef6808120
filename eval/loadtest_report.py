"""The verdicts and reports of eval/loadtest.py: what a level got wrong against its target, the table on the
terminal, and eval/results/loadtest.md and .json."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

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


def render(results: list[dict]) -> Table:
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
    return table


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
