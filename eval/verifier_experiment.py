"""Does the sentence-level verifier (rag/offline/verifier.py) pay? The trust benchmark's cached reader outputs
(``rag trust`` / ``rag fit-calibration`` write them under eval/.cache/calibration), cross-fitted with and without
the verifier's score as one more calibration feature, on the same questions; and the verifier's cost per
candidate. Writes eval/results/verifier-experiment.json.

    .venv/bin/python eval/verifier_experiment.py --verifier DIR --rows-key KEY [--cache eval/.cache/calibration]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.evaluation.trust import trust_report
from rag.offline.verifier import Verifier, mark
from rag.reader import fit_calibration as fc


def summary(report: dict) -> dict:
    kinds, sel = report["kinds"], report["selective_mix"]
    return {
        "answerable_f1": round(kinds["answerable"]["f1"], 2),
        **{f"declined_{k}": round(v["declined"], 4) for k, v in kinds.items()},
        "right_among_given_mix": report["given_precision_mix"],
        "auroc_mix": sel["auroc"],
        "coverage_at_80_mix": sel["coverage_at_80"],
        "coverage_at_90_mix": sel["coverage_at_90"],
        "aurc_mix": sel["aurc"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifier", required=True, type=Path)
    parser.add_argument("--rows-key", required=True, help="the reader outputs' key in the cached file names")
    parser.add_argument("--cache", default=Path("eval/.cache/calibration"), type=Path)
    parser.add_argument("--out", default=Path("eval/results/verifier-experiment.json"), type=Path)
    args = parser.parse_args()
    data = fc.cached_rows(args.cache, args.rows_key)
    if not data or not all(len(q.sentences) == len(q.rows) for q in data):
        raise SystemExit("the cached rows lack candidate sentences: collect them again with this version")
    verifier = Verifier(args.verifier)
    items = [(q.question, mark(*s)) for q in data for s in q.sentences]
    started = time.perf_counter()
    scores = verifier.score(items)
    per_candidate_ms = (time.perf_counter() - started) * 1000 / max(1, len(items))
    it = iter(scores)
    with_verifier = []
    for q in data:
        rows = []
        for r in q.rows:
            p = min(max(next(it), 1e-6), 1 - 1e-6)
            rows.append((*r, math.log(p / (1 - p))))
        with_verifier.append(replace(q, rows=rows))
    fc._DECIDED.clear()
    base = summary(trust_report(fc.cross_fit(data), {}))
    fc._DECIDED.clear()
    verified = summary(trust_report(fc.cross_fit(with_verifier), {}))
    right = [y for q in data if q.kind == "answerable" for y in q.labels]
    alone = [s for q, qs in zip(data, _split(scores, data), strict=True) if q.kind == "answerable" for s in qs]
    from rag.evaluation.metrics import roc_auc

    result = {
        "questions": len(data),
        "candidates": len(items),
        "verifier_ms_per_candidate_torch_fp32_batched": round(per_candidate_ms, 2),
        "verifier_auc_right_span_answerable_candidates": roc_auc(alone, [bool(y) for y in right]),
        "without_verifier": base,
        "with_verifier": verified,
    }
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


def _split(scores: list[float], data: list[fc.QuestionRows]) -> list[list[float]]:
    out, pos = [], 0
    for q in data:
        out.append(scores[pos : pos + len(q.rows)])
        pos += len(q.rows)
    return out


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
