"""Compare readers on the trust benchmark, paired: ``rag trust`` reports of the same benchmark (the same
questions in the same order), each figure's difference against the first with a 95% paired bootstrap interval.

    .venv/bin/python eval/compare_trust.py BASE/summary.json OTHER/summary.json [...] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rag.evaluation.trust import decided_from, headline, paired_bootstrap

LOWER_IS_BETTER = {"aurc_mix", "declined_answerable"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    loaded = [json.loads(p.read_text()) for p in args.reports]
    base = decided_from(loaded[0])
    result: dict = {"base": str(args.reports[0]), "headline": {str(args.reports[0]): headline(base)}, "against": {}}
    for path, report in zip(args.reports[1:], loaded[1:], strict=True):
        other = decided_from(report)
        result["headline"][str(path)] = headline(other)
        result["against"][str(path)] = paired_bootstrap(base, other, samples=args.samples)
    names = [p.parent.name for p in args.reports]
    print("| figure | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for key in headline(base):
        cells = [f"{result['headline'][str(args.reports[0])][key]:.3f}"]
        for path in args.reports[1:]:
            d = result["against"][str(path)][key]
            cells.append(f"{d['b']:.3f} ({d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}])")
        print(f"| {key}{' (lower is better)' if key in LOWER_IS_BETTER else ''} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
