"""The machine a benchmark ran on, as bench.md's first table shows it: commit, date, cores, CPU, memory, load
average, the versions of what was measured, and the service's settings."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import time
from pathlib import Path

from loadtest import git_commit  # eval/loadtest.py

from benchmark.records import Environment


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in (
        "torch",
        "onnxruntime",
        "faiss-cpu",
        "sentence-transformers",
        "transformers",
        "numpy",
        "bm25s",
        "fastapi",
        "uvicorn",
        "httpx",
    ):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def environment(mode: str, settings: dict) -> Environment:
    return Environment(
        commit=git_commit(),
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        mode=mode,
        cores=os.cpu_count() or 1,
        cores_usable=len(os.sched_getaffinity(0)),
        cpu_model=cpu_model(),
        memory_gib=memory_gib(),
        load_average=os.getloadavg(),
        versions=versions(),
        settings=settings,
    )
