"""The benchmark's peer: Haystack 2.x doing our job, in one of two setups (the job's ``setup``).

Runs inside its own virtual environment (made by ``eval/bench.py --peer``), never beside our service:

    <peer venv>/bin/python eval/haystack_peer.py JOB.json OUT.json

The job (written by eval/benchmark/peer.py) names the setup, the corpus, the local embedding model folder, the
reader weights (or none) and the questions; OUT.json gets timings and raw results (passages, the top answer and
its score), which the benchmark scores with the same code it scores us with.

Both setups: SentenceTransformersTextEmbedder -> InMemoryEmbeddingRetriever, InMemoryBM25Retriever
-> DocumentJoiner(reciprocal_rank_fusion) for search; the same, then ExtractiveReader, for /ask. Torch fp32 on CPU.

``same_runtime`` (what the framework costs; our side then runs on torch fp32 too):
  - documents: OUR chunks, each as we index it (title + newline + chunk text), so BM25 and the embedder see
    what ours see; no DocumentSplitter, no meta field embedded (the title is already in the text);
  - BM25: BM25Plus with delta 0 and our k1 / b. With delta 0 that is the formula ours computes (bm25s "lucene":
    IDF log(1 + (N - n + 0.5) / (n + 0.5)), TF saturation tf / (tf + k1 (1 - b + b len / avg))) up to a constant
    factor; BM25Okapi's IDF differs (and walks the whole vocabulary on every query);
  - the store returns documents without their vectors (return_embedding=False), as our hits come;
  - each retriever at our depth, RRF weighted as ours (dense 0.5 : BM25 1.0), search_k passages for search and
    the first read_k for the reader, which reads our trained weights at our window (256 tokens, stride 96);
  - no-answer: ExtractiveReader(no_answer=False); the benchmark gives its top answer's score a threshold fitted
    by our rule on held-out training articles (rag.offline.fit_calibration.choose_threshold), so the
    ``calibration`` questions are asked here too, on the corpora that rule uses.
  Still different, because Haystack offers no setting for it: BM25 tokens are not stemmed and keep stop words;
  RRF's k is 61 (ours 5); the reader has no answer-length cap (ours 30 tokens) and reads the title line too.

``default`` (Haystack as its documentation sets it up for CPU): every component at its own defaults —
  DocumentSplitter() (by word, 200 words, no overlap), SentenceTransformersDocumentEmbedder (batch 32),
  InMemoryDocumentStore() (BM25L, k1 1.5, b 0.75, delta 0.5; dot product), retrievers at top_k 10,
  ExtractiveReader() (384-token windows, stride 128, its no-answer entry: it abstains when that scores highest).
  Where a default cannot serve the same job it is set, and said here: the models are ours (the default reader
  and embedder would be downloaded, which these machines cannot do); the joiner fuses by RRF (its default,
  concatenate, does not rank) and keeps search_k passages for search, read_k for the reader (the number ours reads).
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
SETUPS = ("same_runtime", "default")


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


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_documents(path: str) -> list:
    """Whole articles (``default``: Haystack splits them)."""
    from haystack import Document

    return [
        Document(id=r["id"], content=r["text"], meta={"title": r["title"], "doc_id": r["id"]}) for r in read_jsonl(path)
    ]


def load_chunks(path: str) -> list:
    """Our chunks (``same_runtime``), each with the stores it belongs to (serve, covered, not_covered)."""
    from haystack import Document

    return [
        Document(
            id=r["id"],
            content=r["text"],
            meta={"doc_id": r["doc_id"], "start": r["start"], "end": r["end"], "stores": r["stores"]},
        )
        for r in read_jsonl(path)
    ]


def new_store(job: dict):
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    if job["setup"] == "default":
        return InMemoryDocumentStore()
    bm25 = job["bm25"]
    # Vectors are unit length (the model ends in a Normalize layer), so dot product is cosine, as ours. Retrieved
    # documents come without their vectors, as our hits do (nothing downstream reads them; with them each search
    # copies 100 vectors through the pipeline).
    return InMemoryDocumentStore(
        bm25_algorithm=bm25["algorithm"],
        bm25_parameters=bm25["parameters"],
        embedding_similarity_function="dot_product",
        return_embedding=False,
    )


def document_embedder(job: dict):
    from haystack.components.embedders import SentenceTransformersDocumentEmbedder

    if job["setup"] == "default":
        return SentenceTransformersDocumentEmbedder(
            model=job["embedding_model"], progress_bar=False, local_files_only=True
        )
    return SentenceTransformersDocumentEmbedder(
        model=job["embedding_model"],
        batch_size=64,
        progress_bar=False,
        normalize_embeddings=True,
        local_files_only=True,
    )


def ingest(job: dict, docs: list, store) -> list:
    """Split (``default`` only), embed and write ``docs`` into ``store``; returns the documents written, with
    their embeddings."""
    from haystack import Pipeline
    from haystack.components.preprocessors import DocumentSplitter
    from haystack.components.writers import DocumentWriter

    pipe = Pipeline()
    pipe.add_component("embedder", document_embedder(job))
    pipe.add_component("writer", DocumentWriter(document_store=store))
    pipe.connect("embedder", "writer")
    if job["setup"] == "default":
        pipe.add_component("splitter", DocumentSplitter())
        pipe.connect("splitter", "embedder")
        data = {"splitter": {"documents": docs}}
    else:
        data = {"embedder": {"documents": docs}}
    pipe.warm_up()
    out = pipe.run(data, include_outputs_from={"embedder"})
    return out["embedder"]["documents"]


def query_pipeline(job: dict, store, *, with_reader: bool, reader_path: str | None = None):
    from haystack import Pipeline
    from haystack.components.embedders import SentenceTransformersTextEmbedder
    from haystack.components.joiners import DocumentJoiner
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever, InMemoryEmbeddingRetriever

    r = job["retrieval"]
    top = r["read_k"] if with_reader else r["search_k"]
    pipe = Pipeline()
    if job["setup"] == "default":
        pipe.add_component(
            "embedder",
            SentenceTransformersTextEmbedder(model=job["embedding_model"], progress_bar=False, local_files_only=True),
        )
        pipe.add_component("dense", InMemoryEmbeddingRetriever(document_store=store))
        pipe.add_component("bm25", InMemoryBM25Retriever(document_store=store))
        pipe.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", top_k=top))
    else:
        pipe.add_component(
            "embedder",
            SentenceTransformersTextEmbedder(
                model=job["embedding_model"], progress_bar=False, normalize_embeddings=True, local_files_only=True
            ),
        )
        pipe.add_component("dense", InMemoryEmbeddingRetriever(document_store=store, top_k=r["depth"]))
        pipe.add_component("bm25", InMemoryBM25Retriever(document_store=store, top_k=r["depth"]))
        # The joiner takes the lists in the order their senders run: bm25 (ready at once, and first by name)
        # before dense (which waits for the embedder); so the weights are [BM25, dense], summing to 1.
        total = r["dense_weight"] + r["lexical_weight"]
        weights = [r["lexical_weight"] / total, r["dense_weight"] / total]
        pipe.add_component("joiner", DocumentJoiner(join_mode="reciprocal_rank_fusion", weights=weights, top_k=top))
    pipe.connect("embedder.embedding", "dense.query_embedding")
    pipe.connect("dense", "joiner")
    pipe.connect("bm25", "joiner")
    if with_reader:
        from haystack.components.readers import ExtractiveReader

        if job["setup"] == "default":
            reader = ExtractiveReader(model=reader_path, model_kwargs={"local_files_only": True})
        else:
            settings = job["reader"]
            reader = ExtractiveReader(
                model=reader_path,
                top_k=r["answers"],
                max_seq_length=settings["max_seq_length"],
                stride=settings["stride"],
                no_answer=False,  # the benchmark thresholds the top answer's score instead (see the docstring)
                model_kwargs={"local_files_only": True},
            )
        pipe.add_component("reader", reader)
        pipe.connect("joiner", "reader")
    pipe.warm_up()
    return pipe


def span(doc) -> list[Any]:
    """(document id, start, end) of a passage in its whole article."""
    if "start" in doc.meta:  # one of our chunks
        return [doc.meta["doc_id"], int(doc.meta["start"]), int(doc.meta["end"])]
    start = int(doc.meta.get("split_idx_start", 0))
    return [doc.meta["source_id"], start, start + len(doc.content or "")]


def ask_once(pipe, question: str, with_reader: bool) -> tuple[float, dict]:
    data: dict[str, Any] = {"embedder": {"text": question}, "bm25": {"query": question}}
    if with_reader:
        data["reader"] = {"query": question}
    t0 = time.perf_counter()
    out = pipe.run(data, include_outputs_from={"joiner"})
    return (time.perf_counter() - t0) * 1000, out


def row(q: dict, ms: float, out: dict, with_reader: bool) -> dict:
    r: dict[str, Any] = {"id": q["id"], "ms": ms, "passages": [span(d) for d in out["joiner"]["documents"]]}
    if with_reader:
        answers = out["reader"]["answers"]
        texts = [a for a in answers if a.data]  # the no-answer entry (``default``) has no text
        top = max(texts, key=lambda a: a.score, default=None)
        best = max(answers, key=lambda a: a.score, default=None)
        r["top"] = top.data if top is not None else None
        r["score"] = float(top.score) if top is not None else None
        # ``default``: its own rule, abstain when the no-answer entry scores highest
        r["abstained"] = best is None or not best.data
    return r


def run_questions(pipe, questions: list[dict], with_reader: bool) -> list[dict]:
    out = []
    for q in questions:
        ms, result = ask_once(pipe, q["text"], with_reader)
        out.append(row(q, ms, result, with_reader))
    return out


def store_of(job: dict, documents: list, name: str):
    """A store holding the already embedded ``documents`` that belong to store ``name`` (nothing re-embedded)."""
    store = new_store(job)
    store.write_documents([d for d in documents if name in d.meta["stores"]])
    return store


def main(job_path: str, out_path: str) -> None:
    import torch

    job = json.loads(Path(job_path).read_text())
    if job["setup"] not in SETUPS:
        sys.exit(f"haystack_peer: setup must be one of {SETUPS}, got {job['setup']!r}")
    work = Path(job["work_dir"])
    torch.set_grad_enabled(False)
    same_runtime = job["setup"] == "same_runtime"
    if same_runtime:
        every = load_chunks(job["chunks"])
        docs = [d for d in every if "serve" in d.meta["stores"]]
    else:
        every, docs = [], load_documents(job["documents"])

    seconds, written, store = [], [], None
    for _ in range(job["ingest_runs"]):
        store = new_store(job)
        t0 = time.perf_counter()
        written = ingest(job, docs, store)
        seconds.append(time.perf_counter() - t0)
        print(
            f"ingest ({job['setup']}): {len(docs)} documents, {store.count_documents()} chunks in {seconds[-1]:.1f} s"
        )
    assert store is not None, "ingest_runs must be at least 1"
    chunks = store.count_documents()

    t0 = time.perf_counter()
    search = query_pipeline(job, store, with_reader=False)
    reader_path = reader_folder(job["reader"]["weights"], job["reader"]["tokenizer"], work)
    ask = query_pipeline(job, store, with_reader=True, reader_path=reader_path)
    load_s = time.perf_counter() - t0
    for q in job["warmup"]:
        ask_once(search, q, False)
        ask_once(ask, q, True)

    results: dict[str, Any] = {"search": [], "ask": []}
    for run in job["search_runs"]:
        results["search"].append(run_questions(search, run, False))
        print(f"search run: median {statistics.median(r['ms'] for r in results['search'][-1]):.1f} ms", flush=True)
    for run in job["ask_runs"]:
        results["ask"].append(run_questions(ask, run, True))
        print(f"ask run: median {statistics.median(r['ms'] for r in results['ask'][-1]):.1f} ms", flush=True)
    results["quality"] = {
        "search": run_questions(search, job["quality"], False),
        "ask": run_questions(ask, job["quality"], True) if job["ask_runs"] else [],
    }
    print(f"quality: {len(job['quality'])} questions", flush=True)
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the calibration stores

    calibration: dict[str, list] = {}
    if same_runtime and job.get("calibration"):
        # Chunks only the calibration corpora hold are embedded here, untimed; the stores share the vectors.
        seen = {d.id for d in written}
        extra = [d for d in every if d.id not in seen]
        embedded = written + (ingest(job, extra, new_store(job)) if extra else [])
        for name, questions in job["calibration"].items():
            cal_store = store_of(job, embedded, name)
            pipe = query_pipeline(job, cal_store, with_reader=True, reader_path=reader_path)
            calibration[name] = run_questions(pipe, questions, True)
            print(f"calibration {name}: {cal_store.count_documents()} chunks, {len(questions)} questions", flush=True)

    versions = {
        pkg: importlib.metadata.version(pkg)
        for pkg in ("haystack-ai", "torch", "sentence-transformers", "transformers")
    }
    result = {
        "setup": job["setup"],
        "versions": versions,
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "ingest": {"seconds": statistics.median(seconds), "documents": len(docs), "chunks": chunks},
        **results,
        "calibration": calibration,
        "rss_peak_mib": rss_mib,
    }
    Path(out_path).write_text(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: haystack_peer.py JOB.json OUT.json")
    main(sys.argv[1], sys.argv[2])
