"""Does feedback teach the reader a new domain? The learning curve of issue 26 (``make feedback-curve``).

A domain the shipped reader never trained on: the SQuADShifts Reddit file (``../shared/data/qa-more/``, reserved
for this), each post a document. Posts are split: a fifth are **test** posts (their questions are never
annotated, trained on or used for calibration), the rest the **annotation** pool. Simulated users ask the pool's
questions of a real ``rag serve`` in a random order, and give feedback through ``POST /feedback`` as a person
would in the page: "right" when the shown answer matches a gold answer (SQuAD exact match), otherwise "this is
the answer" with the gold span selected. After 50, 100, 200 and 500 annotated questions the feedback is exported
(``rag feedback export``) and ``rag train-reader --extra-gold`` adapts the shipped reader to it (never installing;
the candidate keeps its own calibration, fitted on the trust benchmark plus the held-out annotated questions).
Each adapted reader, and the shipped one as shipped, then answers the test questions in-process with the
service's decision rule: F1, EM, share answered and right among the answers given, with 95% bootstrap intervals,
the paired F1 difference to the shipped reader, and training time. Every step is cached in ``--work``: a run that
is stopped continues where it was.

    .venv/bin/python eval/feedback_curve.py [--points 50,100,200,500] [--test 600]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loadtest import git_commit  # noqa: E402 - eval/, beside us

from rag.evaluation.metrics import exact_match, f1  # noqa: E402
from rag.evaluation.server import serve  # noqa: E402

REDDIT = "qa-more/squadshifts-reddit.json"


def posts(shared: Path) -> tuple[list[dict], list[dict]]:
    """(documents, questions): one document per post; questions with their post and answer spans (checked)."""
    payload = json.loads((shared / "data" / REDDIT).read_text())
    docs, questions = [], []
    for article in payload["data"]:
        for i, p in enumerate(article["paragraphs"]):
            doc_id = f"reddit-{i:04d}"
            docs.append({"id": doc_id, "title": f"Reddit post {i}", "text": p["context"]})
            for qa in p["qas"]:
                spans = []
                for a in qa["answers"]:
                    start = int(a["answer_start"])
                    if p["context"][start : start + len(a["text"])] == a["text"]:
                        spans.append((start, start + len(a["text"]), a["text"]))
                if spans:
                    questions.append({"id": qa["id"], "question": qa["question"], "doc": doc_id, "answers": spans})
    return docs, questions


def split_posts(docs: list[dict], questions: list[dict], seed: int, test_share: float = 0.2):
    ids = [d["id"] for d in docs]
    random.Random(seed).shuffle(ids)
    test_posts = set(ids[: int(len(ids) * test_share)])
    test = [q for q in questions if q["doc"] in test_posts]
    pool = [q for q in questions if q["doc"] not in test_posts]
    random.Random(seed + 1).shuffle(pool)
    return pool, test, test_posts


def rag(*args: str) -> None:
    script = Path(sys.executable).parent / "rag"
    subprocess.run([str(script), *args], check=True, cwd=ROOT)


def annotate(index: Path, pool: list[dict], points: list[int], work: Path) -> dict[int, Path]:
    """Ask the pool's questions of a real service and send the feedback; export the gold after each point."""
    golds = {n: work / f"gold-{n}.jsonl" for n in points}
    if all(p.is_file() for p in golds.values()):
        return golds
    feedback = index / "feedback" / "feedback.jsonl"
    if feedback.exists():
        feedback.unlink()  # a stopped run's records: start the annotation again from the first question
    env = {"RAG_FEEDBACK": "open", "RAG_FEEDBACK_PER_MINUTE": "10000"}
    verdicts = {"right": 0, "answer_is": 0}
    with serve(index, work / "server.log", env=env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        for n, q in enumerate(pool[: max(points)], start=1):
            r = client.post("/ask", json={"question": q["question"]})
            r.raise_for_status()
            answers = r.json().get("answers") or []
            gold_texts = [t for _, _, t in q["answers"]]
            shown = answers[0] if answers else None
            if shown is not None and exact_match(shown["text"], gold_texts) == 1.0:
                body = {
                    "question": q["question"],
                    "verdict": "right",
                    "shown": {
                        "document_id": shown["document_id"],
                        "start": shown["document_offset"]["start"],
                        "end": shown["document_offset"]["end"],
                        "score": shown["score"],
                    },
                }
            else:
                start, end, _ = q["answers"][0]
                body = {
                    "question": q["question"],
                    "verdict": "answer_is",
                    "answer": {"document_id": q["doc"], "start": start, "end": end},
                }
            f = client.post("/feedback", json=body)
            if f.status_code != 200:
                raise RuntimeError(f"POST /feedback answered {f.status_code}: {f.text}")
            verdicts[body["verdict"]] += 1
            if n in golds:
                rag("feedback", "export", "--index", str(index), "--out", str(golds[n]))
                print(f"{n} annotated ({verdicts}): {golds[n]}", flush=True)
    return golds


def answer_all(pipeline, index, test: list[dict]) -> list[dict]:
    rows = []
    for q in test:
        res = pipeline.ask(index, q["question"])
        golds = [t for _, _, t in q["answers"]]
        top = res.answers[0].text if res.answers else (res.possible_answers[0].text if res.possible_answers else "")
        answered = not res.no_answer
        rows.append(
            {
                "answered": answered,
                "f1": f1(top, golds) if answered else 0.0,
                "em": exact_match(top, golds) if answered else 0.0,
                "forced_f1": f1(top, golds),
            }
        )
    return rows


def summary(rows: list[dict], base: list[dict] | None, seed: int = 13, samples: int = 1000) -> dict:
    rng = np.random.default_rng(seed)
    n = len(rows)
    out: dict = {"questions": n}
    idx = [rng.integers(0, n, n) for _ in range(samples)]
    for name in ("f1", "em", "forced_f1"):
        v = np.array([r[name] for r in rows]) * 100
        draws = [v[i].mean() for i in idx]
        out[name] = round(float(v.mean()), 1)
        out[f"{name}_interval"] = [
            round(float(np.percentile(draws, 2.5)), 1),
            round(float(np.percentile(draws, 97.5)), 1),
        ]
        if base is not None:
            d = v - np.array([r[name] for r in base]) * 100
            dd = [d[i].mean() for i in idx]
            out[f"{name}_vs_shipped"] = [
                round(float(d.mean()), 1),
                round(float(np.percentile(dd, 2.5)), 1),
                round(float(np.percentile(dd, 97.5)), 1),
            ]
    given = [r for r in rows if r["answered"]]
    out["answered"] = round(100 * len(given) / n, 1)
    out["right_among_given"] = round(100 * sum(r["f1"] >= 0.5 for r in given) / len(given), 1) if given else None
    return out


def markdown(result: dict) -> str:
    lines = [
        "# Learning curve: adapting the reader to Reddit posts from users' feedback",
        "",
        f"Commit {result['commit']}, {result['date']}, {result['machine']}. {result['documents']} posts indexed; "
        f"{result['test_questions']} test questions on {result['test_posts']} test posts (never annotated); "
        "annotations are simulated through POST /feedback. `python eval/feedback_curve.py` writes this file.",
        "",
        "| annotated | reader | F1 [95%] | EM | F1 forced | answered | right among given | F1 vs shipped [95%] "
        "| trained on (annotated + replayed) | training s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in result["points"]:
        s = p["test"]
        vs = s.get("f1_vs_shipped")
        lines.append(
            f"| {p['annotated']} | {p['reader']} | {s['f1']} [{s['f1_interval'][0]}, {s['f1_interval'][1]}] "
            f"| {s['em']} | {s['forced_f1']} | {s['answered']}% "
            f"| {'-' if s['right_among_given'] is None else str(s['right_among_given']) + '%'} "
            f"| {'' if vs is None else f'{vs[0]:+.1f} [{vs[1]:+.1f}, {vs[2]:+.1f}]'} "
            f"| {p.get('trained_on', '')} | {p.get('training_seconds', '')} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--points", default="50,100,200,500")
    parser.add_argument("--test", type=int, default=600, help="test questions (a fixed sample of the test posts')")
    parser.add_argument("--work", type=Path, default=ROOT / "eval" / ".cache" / "feedback-curve")
    parser.add_argument("--out", type=Path, default=ROOT / "eval" / "results" / "feedback-curve")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    points = sorted(int(p) for p in args.points.split(","))
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    docs, questions = posts(args.shared)
    pool, test, test_posts = split_posts(docs, questions, args.seed)
    test = random.Random(args.seed).sample(test, min(args.test, len(test)))
    print(f"{len(docs)} posts, {len(questions)} questions: {len(pool)} to annotate, {len(test)} test", flush=True)
    index = args.work / "index"
    if not (index / "CURRENT").exists():
        corpus = args.work / "reddit.jsonl"
        corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
        rag("ingest", str(corpus), "--index", str(index))
    golds = annotate(index, pool, points, args.work)

    from rag.engine import model_record
    from rag.offline.adapt import AdaptConfig, adapt
    from rag.pipeline import QAPipeline
    from rag.reader.model import DEFAULT_READER_DIR
    from rag.settings import Settings
    from rag.store import CorpusIndex

    settings = Settings(index_dir=index)
    shipped = QAPipeline.load("trained", settings=settings.ask_settings(), threads=args.threads)
    corpus_index = CorpusIndex.load(index, model=model_record(shipped.embedder))

    def answers_of(name: str, pipeline) -> list[dict]:
        cached = args.work / f"test-{name}.json"
        if cached.is_file():
            return json.loads(cached.read_text())
        t0 = time.perf_counter()
        rows = answer_all(pipeline, corpus_index, test)
        print(f"{name}: {len(rows)} test questions in {time.perf_counter() - t0:.0f} s", flush=True)
        cached.write_text(json.dumps(rows))
        return rows

    base = answers_of("shipped", shipped)
    result_points = [{"annotated": 0, "reader": "shipped (unadapted)", "test": summary(base, None)}]
    for n in points:
        work = args.work / f"adapt-{n}"
        config = AdaptConfig(
            gold=str(golds[n]),
            index_dir=str(index),
            reader_dir=str(DEFAULT_READER_DIR),
            work_dir=str(work),
            squad_path=str(args.shared / "data" / "squad-v2.0-dev" / "dev-v2.0.json"),
            seeds=str(ROOT / "seeds"),
            train_part=str(args.shared / "data" / "squad-v2.0-train-part"),
            cache=str(ROOT / "eval" / ".cache" / "calibration"),
            seed=args.seed,
            threads=args.threads,
        )
        report_path = work / "report.json"
        report = (
            json.loads(report_path.read_text())
            if report_path.is_file()
            else adapt(config, install="never", resume=True, log=lambda m: print(m, flush=True))
        )
        adapted = QAPipeline.load(
            "trained",
            reader_dir=work / "candidate",
            settings=settings.ask_settings(),
            threads=args.threads,
            embedder=shipped.embedder,
        )
        rows = answers_of(f"adapted-{n}", adapted)
        result_points.append(
            {
                "annotated": n,
                "reader": "adapted",
                "test": summary(rows, base),
                "trained_on": f"{report['trained_on']} + {report['replayed']}",
                "training_seconds": report["training_seconds"],
                "held_out_annotated": {
                    k: report[k] for k in ("held_out", "current", "adapted", "adapted_minus_current")
                },
                "threshold": report.get("threshold"),
            }
        )
    result = {
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{len(__import__('os').sched_getaffinity(0))} cores",
        "documents": len(docs),
        "test_posts": len(test_posts),
        "test_questions": len(test),
        "seconds": round(time.perf_counter() - started, 1),
        "points": result_points,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "curve.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
