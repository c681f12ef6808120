"""Beyond the schema: raw requests the fuzz generator cannot produce, the known diagnoses of what they found, and
the checks that the service still works (and loads again) after the fuzzing. Used by eval/fuzz.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests

from rag.evaluation.server import serve


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
        "same way). Fix: refuse lone surrogates in `document_from_record` (rag/records.py) with a LoadError, "
        "which the API reports as a skipped document and `rag ingest` skips.",
    ),
    (
        ("Maximum serialization depth exceeded",),
        "**A nested `meta` breaks the listing.** A document whose `meta` nests 255+ levels is accepted and stored; "
        "pydantic then refuses to serialise it, so GET /documents (every document's meta) and GET /documents/{id} "
        "answer 500 until it is deleted, across restarts. Fix: bound the nesting of `meta` in "
        "`document_from_record` (rag/records.py; e.g. 32 levels, counted iteratively).",
    ),
    (
        ("AcceptedNegativeData",),
        "**Booleans accepted as integers.** pydantic's lax mode reads JSON `true` as 1, so POST /ask takes "
        '`"top_k": true` or `"max_answers": true` although the schema says integer. Fix: a `mode="before"` '
        "validator on `AskRequest.top_k` and `max_answers` in service/schemas/ask.py that refuses bools (`strict=True` "
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
