"""rag/settings.py: the one module that reads the environment."""

from __future__ import annotations


def test_only_the_settings_module_reads_the_environment() -> None:
    import re
    from pathlib import Path

    reads = re.compile(r"os\.environ\.get|os\.getenv|environ\[[^]]+\](?!\s*=)")
    allowed = {
        Path("rag/settings.py"),  # the one place
        Path("rag/evaluation/server.py"),  # passes the whole environment on to the service it starts
    }
    offenders = [
        str(path)
        for folder in ("rag", "service")
        for path in sorted(Path(folder).rglob("*.py"))
        if path not in allowed and reads.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
