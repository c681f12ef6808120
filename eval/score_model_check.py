"""Which model should give an answer its score? The trust benchmark's cached reader outputs, cross-fitted by
article as ``rag trust`` does, scored two ways: the ranker's own probability (what ships: one model over every
candidate), or a second logistic model, a "decider", fitted on each question's best-ranked candidate only (the
calibration before 2026-12). Prints both reports' headline figures.

    .venv/bin/python eval/score_model_check.py --rows-key KEY [--cache eval/.cache/calibration]

KEY is the reader outputs' key in the cached file names (``rows-covered-KEY.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rag.decide import Logistic
from rag.evaluation.metrics import f1 as f1_score
from rag.evaluation.trust import Decided, headline, operating_threshold
from rag.offline.fit_calibration import RIGHT_F1, QuestionRows, cached_rows


def decided(q: QuestionRows, ranker: Logistic, decider: Logistic | None) -> Decided:
    if not q.rows:
        return Decided(q.kind, q.article, 0.0, False, 0.0)
    best = int(np.argmax(ranker.probability(q.rows)))
    score = float((decider or ranker).probability([q.rows[best]])[0])
    f1 = f1_score(q.texts[best], q.golds) if q.golds else 0.0
    return Decided(q.kind, q.article, score, q.labels[best] == 1, f1)


def cross_fit(data: list[QuestionRows], with_decider: bool) -> list[Decided]:
    out = []
    for article in sorted({q.article for q in data}):
        train = [q for q in data if q.article != article]
        ranker = Logistic.fit([r for q in train for r in q.rows], [y for q in train for y in q.labels])
        decider = None
        if with_decider:
            best = [(q, int(np.argmax(ranker.probability(q.rows)))) for q in train if q.rows]
            decider = Logistic.fit([q.rows[b] for q, b in best], [q.labels[b] for q, b in best])
        threshold = operating_threshold([decided(q, ranker, decider) for q in train])
        for q in data:
            if q.article == article:
                d = decided(q, ranker, decider)
                out.append(Decided(d.kind, d.article, d.score, d.right, d.f1, threshold))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-key", required=True)
    parser.add_argument("--cache", default=Path("eval/.cache/calibration"), type=Path)
    args = parser.parse_args()
    data = cached_rows(args.cache, args.rows_key)
    result = {
        "right_means": f"F1 >= {RIGHT_F1}",
        "ranker_probability": headline(cross_fit(data, with_decider=False)),
        "decider_probability": headline(cross_fit(data, with_decider=True)),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
