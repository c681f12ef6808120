"""The eval results at a git revision beside the working tree's, timings left out: did a change move any figure?

    python eval/compare_results.py 13f3178            (every eval/results/*/summary.json present in both)
    python eval/compare_results.py 13f3178 seed-trained squad-validation-trained
    RESULTS=/tmp/now make eval && python eval/compare_results.py HEAD --results /tmp/now

Prints, per results folder, whether every figure other than timings (latency, server stage times, dates, the
reader's folder) is the same, which differ, and the headline figures side by side as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = "eval/results"
#: Keys that change from run to run with the machine, not with what the service answers.
TIMING = {"created", "latency", "reader_dir", "seconds", "date", "cache"}
HEADLINE = (
    "retrieval.hit@5",
    "retrieval.mrr@10",
    "answers.has_ans_f1",
    "answers.answered_f1",
    "abstention.no_ans_accuracy",
    "abstention.overall_f1",
    "citations.passage_accuracy",
    "selective.auroc",
    "selective.coverage",
)


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flat(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list):
        yield prefix, json.dumps(value, sort_keys=True)
    else:
        yield prefix, value


def _at(revision: str, path: str) -> dict[str, Any] | None:
    out = subprocess.run(["git", "show", f"{revision}:{path}"], capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout) if out.returncode == 0 else None


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("–" if value is None else str(value))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revision")
    parser.add_argument("names", nargs="*", help="results folders (default: all with a summary.json)")
    parser.add_argument("--results", type=Path, default=ROOT / RESULTS, help="the results to compare with REVISION's")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.parent.name for p in args.results.glob("*/summary.json"))
    rows, moved = [], 0
    for name in names:
        path, here = f"{RESULTS}/{name}/summary.json", args.results / name / "summary.json"
        before = _at(args.revision, path)
        if before is None or not here.is_file():
            print(f"{name}: not in both")
            continue
        old = dict(_flat(_strip(before)))
        new = dict(_flat(_strip(json.loads(here.read_text(encoding="utf-8")))))
        differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        moved += bool(differ)
        verdict = "the same" if not differ else f"{len(differ)} differ: {', '.join(differ[:8])}"
        print(f"{name}: {len(old)} figures outside timings, {verdict}")
        rows += [(name, k, old.get(k), new.get(k)) for k in HEADLINE if k in old or k in new]
    print(f"\n| results | figure | at {args.revision} | now |\n|---|---|---:|---:|")
    for name, key, a, b in rows:
        print(f"| {name} | {key} | {_cell(a)} | {_cell(b)} |")
    return 1 if moved else 0


if __name__ == "__main__":
    raise SystemExit(main())
