"""The benchmark's peer: Haystack 2.x doing our job on the same corpus, with the same embedding model.

Runs inside its own virtual environment (made by ``eval/bench.py --peer``), never beside our service:

    <peer venv>/bin/python eval/haystack_peer.py JOB.json OUT.json

The job (written by the benchmark) names a JSONL corpus, the local embedding model folder, the reader weights
(or none), the split and retrieval settings and the questions; OUT.json gets timings and raw results, which the
benchmark scores with the same code it scores us with.

Ingest: DocumentSplitter -> SentenceTransformersDocumentEmbedder -> DocumentWriter(InMemoryDocumentStore).
Search: SentenceTransformersTextEmbedder -> InMemoryEmbeddingRetriever, InMemoryBM25Retriever
        -> DocumentJoiner(reciprocal_rank_fusion).
Ask:    the same, then ExtractiveReader on the fused top passages.
"""

from __future__ import annotations

import importlib.metadata
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def reader_folder(weights: str | None, tokenizer: str, work: Path) -> str:
    """A folder ExtractiveReader can load: our config + weights (fp16 on disk, written back as fp32) and the
    base model's tokenizer; without weights, the base model itself (its QA head is then untrained)."""
    if weights is None:
        return tokenizer
    from safetensors.torch import load_file, save_file

    out = Path(tempfile.mkdtemp(prefix="haystack-reader-", dir=work))
    src = Path(weights)
    shutil.copy(src / "config.json", out / "config.json")
    state = {k: v.float().contiguous() for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        if (Path(tokenizer) / name).is_file():
            shutil.copy(Path(tokenizer) / name, out / name)
    return str(out)


def load_documents(path: str):
    from haystack import Document

    docs = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                docs.append(
                    Document(id=rec["id"], content=rec["text"], meta={"title": rec["title"], "doc_id": rec["id"]})
                )
    return docs


def new_store():
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    # BM25Okapi with k1=1.2, b=0.75, as ours; vectors are normalised, so dot product is cosine.
    return InMemoryDocumentStore(
        bm25_algorithm="BM25Okapi", bm25_parameters={"k1": 1.2, "b": 0.75}, embedding_similarity_function="dot_product"
    )


def ingest(job: dict, docs: list, store) -> int:
    from haystack import Pipeline
    from haystack.components.embedders import SentenceTransformersDocumentEmbedder
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.writers import DocumentWriter

    split = job["split"]
    pipe = Pipeline()
    pipe.add_component(
        "splitter", DocumentSplitter(split_by=split["by"], split_length=split["length"], split_overlap=split["overlap"])
    )
    pipe.add_component(
        "embedder",
        SentenceTransformersDocumentEmbedder(
            model=job["embedding_model"],
            batch_size=64,
            progress_bar=False,
            normalize_embeddings=True,
            meta_fields_to_embed=["title"],  # as ours: the title is embedded with each chunk
            local_files_only=True,
        ),
    )
    pipe.add_component("writer", DocumentWriter(document_store=store))
    pipe.connect("splitter", "embedder")
    pipe.connect("embedder", "writer")
    pipe.warm_up()
    pipe.run({"splitter": {"documents": docs}})
    return store.count_documents()


def query_pipeline(job: dict, store, *, with_reader: bool, reader_path: str | None = None):
    from haystack import Pipeline
    from haystack.components.embedders import SentenceTransformersTextEmbedder
    from haystack.components.joiners import DocumentJoiner
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever

    r = job["retrieval"]
    pipe = Pipeline()
    pipe.add_component(
        "embedder",
        SentenceTransformersTextEmbedder(
            model=job["embedding_model"], progress_bar=False, normalize_embeddings=True, local_files_only=True
        ),
    )
    pipe.add_component("dense", InMemoryEmbeddingRetriever(document_store=store, top_k=r["depth"]))
    pipe.add_component("bm25", InMemoryBM25Retriever(document_store=store, top_k=r["depth"]))
    top = r["read_k"] if with_reader else r["search_k"]
    pipe.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=top))
    pipe.connect("embedder.embedding", "dense.query_embedding")
    pipe.connect("dense", "joiner")
    pipe.connect("bm25", "joiner")
    if with_reader:
        from haystack.components.readers import ExtractiveReader

        settings = job["reader"]
        pipe.add_component(
            "reader",
            ExtractiveReader(
                model=reader_path,
                top_k=r["answers"],
                max_seq_length=settings["max_seq_length"],
                stride=settings["stride"],
                model_kwargs={"local_files_only": True},
            ),
        )
        pipe.connect("joiner", "reader")
    pipe.warm_up()
    return pipe


