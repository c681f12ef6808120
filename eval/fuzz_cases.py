"""The generated half of the fuzz: schemathesis cases for one operation, and the checks every response must pass.

``CHECKS`` is declared here once for both fuzzers: ``eval/fuzz.py`` (the long run against a real uvicorn) and
``tests/test_fuzz.py`` (the bounded run in the test suite, which loads this module from eval/).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, field

import hypothesis
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

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
