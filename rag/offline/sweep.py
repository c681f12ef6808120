"""A small training sweep for the span reader, for a machine with a GPU (several runs share it).

The grid is fixed here, before any run is seen. Runs are compared on the *held-out training articles* only
(``held_out.best_overall_f1``: SQuAD 2.0 F1 at the best null threshold, gold paragraph given); the validation
figures are recorded for the report but never used to choose. The chosen run's folder is copied to ``--out``.

    python -m rag.offline.sweep --squad dev-v2.0.json --work /tmp/sweep --out chosen/ --device cuda --parallel 4
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import time
from dataclasses import replace
from pathlib import Path

from rag.offline.train import TrainConfig

#: name -> changes to the shipped recipe (TrainConfig defaults: lr 1e-4, 3 epochs, batch 16, length 256).
GRID: dict[str, dict] = {
    "base": {},
    "lr5e-5": {"learning_rate": 5e-5},
    "lr2e-4": {"learning_rate": 2e-4},
    "ep6": {"epochs": 6.0},
    "lr5e-5-ep6": {"learning_rate": 5e-5, "epochs": 6.0},
    "lr2e-4-ep6": {"learning_rate": 2e-4, "epochs": 6.0},
    "len384-ep4": {"max_length": 384, "stride": 128, "epochs": 4.0},
    "bs32-lr3e-4-ep8": {"batch_size": 32, "learning_rate": 3e-4, "epochs": 8.0},
}


def _run(config: TrainConfig) -> dict:
    from rag.offline.train import train

    log_path = Path(config.out_dir).with_suffix(".log")
    with open(log_path, "w") as log:

        def write(message: str) -> None:
            log.write(message + "\n")
            log.flush()

        return train(config, log=write)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--squad", required=True)
    parser.add_argument("--work", required=True, help="where every run's folder goes")
    parser.add_argument("--out", required=True, help="where the chosen run's folder is copied")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--only", nargs="*", help="a subset of the grid's names")
    args = parser.parse_args(argv)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    base = TrainConfig(squad_path=args.squad, out_dir="", device=args.device, threads=2)
    names = args.only or list(GRID)
    configs = [replace(base, out_dir=str(work / name), **GRID[name]) for name in names]
    started = time.perf_counter()
    runs: dict[str, dict] = {}
    with mp.get_context("spawn").Pool(args.parallel) as pool:
        for rec in pool.imap_unordered(_run, configs, chunksize=1):
            name = Path(rec["config"]["out_dir"]).name
            runs[name] = {
                "changes": GRID[name],
                "training": rec["training"],
                "held_out": rec["held_out"],
                "validation": rec["validation"],
            }
            print(f"done {name}: held-out best F1 {rec['held_out']['best_overall_f1']}", flush=True)
    chosen = max(runs, key=lambda n: runs[n]["held_out"]["best_overall_f1"])
    summary = {
        "selection": "held_out.best_overall_f1 (held-out training articles; validation never used to choose)",
        "chosen": chosen,
        "seconds": round(time.perf_counter() - started, 1),
        "runs": runs,
    }
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(work / chosen, out)
    (out / "sweep.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, run in runs.items():
        print(
            f"{name:18s} held-out best F1 {run['held_out']['best_overall_f1']:6.2f} "
            f"HasAns F1 {run['held_out']['has_answer_f1_forced']:6.2f} AUC {run['held_out']['null_margin_auc']:.3f} | "
            f"validation HasAns F1 {run['validation']['has_answer_f1_forced']:6.2f} "
            f"best F1 {run['validation']['best_overall_f1']:6.2f} | {run['training']['seconds']:.0f} s"
        )
    print(f"chosen: {chosen}")


if __name__ == "__main__":
    main()