def span(doc) -> list[Any]:
    start = int(doc.meta.get("split_idx_start", 0))
    return [doc.meta["source_id"], start, start + len(doc.content or "")]


def ask_once(pipe, question: str, with_reader: bool) -> tuple[float, dict]:
    data: dict[str, Any] = {"embedder": {"text": question}, "bm25": {"query": question}}
    if with_reader:
        data["reader"] = {"query": question}
    t0 = time.perf_counter()
    out = pipe.run(data, include_outputs_from={"joiner"})
    return (time.perf_counter() - t0) * 1000, out


def main(job_path: str, out_path: str) -> None:
    import torch

    job = json.loads(Path(job_path).read_text())
    work = Path(job["work_dir"])
    torch.set_grad_enabled(False)
    docs = load_documents(job["documents"])

    seconds, chunks, store = [], 0, None
    for _ in range(job["ingest_runs"]):
        store = new_store()
        t0 = time.perf_counter()
        chunks = ingest(job, docs, store)
        seconds.append(time.perf_counter() - t0)
        print(f"ingest: {len(docs)} documents, {chunks} chunks in {seconds[-1]:.1f} s", flush=True)

    t0 = time.perf_counter()
    search = query_pipeline(job, store, with_reader=False)
    reader_path = reader_folder(job["reader"]["weights"], job["reader"]["tokenizer"], work)
    ask = query_pipeline(job, store, with_reader=True, reader_path=reader_path)
    load_s = time.perf_counter() - t0
    for q in job["warmup"]:
        ask_once(search, q, False)
        ask_once(ask, q, True)

    results: dict[str, list] = {"search": [], "ask": []}
    for run in job["search_runs"]:
        rows = []
        for q in run:
            ms, out = ask_once(search, q["text"], False)
            rows.append({"id": q["id"], "ms": ms, "passages": [span(d) for d in out["joiner"]["documents"]]})
        results["search"].append(rows)
        print(f"search run: median {statistics.median(r['ms'] for r in rows):.1f} ms", flush=True)
    for run in job["ask_runs"]:
        rows = []
        for q in run:
            ms, out = ask_once(ask, q["text"], True)
            answers = [a for a in out["reader"]["answers"] if a.data]  # the no-answer entry has no text
            best = max(out["reader"]["answers"], key=lambda a: a.score, default=None)
            rows.append(
                {
                    "id": q["id"],
                    "ms": ms,
                    "passages": [span(d) for d in out["joiner"]["documents"]],
                    # abstains (None) when its own no-answer entry scores highest, as ours may
                    "answer": best.data if best is not None and best.data else None,
                    "answers": [a.data for a in answers[:3]],
                }
            )
        results["ask"].append(rows)
        print(f"ask run: median {statistics.median(r['ms'] for r in rows):.1f} ms", flush=True)

    versions = {}
    for pkg in ("haystack-ai", "torch", "sentence-transformers", "transformers"):
        versions[pkg] = importlib.metadata.version(pkg)
    result = {
        "versions": versions,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "ingest": {"seconds": statistics.median(seconds), "documents": len(docs), "chunks": chunks},
        **results,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: haystack_peer.py JOB.json OUT.json")
    main(sys.argv[1], sys.argv[2])
