"""What runs on Ray: a task that reads one planned file into rows (one per document or skipped item), and the
actor that loads the embedder once and chunks and embeds batches of documents as the local ingest does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.chunking import ChunkerSettings, chunk_text
from rag.lexical import LexicalSettings
from rag.loaders import load_file
from rag.store import EMBED_BATCH, IndexSettings, indexed_text
from rag.types import Document


def load_rows(row: dict[str, Any], max_bytes: int) -> list[dict[str, Any]]:
    """One planned file (path and the id ``plan_files`` gave it) -> one row per document (or per skipped
    item), in file order."""
    path = Path(row["file"])
    if not path.exists():
        return [skip_row(row["order"], 0, str(path), "no such file or folder")]
    result = load_file(path, max_bytes, doc_id=row["doc_id"])
    out = [skip_row(row["order"], i, where, why) for i, (where, why) in enumerate(result.skipped)]
    for pos, doc in enumerate(result.documents):
        out.append(
            {
                "kind": "doc",
                "order": row["order"],
                "pos": pos,
                "id": doc.id,
                "title": doc.title,
                "text": doc.text,
                "url": doc.url or "",
                "published": doc.published or "",
                "meta": json.dumps(dict(doc.meta), ensure_ascii=False),
                "source": doc.source or "",
                "checksum": doc.checksum,
            }
        )
    return out


def skip_row(order: int, pos: int, where: str, why: str) -> dict[str, Any]:
    """A row that reports a skipped file or record (``source``: where, ``text``: why), in the documents' order."""
    empty = {k: "" for k in ("id", "title", "text", "url", "published", "meta", "source", "checksum")}
    return {**empty, "kind": "skip", "order": order, "pos": pos, "source": where, "text": why}


def document_of_row(row: dict[str, Any]) -> Document:
    """The Document a ``load_rows`` row carries (empty strings back to None, ``meta`` from its JSON)."""
    return Document(
        id=str(row["id"]),
        title=str(row["title"]),
        text=str(row["text"]),
        url=str(row["url"]) or None,
        published=str(row["published"]) or None,
        meta=json.loads(str(row["meta"])),
        source=str(row["source"]) or None,
    )


class ChunkEmbedActor:
    """A Ray actor: loads the embedder once, then chunks and embeds batches of documents exactly as
    ``CorpusIndex.apply`` does (same chunker, same title-in-text, same batches of EMBED_BATCH texts)."""

    def __init__(self, settings: dict[str, Any], backend: str, threads: int) -> None:
        from rag.embedding import Embedder

        started = time.perf_counter()
        self.settings = settings_from_dict(settings)
        self.embedder = Embedder(backend=backend, threads=threads).load()
        self.load_seconds = time.perf_counter() - started
        self.first = True

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        spans_per_doc: list[list[tuple[int, int]]] = []
        texts: list[str] = []
        for title, text in zip(batch["title"], batch["text"], strict=True):
            spans = [
                (s.start, s.end) for s in chunk_text(str(text), self.embedder.token_offsets, self.settings.chunker)
            ]
            spans_per_doc.append(spans)
            texts.extend(indexed_text(str(title), str(text)[a:b], self.settings.title_in_text) for a, b in spans)
        parts = [self.embedder.encode(texts[i : i + EMBED_BATCH]) for i in range(0, len(texts), EMBED_BATCH)]
        vectors = np.concatenate(parts) if parts else np.zeros((0, self.embedder.dim), dtype=np.float32)
        out_spans, out_vectors, row = [], [], 0
        for spans in spans_per_doc:
            out_spans.append(np.asarray(spans, dtype=np.int64).reshape(-1, 2).tobytes())
            out_vectors.append(np.ascontiguousarray(vectors[row : row + len(spans)], dtype=np.float32).tobytes())
            row += len(spans)
        n = len(spans_per_doc)
        load_seconds = [self.load_seconds if self.first else -1.0] + [-1.0] * (n - 1)
        self.first = False
        return {
            "id": batch["id"],
            "checksum": batch["checksum"],
            "spans": np.array(out_spans, dtype=object),
            "vectors": np.array(out_vectors, dtype=object),
            "dim": np.full(n, self.embedder.dim, dtype=np.int64),
            "compute_seconds": np.full(n, (time.perf_counter() - started) / max(n, 1)),
            "load_seconds": np.array(load_seconds),
        }


def settings_from_dict(data: dict[str, Any]) -> IndexSettings:
    return IndexSettings(
        chunker=ChunkerSettings(**data["chunker"]),
        lexical=LexicalSettings(**data["lexical"]),
        title_in_text=bool(data["title_in_text"]),
        dense_kind=str(data.get("dense_kind", "auto")),
    )
