"""/ask latency of this checkout against another commit, in one run: the same questions over the same index,
in-process (the pipeline's ask, as the service calls it), versions alternating in rounds so that drift on a
busy machine falls on both. Prints a table of per-round and overall medians and their ratio.

    .venv/bin/python eval/ask_ab.py --other /tmp/old-checkout --index eval/.cache/calibration/covered \
        [--questions 120 --rounds 3]

``--other`` is a checkout of the other commit (``git worktree add /tmp/old-checkout COMMIT``) with its own
reader weights and calibration, run with this checkout's interpreter.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from rag.pipeline import QAPipeline
from rag.store import CorpusIndex
questions = json.loads(sys.argv[3])
index = CorpusIndex.load(sys.argv[2])
pipeline = QAPipeline.load("trained")
for q in questions[:10]:
    pipeline.ask(index, q)  # warm-up
out = []
for q in questions:
    t = time.perf_counter()
    pipeline.ask(index, q)
    out.append((time.perf_counter() - t) * 1000)
print(json.dumps(out))
"""


def run(checkout: Path, index: str, questions: list[str]) -> list[float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(checkout.resolve()), index, json.dumps(questions)],
        capture_output=True, text=True, check=True, cwd=checkout,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, type=Path)
    parser.add_argument("--index", required=True)
    parser.add_argument("--squad", default="../shared/data/squad-v2.0-dev/dev-v2.0.json")
    parser.add_argument("--questions", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from rag.offline.train import calibration_titles
    from rag.squad import iter_questions, load_squad, select_articles

    train = select_articles(load_squad(args.squad), "train")
    held = set(calibration_titles([a["title"] for a in train]))
    questions = [q.question for q in iter_questions([a for a in train if a["title"] in held])][: args.questions]
    this = Path(__file__).resolve().parents[1]
    times: dict[str, list[float]] = {"other": [], "this": []}
    rows = []
    for r in range(args.rounds):
        for name, checkout in (
            (("other", args.other), ("this", this)) if r % 2 == 0 else (("this", this), ("other", args.other))
        ):
            got = run(checkout, str(Path(args.index).resolve()), questions)
            times[name] += got
            rows.append((r + 1, name, statistics.median(got)))
    print("| round | version | /ask p50 ms (in-process) |")
    print("|---|---|---:|")
    for r, name, p50 in rows:
        print(f"| {r} | {name} | {p50:.1f} |")
    other, this_ = statistics.median(times["other"]), statistics.median(times["this"])
    print(f"\nall rounds: this {this_:.1f} ms, other {other:.1f} ms: {this_ / other:.2f}x")
    if args.out:
        args.out.write_text(
            json.dumps({"rounds": rows, "this_p50": this_, "other_p50": other, "ratio": this_ / other}, indent=2)
        )


if __name__ == "__main__":
    main()
