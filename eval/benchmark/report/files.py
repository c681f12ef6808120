"""bench.json on disk: records made plain for JSON, an earlier file's parts kept where this run did not measure
them, and bench.json with bench.md written side by side."""

from __future__ import annotations

import json
import math
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from benchmark.report.tables import markdown


def plain(value: Any) -> Any:
    """Records (dataclasses) as dicts, with each record's computed properties (ratios) added; NaN as null."""
    if is_dataclass(value) and not isinstance(value, type):
        out = {f.name: plain(getattr(value, f.name)) for f in fields(value)}
        for name, attr in vars(type(value)).items():
            if isinstance(attr, property):
                out[name] = plain(getattr(value, name))
        return out
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def merge_previous(result: dict, path: Path, *, scale_only: bool) -> dict:
    """Keep the part of an earlier bench.json this run did not measure (the scale part, or the main part)."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return result
    if scale_only:
        return {**previous, "scale": result["scale"], "targets": None}
    if previous.get("scale") and not result.get("scale"):
        result["scale"] = previous["scale"]
    return result


def merge_batch(result: dict, path: Path) -> dict:
    """A --batch-only run: its part replaces the earlier file's /ask/batch part, the rest is kept."""
    try:
        previous = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return result
    return {**previous, "batch": result["batch"], "targets": None}


def write(r: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    j, m = out_dir / "bench.json", out_dir / "bench.md"
    j.write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
    m.write_text(markdown(r))
    return j, m
