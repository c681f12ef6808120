"""Is a non-linear score model worth it? The calibration's logistic ranker against gradient-boosted trees
(scikit-learn's HistGradientBoostingClassifier) over the same candidate features, each cross-fitted by article
on the trust benchmark's cached reader outputs (the same questions; paired bootstrap).

    .venv/bin/python eval/calibrator_model_experiment.py --rows-key KEY [--cache eval/.cache/calibration]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.evaluation.metrics import f1 as f1_score
from rag.evaluation.trust import Decided, operating_threshold, paired_bootstrap, trust_report
from rag.reader import fit_calibration as fc

Scorer = Callable[[Sequence[Sequence[float]]], np.ndarray]


def trees(rows: Sequence[Sequence[float]], labels: Sequence[int]) -> Scorer:
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=300, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0, random_state=13
    ).fit(np.asarray(rows), np.asarray(labels))
    return lambda r: model.predict_proba(np.asarray(r))[:, 1] if len(r) else np.zeros(0)


def logistic(rows: Sequence[Sequence[float]], labels: Sequence[int]) -> Scorer:
    from rag.decide import Logistic

    model = Logistic.fit(rows, labels)
    return model.probability


def decided(score: Scorer, q: fc.QuestionRows) -> Decided:
    if not q.rows:
        return Decided(q.kind, q.article, 0.0, False, 0.0)
    p = score(q.rows)
    best = int(np.argmax(p))
    f1 = f1_score(q.texts[best], q.golds) if q.golds else 0.0
    return Decided(q.kind, q.article, float(p[best]), q.labels[best] == 1, f1)


def cross_fit(data: Sequence[fc.QuestionRows], fit: Callable[..., Scorer]) -> list[Decided]:
    out = []
    for article in sorted({q.article for q in data}):
        train = [q for q in data if q.article != article]
        score = fit([r for q in train for r in q.rows], [y for q in train for y in q.labels])
        threshold = operating_threshold([decided(score, q) for q in train])
        out += [replace(decided(score, q), threshold=threshold) for q in data if q.article == article]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-key", required=True)
    parser.add_argument("--cache", default=Path("eval/.cache/calibration"), type=Path)
    parser.add_argument("--out", default=Path("eval/results/calibrator-model-experiment.json"), type=Path)
    args = parser.parse_args()
    data = fc.cached_rows(args.cache, args.rows_key)
    a, b = cross_fit(data, logistic), cross_fit(data, trees)
    pick = ("auroc_mix", "coverage_at_80_mix", "aurc_mix", "answerable_f1", "declined_answerable", "declined_near_miss")
    result = {
        "questions": len(data),
        "logistic": {k: v for k, v in trust_report(a, {}).items() if k in ("given_precision_mix",)},
        "trees": {k: v for k, v in trust_report(b, {}).items() if k in ("given_precision_mix",)},
        "paired_bootstrap_trees_minus_logistic": {k: v for k, v in paired_bootstrap(a, b).items() if k in pick},
    }
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
