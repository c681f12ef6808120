"""Bytes on disk: checksums, fsync, the size-and-checksum check of a folder against its manifest, and the JSON
record of a document."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rag.errors import IndexCorrupt
from rag.types import Document

#: Files up to this size are hashed at every load; larger ones (vectors, FAISS, BM25 arrays) have their size
#: checked, and are hashed by ``rag verify`` (at 1M chunks the vectors alone are 1.5 GB: seconds to hash).
HASH_ON_LOAD_BYTES = 1 << 20


def sha256(path: Path) -> str:
    """Every byte read, every time (a check must see the disk, so not rag.checksums' memoised digest)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    """``files`` (sha256) and ``file_bytes`` (sizes) of every file under ``folder``, for its manifest."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {
        "files": {str(p.relative_to(folder)): sha256(p) for p in files},
        "file_bytes": {str(p.relative_to(folder)): p.stat().st_size for p in files},
    }


def check_files(folder: Path, manifest: Mapping[str, Any], *, full: bool, rebuild: str) -> None:
    """Every file the manifest lists is there with its size; its sha256 matches when ``full`` or when small.
    Manifests from before sizes were recorded get the full check."""
    sizes = manifest.get("file_bytes") or {}
    for name, digest in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            raise IndexCorrupt(f"index file {path} is missing; {rebuild}")
        size = path.stat().st_size
        if name in sizes and size != sizes[name]:
            raise IndexCorrupt(f"index file {path} has {size} bytes, its manifest says {sizes[name]}; {rebuild}")
        if (full or name not in sizes or size <= HASH_ON_LOAD_BYTES) and sha256(path) != digest:
            raise IndexCorrupt(f"index file {path} does not match its manifest's checksum; {rebuild}")


def write_json(path: Path, payload: Any) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    for path in [folder, *[p for p in folder.rglob("*") if p.is_dir()]]:
        fsync_dir(path)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def doc_record(doc: Document) -> dict[str, Any]:
    return {
        "id": doc.id,
        "title": doc.title,
        "text": doc.text,
        "url": doc.url,
        "published": doc.published,
        "meta": dict(doc.meta),
        "source": doc.source,
    }


def doc_from_record(rec: dict[str, Any]) -> Document:
    return Document(
        id=rec["id"],
        title=rec["title"],
        text=rec["text"],
        url=rec.get("url"),
        published=rec.get("published"),
        meta=rec.get("meta") or {},
        source=rec.get("source"),
    )
