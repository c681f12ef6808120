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
from dataclasses import dataclass, field
from pathlib import Path

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from loadtest import ROOT, build_seed_index, console, git_commit, serve, server_errors  # eval/, beside us
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

#: The same checks as tests/test_fuzz.py (see there why positive_data_acceptance is not one of them).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
BATCH = 50  # cases per hypothesis run; the time bound is checked between runs


@dataclass
class OperationStats:
    label: str
    cases: int = 0
    modes: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    exhausted: bool = False  # hypothesis ran out of distinct inputs before --examples
    timed_out: bool = False
    failures: Counter = field(default_factory=Counter)  # (kind, status) -> count
    examples: dict = field(default_factory=dict)  # (kind, status) -> first reproduction
    errors: Counter = field(default_factory=Counter)  # transport errors, and a generator that gave up


def failures_of(exc: FailureGroup | AssertionError) -> list[Failure | AssertionError]:
    """The check failures in what validate_response raised: a group, one Failure, or a plain AssertionError."""
    if isinstance(exc, FailureGroup):
        return list(exc.exceptions)
    return [exc]


def fuzz_operation(operation, url: str, session: requests.Session, args: argparse.Namespace) -> OperationStats:
    """Up to ``args.examples`` cases for one operation, in batches, until the time bound."""
    stats = OperationStats(operation.label)
    strategy = st.one_of([operation.as_strategy(generation_mode=mode) for mode in GenerationMode])
    started = time.monotonic()
    batch_no = 0

    def one(case) -> None:
        stats.cases += 1
        stats.modes[str(case.meta.generation.mode) if case.meta else "?"] += 1
        try:
            response = case.call(base_url=url, session=session, timeout=args.timeout)
        except requests.RequestException as exc:
            stats.errors[type(exc).__name__] += 1
            return
        stats.statuses[response.status_code] += 1
        if response.status_code >= 500:
            session.close()  # uvicorn may reset the connection after a 500; the next case gets a fresh one
        try:
            case.validate_response(response, checks=CHECKS)
        except (FailureGroup, AssertionError) as exc:
            for failure in failures_of(exc):
                key = (type(failure).__name__, response.status_code)
                stats.failures[key] += 1
                if key not in stats.examples:
                    title = getattr(failure, "title", str(failure))
                    stats.examples[key] = {"title": title, "curl": case.as_curl_command(base_url=url)[:400]}

    while stats.cases < args.examples:
        if time.monotonic() - started > args.seconds:
            stats.timed_out = True
            break
        before = stats.cases
        batch = min(BATCH, args.examples - stats.cases)
        run = settings(
            max_examples=batch,
            deadline=None,
            database=None,
            phases=[Phase.generate],  # no shrinking: every case is recorded as it is sent
            suppress_health_check=list(HealthCheck),
            verbosity=hypothesis.Verbosity.quiet,
        )(hypothesis.seed(args.seed * 100_003 + batch_no)(given(case=strategy)(one)))
        try:
            run()
        except Exception as exc:  # the generator or the client gave up: record it, stop this operation
            stats.errors[f"runner: {type(exc).__name__}: {str(exc)[:80]}"] += 1
            break
        batch_no += 1
        if stats.cases - before < batch:
            stats.exhausted = True  # fewer cases than asked: hypothesis has no new inputs for this operation
            break
    stats.seconds = time.monotonic() - started
    return stats


# ----------------------------------------------------------------------------------------- beyond the schema


@dataclass(frozen=True)
class Probe:
    name: str
    method: str
    path: str
    body: bytes | None
    why: str


DEEP = 300
PROBES = [
    Probe("question not UTF-8", "POST", "/ask", b'{"question": "\xff\xfe"}', "body bytes that do not decode"),
    Probe(
        "question nested past the parser",
        "POST",
        "/ask",
        b'{"question": "a", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "JSON deeper than Python's recursion limit",
    ),
    Probe("question lone surrogate", "POST", "/ask", b'{"question": "\\ud800"}', "a JSON escape that is not text"),
    Probe(
        "question over the size limit",
        "POST",
        "/ask",
        b'{"question": "' + b"a" * (21 * 1024 * 1024) + b'"}',
        "over the default 20 MiB RAG_MAX_REQUEST_BYTES",
    ),
    Probe(
        "document not UTF-8",
        "POST",
        "/documents",
        b'{"documents": [{"text": "\xc3\x28"}]}',
        "body bytes that do not decode",
    ),
    Probe(
        "text with U+2028 and U+0085",
        "POST",
        "/documents",
        '{"documents": [{"id": "probe-breaks", "text": "One line\u2028another\u0085and a third."}]}'.encode(),
        "kept in the index: the restart check below reads it back",
    ),
    Probe(
        "meta lone surrogate (value)",
        "POST",
        "/documents",
        b'{"documents": [{"id": "probe-s1", "text": "x", "meta": {"a": "\\ud800"}}]}',
        "`meta` is free-form, so the escape passes validation",
    ),
    Probe(
        "meta lone surrogate (key)",
        "POST",
        "/documents",
        b'{"documents": [{"id": "probe-s2", "text": "x", "meta": {"\\udc80": 1}}]}',
        "`meta` is free-form, so the escape passes validation",
    ),
    Probe(
        f"meta nested {DEEP} deep",
        "POST",
        "/documents",
        b'{"documents": [{"id": "probe-deep", "text": "x", "meta": {"a": ' + b"[" * DEEP + b"]" * DEEP + b"}}]}",
        "stored, but pydantic refuses to serialise past depth 255",
    ),
    Probe("list after the deep meta", "GET", "/documents", None, "the listing serialises every document's meta"),
    Probe("read the deep document", "GET", "/documents/probe-deep", None, "the document serialises its meta"),
    Probe("clean up the deep document", "DELETE", "/documents/probe-deep", None, "leave the index as it was"),
]


