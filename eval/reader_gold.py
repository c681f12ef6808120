"""The reader alone, with the gold paragraph given (no retrieval): SQuAD 2.0 validation articles.

Writes eval/results/reader-gold.json with, per runtime (torch fp32, ONNX fp32, ONNX int8): HasAns EM/F1
when forced to answer, the AUC of the reader's own no-answer margin, and ms per question (one paragraph each).
``--split held-out`` reads the 4 training articles held out from reader training instead (the figures to
choose between readers on; never the validation ones).

    .venv/bin/python eval/reader_gold.py [--shared ../shared] [--backends onnx-int8,onnx,torch] [--limit N]
        [--split validation|held-out] [--reader-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from rag.offline.train import calibration_titles
from rag.offline.validate import evaluate_gold_paragraphs
from rag.reader.model import SpanReader
from rag.squad import iter_questions, load_squad, select_articles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--backends", default="onnx-int8,onnx,torch")
    parser.add_argument("--limit", type=int, default=None, help="a fixed sample of N questions")
    parser.add_argument("--out", type=Path, default=Path("eval/results/reader-gold.json"))
    parser.add_argument("--split", choices=("validation", "held-out"), default="validation")
    parser.add_argument("--reader-dir", type=Path, default=None, help="default: the shipped reader")
    args = parser.parse_args()
    payload = load_squad(args.shared / "data/squad-v2.0-dev/dev-v2.0.json")
    if args.split == "validation":
        articles = select_articles(payload, "validation")
    else:
        train = select_articles(payload, "train")
        held_out = set(calibration_titles([a["title"] for a in train]))
        articles = [a for a in train if a["title"] in held_out]
    questions = list(iter_questions(articles))
    if args.limit:
        questions = random.Random(0).sample(questions, args.limit)
    split = "validation (7 articles)" if args.split == "validation" else "held-out training articles (4)"
    summary = {"split": split, "questions": len(questions), "threads": 2, "runtimes": {}}
    for backend in args.backends.split(","):
        reader = SpanReader.load(args.reader_dir, backend=backend, threads=2)
        metrics = evaluate_gold_paragraphs(reader, questions)
        summary["runtimes"][backend] = metrics
        print(backend, json.dumps(metrics), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
