"""Does learned answer-type evidence pay? (issue 28, item 5)

1. Label training questions (the reader's training groups: never the trust benchmark's held-out articles nor
   the validation articles) with the coarse type of their gold answer (spaCy entities of its sentence), and fit
   ``QuestionTyper`` (eval/answer_types.py) on them; its accuracy on a held-out tenth of them is printed.
2. Type every candidate of the trust benchmark's cached reader outputs by spaCy over its sentence, and add
   three calibration features (P(candidate's type | question), the best such over the question's candidates,
   how sure the question's type is).
3. Cross-fit the calibration with and without them on the same questions; paired bootstrap.

    .venv/bin/python eval/answer_type_experiment.py --groups W/groups-neg1-seed13-qamore.jsonl --rows-key KEY \\
        [--cache eval/.cache/calibration] [--questions 24000] [--out eval/results/answer-type-experiment.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from answer_types import TYPES, QuestionTyper, span_type, type_evidence
from verifier_experiment import summary

from rag.evaluation.trust import paired_bootstrap, trust_report
from rag.offline.train_groups import load_groups
from rag.reader import fit_calibration as fc
from rag.reader.heuristic import SPACY_MODEL
from rag.sentences import sentence_around


def entities_of(nlp, texts: list[str]) -> dict[str, list[tuple[int, int, str]]]:
    unique = sorted(set(texts))
    out = {}
    for text, doc in zip(unique, nlp.pipe(unique, batch_size=256), strict=True):
        out[text] = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
    return out


def main() -> None:
    import spacy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", required=True, type=Path, help="the reader's cached training groups")
    parser.add_argument("--rows-key", required=True, help="the reader outputs' key in the cached file names")
    parser.add_argument("--cache", default=Path("eval/.cache/calibration"), type=Path)
    parser.add_argument("--questions", type=int, default=24000)
    parser.add_argument("--typer-out", type=Path, default=None, help="also save the fitted question typer here")
    parser.add_argument("--out", default=Path("eval/results/answer-type-experiment.json"), type=Path)
    args = parser.parse_args()
    data = fc.cached_rows(args.cache, args.rows_key)
    if not data or not all(len(q.sentences) == len(q.rows) for q in data):
        raise SystemExit("the cached rows lack candidate sentences: collect them again with this version")
    held = {q.article for q in data}
    nlp = spacy.load(SPACY_MODEL, disable=["parser", "lemmatizer"])

    groups = [g for g in load_groups(args.groups) if g.answers and g.title not in held]
    random.Random(13).shuffle(groups)
    groups = groups[: args.questions]
    started = time.perf_counter()
    spans = []
    for g in groups:
        start, end = g.answers[0]
        s_start, s_end = sentence_around(g.passages[0], start, end)
        spans.append((g.passages[0][s_start:s_end], start - s_start, end - s_start))
    ents = entities_of(nlp, [s for s, _, _ in spans])
    types = [span_type(ents[s], a, b) for s, a, b in spans]
    label_seconds = time.perf_counter() - started
    cut = len(groups) // 10
    typer_check = QuestionTyper.fit([g.question for g in groups[cut:]], types[cut:])
    predicted = typer_check.probabilities([g.question for g in groups[:cut]]).argmax(axis=1)
    accuracy = float(np.mean([TYPES[k] == t for k, t in zip(predicted, types[:cut], strict=True)]))
    majority = max(types[:cut].count(t) for t in TYPES) / max(1, cut)
    typer = QuestionTyper.fit([g.question for g in groups], types)
    if args.typer_out:
        typer.save(args.typer_out)

    started = time.perf_counter()
    cand_ents = entities_of(nlp, [s for q in data for s, _, _ in q.sentences])
    probs = typer.probabilities([q.question for q in data])
    typed = []
    for q, p in zip(data, probs, strict=True):
        kinds = [span_type(cand_ents[s], a, b) for s, a, b in q.sentences]
        extra = type_evidence(p, kinds)
        typed.append(replace(q, rows=[(*r, *e) for r, e in zip(q.rows, extra, strict=True)]))
    candidate_seconds = time.perf_counter() - started

    fc._DECIDED.clear()
    base = fc.cross_fit(data)
    fc._DECIDED.clear()
    with_types = fc.cross_fit(typed)
    result = {
        "training_questions_typed": len(groups),
        "types": {t: types.count(t) for t in TYPES},
        "typer_accuracy_held_out_tenth": round(accuracy, 4),
        "majority_type_share": round(majority, 4),
        "spacy_seconds_training_answers": round(label_seconds, 1),
        "spacy_seconds_benchmark_candidates": round(candidate_seconds, 1),
        "benchmark_questions": len(data),
        "without_types": summary(trust_report(base, {})),
        "with_types": summary(trust_report(with_types, {})),
        "paired_bootstrap": paired_bootstrap(base, with_types),
    }
    print(json.dumps(result, indent=2))
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