#: Diagnoses of what earlier runs found, shown when a run finds it again (matched against failure kinds, probe
#: problems and logged exceptions). A fixed bug drops out of the report by itself.
KNOWN = [
    (
        ("UndefinedStatusCode 400", "400 is not documented"),
        '**Undocumented 400.** FastAPI answers 400 ("There was an error parsing the body", reworded in '
        "service/errors.py) when a JSON body is not UTF-8 or nests past the parser's recursion limit, but POST /ask "
        'and POST /documents document only 422/503 (and 401/403/404/413). Fix: add `400: {"model": ErrorBody}` '
        "to `_ERRORS` in service/routers/ask.py and `_WRITE_ERRORS` in service/routers/documents.py.",
    ),
    (
        ("surrogates not allowed",),
        "**500 on a lone surrogate in `meta`.** `DocumentIn.meta` is `dict[str, Any]`, so a JSON escape such as "
        '`"\\ud800"` (legal JSON, not text) passes validation, unlike the `str` fields; `Document.checksum` then '
        'calls `.encode("utf-8")` and raises UnicodeEncodeError (`rag ingest` of such a JSONL record crashes the '
        "same way). Fix: refuse lone surrogates in `document_from_record` (rag/loaders.py) with a LoadError, "
        "which the API reports as a skipped document and `rag ingest` skips.",
    ),
    (
        ("Maximum serialization depth exceeded",),
        "**A nested `meta` breaks the listing.** A document whose `meta` nests 255+ levels is accepted and stored; "
        "pydantic then refuses to serialise it, so GET /documents (every document's meta) and GET /documents/{id} "
        "answer 500 until it is deleted, across restarts. Fix: bound the nesting of `meta` in "
        "`document_from_record` (rag/loaders.py; e.g. 32 levels, counted iteratively).",
    ),
    (
        ("AcceptedNegativeData",),
        "**Booleans accepted as integers.** pydantic's lax mode reads JSON `true` as 1, so POST /ask takes "
        '`"top_k": true` or `"max_answers": true` although the schema says integer. Fix: a `mode="before"` '
        "validator on `AskRequest.top_k` and `max_answers` in service/schemas.py that refuses bools (`strict=True` "
        "would also refuse 5.0, which JSON Schema counts as an integer).",
    ),
    (
        ("after a restart",),
        "**A written document can make the index unreadable.** rag/store/segment.py writes documents.jsonl with "
        "`json.dumps(..., ensure_ascii=False)`, which leaves U+0085, U+2028 and U+2029 raw, and reads it back with "
        "`str.splitlines()`, which splits on them: the next start finds a broken line and the service is never "
        'ready. Fix: read with `.split("\\n")` (the files on disk are fine, so this also heals indexes '
        "already written).",
    ),
    (
        ("413 is not documented",),
        "**Undocumented 413.** The request-size limit (service/observability.py) answers 413 on every route, but "
        'only the writes document it. Fix: add `413: {"model": ErrorBody}` to `_ERRORS` in '
        "service/routers/ask.py.",
    ),
]


def diagnoses(texts: list[str]) -> list[str]:
    return [why for needles, why in KNOWN if any(needle in t for needle in needles for t in texts)]


def documented_statuses(openapi: dict, method: str, path: str) -> set[int]:
    responses = openapi["paths"].get(path) or openapi["paths"].get("/documents/{doc_id}", {})
    return {int(code) for code in responses.get(method.lower(), {}).get("responses", {})}


def run_probes(url: str, openapi: dict) -> list[dict]:
    rows: list[dict[str, object]] = []
    for probe in PROBES:
        headers = {"content-type": "application/json"} if probe.body is not None else {}
        try:  # a fresh connection each: after a 500, uvicorn may reset the one it answered on
            r = requests.request(probe.method, url + probe.path, data=probe.body, headers=headers, timeout=60)
        except requests.RequestException as exc:
            rows.append({"probe": probe.name, "status": None, "problem": f"transport: {type(exc).__name__}"})
            continue
        documented = documented_statuses(openapi, probe.method, probe.path)
        problem = None
        if r.status_code >= 500:
            problem = f"{r.status_code}: {r.text[:120]}"
        elif r.status_code not in documented:
            problem = f"{r.status_code} is not documented for {probe.method} {probe.path} ({sorted(documented)})"
        rows.append(
            {"probe": probe.name, "request": f"{probe.method} {probe.path}", "status": r.status_code,
             "problem": problem, "why": probe.why}
        )  # fmt: skip
    return rows


def health_after(url: str) -> list[str]:
    """Whatever the fuzzing wrote, the service must still list its documents and answer."""
    problems = []
    with requests.Session() as s:
        for method, path, body in (
            ("GET", "/readyz", None),
            ("GET", "/documents", None),
            ("POST", "/ask", {"question": "How many troops are in US Forces Korea?"}),
            ("GET", "/search?q=tariff", None),
        ):
            r = s.request(method, url + path, json=body, timeout=60)
            if r.status_code != 200:
                problems.append(f"{method} {path}: {r.status_code} {r.text[:120]}")
    return problems


def restarted(index: Path, log: Path, documents: int | None) -> list[str]:
    """What the fuzzing wrote must load again: a new `rag serve` over the same index, ready with as many documents."""
    try:
        with serve(index, log, reader="heuristic") as again:
            if again.health.get("documents") != documents:
                return [f"after a restart: {again.health.get('documents')} documents, not {documents}"]
    except RuntimeError as exc:
        return [f"after a restart: {str(exc)[:300]}"]
    return []


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
