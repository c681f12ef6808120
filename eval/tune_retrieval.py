"""Tune retrieval on training data only: SQuAD 2.0 training articles (+ seed) and SciFact train queries.

Grid: chunk budget and title-in-text (these need re-embedding, cached under eval/.cache/tune/), BM25 k1/b,
and the RRF constant and weights. Prints a table per corpus and the best settings by hit@5 (SQuAD) and
nDCG@10 (SciFact). The validation articles and SciFact test queries are never touched here.

    .venv/bin/python eval/tune_retrieval.py [--shared ../shared] [--squad-only | --scifact-only]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from rag.chunking import ChunkerSettings
from rag.embedding import Embedder
from rag.engine import model_record
from rag.evaluation.metrics import hit_at, ndcg_at, recall_at, reciprocal_rank
from rag.lexical import BM25Index, LexicalSettings
from rag.loaders import load_paths, squad_documents
from rag.retrieval import RetrievalSettings
from rag.squad import iter_questions, load_squad, select_articles
from rag.store import CorpusIndex, IndexSettings, indexed_text

CACHE = Path("eval/.cache/tune")


def build(name: str, docs, settings: IndexSettings, embedder: Embedder) -> CorpusIndex:
    folder = CACHE / f"{name}-t{settings.chunker.max_tokens}-title{int(settings.title_in_text)}"
    model = model_record(embedder)
    index = (
        CorpusIndex.load(folder, settings=settings, model=model)
        if (folder / "CURRENT").exists()
        else CorpusIndex.empty(settings, model)
    )
    started = time.perf_counter()
    index, report = index.apply(docs, embedder=embedder)
    if report.changed:
        index.save(folder)
        print(f"  built {folder.name}: {len(index.chunks)} chunks in {time.perf_counter() - started:.0f} s", flush=True)
    return index


def relex(index: CorpusIndex, lexical: LexicalSettings) -> None:
    index.lexical = BM25Index(lexical).build(
        [indexed_text(index.documents[c.doc_id].title, c.text, index.settings.title_in_text) for c in index.chunks]
    )


def candidates(index: CorpusIndex, texts, vectors, depth: int = 100) -> tuple[list, list]:
    """Per query: dense (key, rank) and BM25 (key, rank) lists, computed once and fused many times."""
    dense, lexical = [], []
    for text, vec in zip(texts, vectors, strict=True):
        keys, _ = index.dense.search(vec[None, :], depth)
        dense.append({int(k): r for r, k in enumerate(keys, 1)})
        rows, _ = index.lexical.search(text, depth)
        lexical.append({index.chunks[int(row)].key: r for r, row in enumerate(rows, 1)})
    return dense, lexical


def fuse(dense: dict, lexical: dict, r: RetrievalSettings, k: int) -> list[int]:
    if r.fusion == "dense":
        return sorted(dense, key=dense.get)[:k]
    if r.fusion == "lexical":
        return sorted(lexical, key=lexical.get)[:k]
    scores: dict[int, float] = {}
    for key, rank in dense.items():
        scores[key] = scores.get(key, 0.0) + r.dense_weight / (r.rrf_k + rank)
    for key, rank in lexical.items():
        scores[key] = scores.get(key, 0.0) + r.lexical_weight / (r.rrf_k + rank)
    return sorted(scores, key=lambda key: (-scores[key], key))[:k]


def squad_metrics(index, questions, dense, lexical, r: RetrievalSettings) -> dict:
    ranks = []
    for q, d, lx in zip(questions, dense, lexical, strict=True):
        lo, hi = q.paragraph_start, q.paragraph_start + len(q.context)
        rank = None
        for pos, key in enumerate(fuse(d, lx, r, 10), 1):
            c = index.chunk(key)
            if c.doc_id == q.document_id and c.start < hi and c.end > lo:
                rank = pos
                break
        ranks.append(rank)
    return {
        "hit@1": round(float(np.mean([hit_at(x, 1) for x in ranks])), 4),
        "hit@5": round(float(np.mean([hit_at(x, 5) for x in ranks])), 4),
        "mrr@10": round(float(np.mean([reciprocal_rank(x) for x in ranks])), 4),
    }


def scifact_metrics(index, queries, qrels, dense, lexical, r: RetrievalSettings) -> dict:
    ndcg, recall = [], []
    for (qid, _), d, lx in zip(queries, dense, lexical, strict=True):
        ranked = list(dict.fromkeys(index.chunk(key).doc_id for key in fuse(d, lx, r, 200)))
        ndcg.append(ndcg_at(ranked, qrels[qid], 10))
        recall.append(recall_at(ranked, qrels[qid], 100))
    return {"ndcg@10": round(float(np.mean(ndcg)), 4), "recall@100": round(float(np.mean(recall)), 4)}


def grid(index, texts, vectors, metric, lexicals, retrievals, depth: int) -> list[tuple[dict, dict]]:
    """``depth`` mirrors the service: candidates per retriever = max(k, RetrievalSettings.depth)."""
    rows = []
    for lexical in lexicals:
        relex(index, lexical)
        dense, lex = candidates(index, texts, vectors, depth)
        for retrieval in retrievals:
            rows.append(({"k1": lexical.k1, "b": lexical.b, **retrieval.as_dict()}, metric(dense, lex, retrieval)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--squad-only", action="store_true")
    parser.add_argument("--scifact-only", action="store_true")
    parser.add_argument("--budgets", default="200,256")
    args = parser.parse_args()
    embedder = Embedder().load()
    lexicals = [LexicalSettings(k1=k1, b=b) for k1, b in itertools.product((0.9, 1.2, 1.5), (0.5, 0.75, 0.9))]
    retrievals = [RetrievalSettings(fusion="dense"), RetrievalSettings(fusion="lexical")] + [
        RetrievalSettings(rrf_k=k, dense_weight=w)
        for k, w in itertools.product((5, 10, 30, 60), (0.3, 0.5, 0.75, 1.0, 1.5, 2.0))
    ]
    budgets = [int(b) for b in args.budgets.split(",")]
    results: dict[str, list] = {}

    if not args.scifact_only:
        payload = load_squad(args.shared / "data/squad-v2.0-dev/dev-v2.0.json")
        train = select_articles(payload, "train")
        docs = load_paths(["seeds"]).documents + squad_documents({"data": train})
        questions = list(iter_questions(train))
        vectors = embedder.encode([q.question for q in questions])
        for budget, title in itertools.product(budgets, (True, False)):
            settings = IndexSettings(chunker=ChunkerSettings(max_tokens=budget), title_in_text=title)
            index = build("squad-train", docs, settings, embedder)
            rows = grid(
                index,
                [q.question for q in questions],
                vectors,
                lambda d, lx, r, i=index: squad_metrics(i, questions, d, lx, r),
                lexicals,
                retrievals,
                depth=50,
            )
            for params, metrics in rows:
                results.setdefault("squad", []).append({"max_tokens": budget, "title": title, **params, **metrics})
            best = max(rows, key=lambda pm: (pm[1]["hit@5"], pm[1]["hit@1"]))
            print(f"squad t={budget} title={title}: best {best}", flush=True)

    if not args.squad_only:
        folder = args.shared / "data/scifact"
        docs = load_paths([folder / "corpus.jsonl"]).documents
        queries_all = {
            str(r["_id"]): r["text"] for r in map(json.loads, (folder / "queries.jsonl").read_text().splitlines())
        }
        qrels: dict[str, dict[str, int]] = {}
        for line in (folder / "qrels/train.tsv").read_text().splitlines()[1:]:
            qid, doc, score = line.split("\t")
            qrels.setdefault(qid, {})[doc] = int(score)
        queries = [(qid, queries_all[qid]) for qid in qrels if qid in queries_all]
        vectors = embedder.encode([t for _, t in queries])
        for budget in budgets:
            settings = IndexSettings(chunker=ChunkerSettings(max_tokens=budget), title_in_text=True)
            index = build("scifact", docs, settings, embedder)
            rows = grid(
                index,
                [t for _, t in queries],
                vectors,
                lambda d, lx, r, i=index: scifact_metrics(i, queries, qrels, d, lx, r),
                lexicals,
                retrievals,
                depth=200,
            )
            for params, metrics in rows:
                results.setdefault("scifact", []).append({"max_tokens": budget, **params, **metrics})
            best = max(rows, key=lambda pm: pm[1]["ndcg@10"])
            print(f"scifact t={budget}: best {best}", flush=True)

    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "results.json").write_text(json.dumps(results, indent=1))
    print(f"all rows in {CACHE / 'results.json'}")


if __name__ == "__main__":
    main()
