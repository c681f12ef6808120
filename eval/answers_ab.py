"""Are the answers of this checkout those of another commit? The SQuAD 2.0 validation questions and the seed's
gold questions, asked in process (the engine's ask, as the service calls it) by each checkout over one index
(built by this checkout from the seed and the validation articles when missing), compared field by field but
for timings.

    git worktree add /tmp/old COMMIT
    .venv/bin/python eval/answers_ab.py --other /tmp/old [--index eval/.cache/answers-ab]

``--other`` runs with this checkout's interpreter and its own code, reader weights and calibration.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import dataclasses, json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from rag.engine import Engine
from rag.loaders import load_paths, slug_id
from rag.settings import Settings
from rag.squad import article_text, iter_questions, load_squad, select_articles
from rag.types import Document

index, squad, seeds, gold, out = (Path(a) for a in sys.argv[2:7])
articles = select_articles(load_squad(squad), "validation")
settings = Settings(_env_file=None, index_dir=index)
if not index.exists():
    writer = Engine.open(settings, create=True, read=False)
    docs = list(load_paths([seeds]).documents)
    docs += [Document(id=slug_id(a["title"]), title=a["title"], text=article_text(a)[0]) for a in articles]
    writer.upsert(docs)
engine = Engine.open(settings)
questions = [q.question for q in iter_questions(articles)]
questions += [json.loads(line)["question"] for line in gold.read_text().splitlines() if line.strip()]
rows = []
for question in questions:
    row = dataclasses.asdict(engine.ask(question, top_k=5))
    row.pop("timings_ms", None)
    rows.append(row)
out.write_text(json.dumps(rows, default=str))
"""


def answers(checkout: Path, index: Path, shared: Path, out: Path) -> list[dict]:
    squad = shared / "data" / "squad-v2.0-dev" / "dev-v2.0.json"
    gold = ROOT / "eval" / "gold" / "seed.jsonl"
    args = [str(checkout), str(index), str(squad), str(ROOT / "seeds"), str(gold), str(out)]
    subprocess.run([sys.executable, "-c", CHILD, *args], check=True, cwd=checkout)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, required=True, help="a checkout of the other commit")
    parser.add_argument("--index", type=Path, default=ROOT / "eval" / ".cache" / "answers-ab")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ours = answers(ROOT, args.index, args.shared, Path(tmp) / "ours.json")
        theirs = answers(args.other.resolve(), args.index, args.shared, Path(tmp) / "theirs.json")
    differ = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
    print(
        f"{len(ours) - len(differ)} of {len(ours)} questions answered identically (answers, offsets, scores, passages)"
    )
    for i in differ[:10]:
        print(
            json.dumps(
                {"question": ours[i]["question"], "this": ours[i]["answers"][:1], "other": theirs[i]["answers"][:1]}
            )
        )
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
