"""The soak test's own pieces (eval/soak.py): memory split, the verdict, the modes it reports."""

from __future__ import annotations

import os

from tests.conftest import eval_module


def _soak():
    return eval_module("soak")


def test_process_figures_split_resident_memory_into_anonymous_and_file_backed():
    mem, fds = _soak().process_figures(os.getpid())
    assert mem["rss"] > 0 and mem["anon"] > 0 and fds > 0
    assert abs(mem["anon"] + mem["file"] - mem["rss"]) <= 0.05 * mem["rss"] + 8  # RssShmem is the rest


def _summary(window: int, rss: float, p99: float = 10.0) -> dict:
    route = {"requests": 10, "5xx": 0, "p50_ms": 5.0, "p99_ms": p99}
    return {
        "window": window,
        "routes": {r: dict(route) for r in ("ask", "search", "list", "get", "write", "delete")},
        "transport_errors": 0,
        "rss_mib": rss,
        "anon_mib": rss - 100,
        "file_mib": 100.0,
        "open_fds": 20,
        "disk_mib": 10.0,
        "live_mib": 9.0,
    }


def test_the_verdict_names_memory_growth_and_latency_drift_and_passes_a_flat_run():
    soak = _soak()
    checks = {"acknowledged_missing": 0, "acknowledged_stale": 0, "deleted_still_there": 0}
    assert soak.verdict([_summary(1, 500), _summary(2, 540)], checks) == []
    failures = soak.verdict([_summary(1, 500), _summary(2, 560, p99=16)], checks)
    assert any("resident memory" in f for f in failures) and any("p99" in f for f in failures)
    meta = {
        "minutes": 1,
        "concurrency": 2,
        "writes": "replace",
        "server_env": ["MALLOC_ARENA_MAX=2"],
        "documents": 3,
        "machine": "2 cores",
        "commit": "abc",
    }
    text = soak.markdown(meta, [_summary(1, 500)], checks, [])
    assert "a replace of a live document every second" in text and "MALLOC_ARENA_MAX=2" in text
    assert "| 500 (400 / 100.0) |" in text
