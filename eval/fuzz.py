"""The long fuzz: schemathesis against a real uvicorn, many more cases than tests/test_fuzz.py can afford.

Starts `rag serve --reader heuristic` on 127.0.0.1 over a fresh copy of the seed index, writes open
(RAG_ALLOW_OPEN_WRITES=true), loads the service's own /openapi.json, and for every operation sends up to
--examples generated requests (schema-valid and schema-violating, mixed), each bounded in time. Every response
must be documented (status code, content type, body schema) and no response may be a 5xx. Then a handful of
raw probes the schema cannot express (bytes that are not UTF-8, lone surrogates, deep nesting), and a health
check that the service still lists its documents and answers.

    .venv/bin/python eval/fuzz.py                          # 1000 cases per operation, 90 s per operation at most
    .venv/bin/python eval/fuzz.py --examples 100 --seconds 20
    .venv/bin/python eval/fuzz.py --url http://127.0.0.1:8000   # a running service (its writes must be open)

Writes eval/results/fuzz.md and fuzz.json (--out); exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import hypothesis
import requests
import schemathesis
from fuzz_cases import CHECKS, OperationStats, fuzz_operation  # eval/, beside us
from fuzz_probes import diagnoses, health_after, restarted, run_probes
from loadtest import ROOT, build_seed_index, console, git_commit, serve, server_errors
from schemathesis.core.result import Err

# ------------------------------------------------------------------------------------------------- report


def write_report(out: Path, meta: dict, ops: list[OperationStats], health: list[str], probes: list[dict]) -> None:
    total = sum(o.cases for o in ops)
    failures = sum(sum(o.failures.values()) for o in ops)
    server_5xx = sum(n for o in ops for code, n in o.statuses.items() if code >= 500)
    probe_5xx = sum(1 for p in probes if (p["status"] or 0) >= 500)
    probe_failed = sum(1 for p in probes if p["problem"])
    lines = [
        "# Fuzzing the HTTP API",
        "",
        f"`{meta['command']}`, {meta['date']}, commit {meta['commit']}; schemathesis {meta['schemathesis']}, "
        f"hypothesis {meta['hypothesis']}.",
        "",
        f"- Server: {meta['server']}.",
        f"- Cases: up to {meta['examples']} per operation (schema-valid and schema-violating mixed), at most "
        f"{meta['seconds']:.0f} s per operation, seed {meta['seed']}. Checks: {', '.join(meta['checks'])}.",
        f"- **Generated: {total} cases over {len(ops)} operations, {server_5xx} answered 5xx, {failures} check "
        f"failures. Probes: {probe_5xx} of {len(probes)} answered 5xx, {probe_failed} failed in all. After: "
        f"{'ok' if not health else 'broken'}.**",
        "",
        "| operation | cases | valid / invalid | statuses | failures | s | stopped by |",
        "|---|--:|---|---|--:|--:|---|",
    ]  # fmt: skip
    for o in ops:
        statuses = ", ".join(f"{n}×{code}" for code, n in sorted(o.statuses.items()))
        if o.errors:
            statuses += "; errors: " + ", ".join(f"{n}×{k}" for k, n in o.errors.items())
        stop = "time bound" if o.timed_out else "no new inputs" if o.exhausted else "case count"
        lines.append(
            f"| `{o.label}` | {o.cases} | {o.modes.get('positive', 0)} / {o.modes.get('negative', 0)} | {statuses} "
            f"| {sum(o.failures.values())} | {o.seconds:.0f} | {stop} |"
        )
    lines += ["", "## Failures by kind", ""]
    if failures:
        lines += ["| operation | failure | status | count | first case |", "|---|---|--:|--:|---|"]
        for o in ops:
            for (kind, status), n in o.failures.most_common():
                ex = o.examples[(kind, status)]
                curl = ex["curl"].replace("|", "\\|").replace("\n", " ")
                lines.append(f"| `{o.label}` | {kind}: {ex['title']} | {status} | {n} | `{curl}` |")
    else:
        lines.append("None: every generated request got a documented status and a body matching its schema.")
    lines += ["", "## Beyond the schema", ""]
    lines += [
        "Raw requests the generator cannot produce (it sends valid UTF-8 JSON), each checked for a documented, "
        "non-5xx status.",
        "",
        "| probe | request | status | problem | why it is interesting |",
        "|---|---|--:|---|---|",
    ]
    for p in probes:
        lines.append(
            f"| {p['probe']} | `{p.get('request', '')}` | {p['status']} | {p['problem'] or 'ok'} | {p.get('why', '')} |"
        )
    found = [f"{kind} {status}" for o in ops for kind, status in o.failures]
    found += [p["problem"] for p in probes if p["problem"]] + list(meta["server_exceptions"]) + health
    if found:
        lines += ["", "## Diagnosis", ""]
        lines += [f"- {why}" for why in diagnoses(found)] or ["- Not diagnosed yet: see the cases above."]
    lines += ["", "## After the fuzzing", ""]
    lines.append(
        "The service still answered /readyz, GET /documents, /ask and /search with 200"
        + (", and a new server over the same index was ready with the same documents." if meta["restarted"] else ".")
        if not health
        else "The service was left broken: " + "; ".join(health)
    )
    if meta["server_exceptions"]:
        lines += [
            "",
            "Tracebacks in the server log, by exception (a 5xx logs its traceback twice: the service, then uvicorn):",
            "",
        ]
        lines += [f"- {n}× `{line}`" for line, n in meta["server_exceptions"].items()]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a service already running, writes open (nothing is started)")
    parser.add_argument("--index", type=Path, help="index to copy and serve (default: seeds/, freshly ingested)")
    parser.add_argument("--examples", type=int, default=1000, help="cases per operation [1000]")
    parser.add_argument("--seconds", type=float, default=90.0, help="time bound per operation [90]")
    parser.add_argument("--seed", type=int, default=0, help="[0]")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, seconds [30]")
    parser.add_argument("--no-probes", action="store_true", help="skip the raw probes beyond the schema")
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "fuzz", help="report path stem")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="rag-fuzz-") as tmp:
        if args.url:
            url, server_desc, log = args.url.rstrip("/"), f"already running at {args.url}", None
            ops, health, probes, openapi = fuzz_all(url, args)
        else:
            index = Path(tmp) / "index"
            if args.index:
                import shutil

                shutil.copytree(args.index, index)
            else:
                console.print("[dim]ingesting seeds/ into a temporary index[/dim]")
                build_seed_index(index)
            log = Path(tmp) / "serve.log"
            with serve(index, log, reader="heuristic", env={"RAG_ALLOW_OPEN_WRITES": "true"}) as server:
                url = server.url
                server_desc = (
                    "`rag serve --reader heuristic` with RAG_ALLOW_OPEN_WRITES=true over a fresh copy of the seed "
                    f"index ({server.health.get('documents')} documents), 127.0.0.1"
                )
                ops, health, probes, openapi = fuzz_all(url, args)
                documents = requests.get(f"{url}/readyz", timeout=30).json().get("documents")
            health += restarted(index, Path(tmp) / "restart.log", documents)
        exceptions = server_errors(log) if log else Counter()

    meta = {
        "command": " ".join(["eval/fuzz.py", *(argv if argv is not None else sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git_commit(),
        "schemathesis": schemathesis.__version__,
        "hypothesis": hypothesis.__version__,
        "server": server_desc,
        "examples": args.examples,
        "seconds": args.seconds,
        "seed": args.seed,
        "checks": [c.__name__ for c in CHECKS],
        "server_exceptions": dict(exceptions),
        "restarted": not args.url,
        "operations": len(ops),
    }
    write_report(args.out, meta, ops, health, probes)
    summary = {
        "meta": meta,
        "operations": [
            {
                "operation": o.label,
                "cases": o.cases,
                "modes": dict(o.modes),
                "statuses": {str(k): v for k, v in sorted(o.statuses.items())},
                "failures": [
                    {"kind": k, "status": s, "count": n, **o.examples[(k, s)]} for (k, s), n in o.failures.items()
                ],
                "errors": dict(o.errors),
                "seconds": round(o.seconds, 1),
            }
            for o in ops
        ],
        "probes": probes,
        "health_after": health,
    }
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")

    total = sum(o.cases for o in ops)
    failed = sum(sum(o.failures.values()) + sum(o.errors.values()) for o in ops)
    bad_probes = [p for p in probes if p["problem"]]
    console.print(
        f"{total} cases over {len(ops)} operations: {failed} failures; "
        f"{len(bad_probes)} of {len(probes)} probes failed; health after: {health or 'ok'}"
    )
    for o in ops:
        for (kind, status), n in o.failures.items():
            console.print(
                f"  [red]{o.label}[/red]: {n}× {kind} ({status}) e.g. {o.examples[(kind, status)]['curl'][:160]}"
            )
    for p in bad_probes:
        console.print(f"  [red]probe[/red] {p['probe']}: {p['problem']}")
    console.print(f"wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return 1 if failed or bad_probes or health or exceptions else 0


def fuzz_all(url: str, args: argparse.Namespace) -> tuple[list[OperationStats], list[str], list[dict], dict]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    openapi = requests.get(f"{url}/openapi.json", timeout=30).json()
    ops = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            if isinstance(result, Err):  # a part of the schema schemathesis cannot use: a finding of its own
                raise SystemExit(f"the OpenAPI schema is not usable: {result.err()}")
            operation = result.ok()
            console.print(f"[dim]{operation.label}[/dim]")
            stats = fuzz_operation(operation, url, session, args)
            console.print(
                f"  {stats.cases} cases in {stats.seconds:.0f} s, statuses {dict(sorted(stats.statuses.items()))}, "
                f"{sum(stats.failures.values())} failures"
            )
            ops.append(stats)
    health = health_after(url)
    probes = [] if args.no_probes else run_probes(url, openapi)
    return ops, health, probes, openapi


if __name__ == "__main__":
    sys.exit(main())
