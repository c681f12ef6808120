"""The benchmark's progress log: every line on stderr with the seconds since the run started, so the printed
tables on stdout stay clean (``STARTED`` also times the whole run)."""

from __future__ import annotations

import time

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
STARTED = time.perf_counter()


def log(message: str) -> None:
    console.print(f"[dim]{time.perf_counter() - STARTED:7.1f} s[/dim] {message}", highlight=False, markup=False)
