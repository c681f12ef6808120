"""The cells and the table every section of bench.md is made of: numbers, ratios, sizes and intervals as text,
and ``Table``, rendered as Markdown (bench.md) or with rich (the terminal)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def num(value: Any, digits: int = 1, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value:,}{suffix}"


def times(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}x"


def mib(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.1f} MiB"


def stage_text(stages: dict | None) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in (stages or {}).items() if k != "total") or "–"


def check(ok: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "not measured"}[ok]


def interval(x: dict | None, scale: float = 1.0, digits: int = 1, signed: bool = False) -> str:
    """``value [lo, hi]`` of an Interval record (scaled, e.g. F1 x 100)."""
    if not x:
        return "–"
    sign = "+" if signed else ""
    v, lo, hi = (x[k] * scale for k in ("value", "lo", "hi"))
    return f"{v:{sign}.{digits}f} [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"


@dataclass
class Table:
    title: str
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        out = [f"## {self.title}", ""]
        if self.rows:
            out.append("| " + " | ".join(self.headers) + " |")
            out.append("|" + "|".join("---" for _ in self.headers) + "|")
            out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in self.rows]
            out.append("")
        out += [f"- {n}" for n in self.notes]
        if self.notes:
            out.append("")
        return "\n".join(out)

    def rich(self):
        from rich.table import Table as RichTable

        table = RichTable(
            *self.headers,
            title=self.title,
            title_justify="left",
            caption="\n".join(self.notes) or None,
            caption_justify="left",
        )
        for row in self.rows:
            table.add_row(*(str(c).replace("**", "") for c in row))
        return table
