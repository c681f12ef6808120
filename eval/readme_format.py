"""The cells and the Markdown table of the README's result tables (eval/readme_tables.py,
eval/readme_bench_tables.py): one format, so a table renders the same whichever module writes it."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns align left, the rest right."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def ms(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{v:,.{digits}f}"
