"""All configuration, from ``RAG_``-prefixed environment variables (or a ``.env`` file). Only this module
reads the environment; library code takes explicit parameters built from these settings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rag.chunking import ChunkerSettings
from rag.lexical import LexicalSettings
from rag.pipeline import AskSettings
from rag.retrieval import RetrievalSettings
from rag.store import IndexSettings


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_file=".env", extra="ignore")

    index_dir: Path = Field(Path("index"), description="Folder of the index the service serves")
    ray_address: str | None = Field(
        None,
        description="Ray cluster whose Serve deployments serve the sharded index's shards (`rag serve --ray`; "
        "'auto': the one this machine runs); unset: the index is read in this process",
    )
    host: str = Field("127.0.0.1", description="Address `rag serve` binds")
    port: int = Field(8000, ge=1, le=65535, description="Port `rag serve` listens on")
    api_key: SecretStr | None = Field(None, description="Bearer key required for POST/DELETE /documents")
    allow_open_writes: bool = Field(False, description="Allow writes without a key (local use only)")
    allow_open_writes_on_network: bool = Field(
        False, description="Also allow open writes when `rag serve` binds a non-loopback address (asked twice)"
    )

    reader: Literal["trained", "heuristic"] = Field("trained", description="Answer extractor")
    reader_dir: Path | None = Field(None, description="Folder of reader weights (default: the shipped reader)")
    threads: int | None = Field(None, ge=1, le=64, description="Threads per model pass (default: all cores)")
    embed_backend: Literal["onnx", "onnx-int8", "torch"] = Field("onnx-int8", description="Embedding runtime")
    reader_backend: Literal["onnx", "onnx-int8", "torch"] = Field("onnx-int8", description="Reader runtime")

    read_k: int = Field(3, ge=1, le=20, description="Passages the reader reads per question")
    max_answers: int = Field(3, ge=1, le=10, description="Distinct answers returned at most")
    no_answer_threshold: float | None = Field(
        None, ge=0, le=1, description="Answer only above this score (default: the calibrated threshold)"
    )
    batch_exact: bool = Field(
        True,
        description="POST /ask/batch answers exactly as /ask: with int8 models each question then gets its own forward "
        "passes; false lets questions share passes (faster, but int8 answers may differ slightly from /ask's)",
    )

    fusion: Literal["rrf", "dense", "lexical"] = Field("rrf", description="How dense and BM25 rankings combine")
    rrf_k: int = Field(5, ge=1, description="RRF constant k")
    dense_weight: float = Field(0.5, ge=0, description="Weight of the dense ranking in RRF")
    lexical_weight: float = Field(1.0, ge=0, description="Weight of the BM25 ranking in RRF")
    retrieval_depth: int = Field(50, ge=1, le=1000, description="Candidates per retriever before fusion")

    bm25_k1: float = Field(0.9, gt=0, le=10, description="BM25 k1 (term-frequency saturation)")
    bm25_b: float = Field(0.5, ge=0, le=1, description="BM25 b (length normalisation)")
    chunk_max_tokens: int = Field(200, ge=16, le=512, description="Chunk budget in embedder tokens")
    chunk_overlap_sentences: int = Field(1, ge=0, le=5, description="Sentences repeated across a chunk cut")
    title_in_text: bool = Field(True, description="Prepend the title to chunks for embedding and BM25")
    dense_index: Literal["auto", "flat", "ivf-sq8", "ivf-pq", "hnsw"] = Field(
        "auto", description="FAISS index type (auto: exact below 200k chunks, IVF-SQ8 above)"
    )

    max_request_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="Largest request body accepted")
    max_concurrency: int = Field(2, ge=1, le=64, description="Model requests computed at once")
    max_queue: int = Field(64, ge=0, le=10_000, description="Requests waiting beyond that before 503")
    max_connections: int = Field(
        256, ge=1, le=100_000, description="Open connections `rag serve` takes at once; beyond them a client gets 503"
    )
    log_level: str = Field("info", description="Log level")

    feedback: Literal["off", "open", "key"] | None = Field(
        None,
        description="Who may send POST /feedback: off, open (anyone, rate-limited per client) or key (the write "
        "key); default: open when `rag serve` binds a loopback address, key otherwise",
    )
    feedback_max_bytes: int = Field(
        50 * 2**20, ge=1024, description="Size limit of the feedback file; beyond it POST /feedback answers 507"
    )
    feedback_per_minute: int = Field(30, ge=1, le=10_000, description="Feedback records one client may send a minute")

    def open_writes_refusal(self) -> str | None:
        """Why `rag serve` will not start with these settings (None: it may): open writes on an address other
        hosts can reach must be asked for twice."""
        loopback = self.is_loopback()
        if self.allow_open_writes and not self.api_key and not loopback and not self.allow_open_writes_on_network:
            return (
                f"RAG_ALLOW_OPEN_WRITES=true lets anyone who can reach {self.host}:{self.port} add and delete "
                "documents; set RAG_API_KEY, bind 127.0.0.1, or also set RAG_ALLOW_OPEN_WRITES_ON_NETWORK=true"
            )
        return None

    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    def feedback_mode(self) -> str:
        """``RAG_FEEDBACK``, or its default: open on a loopback host, key otherwise."""
        return self.feedback or ("open" if self.is_loopback() else "key")

    def feedback_path(self) -> Path:
        """The feedback file, beside the index (never part of its commits)."""
        return Path(self.index_dir) / "feedback" / "feedback.jsonl"

    def feedback_evaluation_dir(self) -> Path:
        """Where ``rag feedback eval`` writes its run, and where GET /feedback/summary reads the last one."""
        return Path(self.index_dir) / "feedback" / "evaluation"

    def index_settings(self) -> IndexSettings:
        return IndexSettings(
            chunker=ChunkerSettings(max_tokens=self.chunk_max_tokens, overlap_sentences=self.chunk_overlap_sentences),
            lexical=LexicalSettings(k1=self.bm25_k1, b=self.bm25_b),
            title_in_text=self.title_in_text,
            dense_kind=self.dense_index,
        )

    def retrieval_settings(self) -> RetrievalSettings:
        return RetrievalSettings(
            fusion=self.fusion,
            rrf_k=self.rrf_k,
            dense_weight=self.dense_weight,
            lexical_weight=self.lexical_weight,
            depth=self.retrieval_depth,
        )

    def ask_settings(self) -> AskSettings:
        return AskSettings(
            read_k=self.read_k,
            max_answers=self.max_answers,
            no_answer_threshold=self.no_answer_threshold,
            exact_batches=self.batch_exact,
        )


def onnx_cache_dir() -> Path:
    """Where ``rag export`` keeps the ONNX files: ``$XDG_CACHE_HOME/rag-onnx`` (``~/.cache/rag-onnx``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rag-onnx"


def base_model_dir() -> str | None:
    """``RAG_BASE_MODEL_DIR``: a copy of the bundled encoder's folder, for training where its package is not
    installed (None: the package's own)."""
    return os.environ.get("RAG_BASE_MODEL_DIR") or None
