"""`make bench`: how fast the service is, against its own floor and against Haystack, on this machine.

    .venv/bin/python eval/bench.py            # the full benchmark (~25 min on 2 cores, both Haystack columns included)
    .venv/bin/python eval/bench.py --quick    # seed + 2 SQuAD articles + 100 SciFact abstracts, < 3 min, no peer
    .venv/bin/python eval/bench.py --scale    # only the dense index at 1M and 10M synthetic vectors (~20 min;
                                              # fitted to real embeddings, --scale-data isotropic: the old ones)
    .venv/bin/python eval/bench.py --quick --batch-only   # only POST /ask/batch against one /ask per question

Prints the tables and writes them to eval/results/bench.md, every figure to eval/results/bench.json (a main run
keeps an earlier --scale part and the other way round). The sections live in eval/benchmark/.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # eval/: benchmark/ and loadtest.py

from benchmark import report  # noqa: E402
from benchmark.batch_run import batch_run  # noqa: E402
from benchmark.machine import environment  # noqa: E402
from benchmark.main_run import main_run  # noqa: E402
from benchmark.plan import FULL, QUICK  # noqa: E402
from benchmark.progress import STARTED, log  # noqa: E402
from benchmark.scale_run import scale_run  # noqa: E402
from rich.console import Console  # noqa: E402

from rag.reader.model import DEFAULT_READER_DIR  # noqa: E402

out = Console(width=None if sys.stdout.isatty() else 160)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="eval/bench.py",
        description="Benchmark ingest, query latency, throughput and memory against the bare model passes and "
        "against Haystack 2.x; or (--scale) the dense index at 1M-10M vectors.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="small corpora, fewer runs, no peer unless --peer (< 3 min)")
    p.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the Haystack peer [default: on, off with --quick]",
    )
    p.add_argument("--scale", action="store_true", help="only the synthetic dense-index scale benchmark")
    p.add_argument(
        "--batch-only",
        action="store_true",
        help="only POST /ask/batch against one question per /ask (on the served corpus; merged into bench.json)",
    )
    p.add_argument(
        "--scale-sizes", default="1M,10M", help="comma-separated vector counts for --scale (k and M suffixes)"
    )
    p.add_argument("--scale-queries", type=int, default=200, help="queries ground-truthed for --scale")
    p.add_argument(
        "--scale-data",
        choices=("fitted", "isotropic"),
        default="fitted",
        help="--scale's vectors: fitted to real chunk embeddings (eval/benchmark/fitted_vectors.py), or isotropic "
        "clusters around random centres (the first generator; flatters IVF). The other's last figures are kept",
    )
    p.add_argument(
        "--scale-fit-check",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--scale: first compare IVF recall on the real cached vectors, fitted and isotropic ones (~2 min)",
    )
    p.add_argument(
        "--scale-stream-above",
        default="2M",
        help="--scale sizes above this are streamed into IVF indexes (no float copy, no exact or HNSW index)",
    )
    p.add_argument(
        "--reader",
        choices=("auto", "trained", "heuristic"),
        default="auto",
        help="auto: the trained reader when its weights exist, else /ask is skipped; heuristic: /ask timed with the "
        "heuristic reader, labelled as a fallback",
    )
    p.add_argument(
        "--reader-dir", type=Path, default=DEFAULT_READER_DIR, help="the trained reader's folder (config + weights)"
    )
    p.add_argument(
        "--corpora", default="seed,squad,scifact", help="corpora to ingest (squad is always built: it is served)"
    )
    p.add_argument("--runs", type=int, help="latency runs (each on new questions)")
    p.add_argument("--questions", type=int, help="questions per latency run")
    p.add_argument("--requests", type=int, help="requests per throughput run and concurrency level")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared", help="folder holding data/")
    p.add_argument("--seeds", type=Path, default=ROOT / "seeds", help="the seed article(s)")
    p.add_argument(
        "--cache", type=Path, default=ROOT / "eval" / ".cache" / "bench", help="indexes, logs, peer work files"
    )
    p.add_argument(
        "--peer-venv",
        type=Path,
        default=ROOT / "eval" / ".cache" / "haystack-venv",
        help="the peer's virtual environment",
    )
    p.add_argument("--out", type=Path, default=ROOT / "eval" / "results", help="where bench.md and bench.json go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = replace(
        plan,
        runs=args.runs or plan.runs,
        questions=args.questions or plan.questions,
        requests=args.requests or plan.requests,
    )
    args.cache.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    if args.scale:
        result["environment"] = report.plain(environment("scale", {}))
        scale_run(args, result)
        env = result["scale"]["environment"] = result["environment"]
        result["scale"]["notes"].append(
            f"Machine: {env['cores']} cores ({env['cpu_model']}), load average at start "
            + " ".join(f"{x:.2f}" for x in env["load_average"])
            + f"; the whole --scale run took {result['scale']['seconds'] / 60:.1f} min."
        )
        result = report.merge_previous(result, args.out / "bench.json", scale_only=True)
    elif args.batch_only:
        batch_run(args, plan, result)
        result = report.merge_batch(result, args.out / "bench.json")
    else:
        main_run(args, plan, result)
        result = report.merge_previous(result, args.out / "bench.json", scale_only=False)
    result["targets"] = report.targets(result)
    if not (args.scale or args.batch_only):
        result["total_seconds"] = round(time.perf_counter() - STARTED, 1)
    for table in report.tables(result):
        out.print(table.rich())
    json_path, md_path = report.write(result, args.out)
    log(f"wrote {md_path} and {json_path.name} in {time.perf_counter() - STARTED:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
