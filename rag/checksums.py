"""sha256 of files, computed once per process for each unchanged file.

A start-up checks the same weights more than once (the index's model record, the ONNX cache key, the
calibration's tie to the reader): each is ~100 MB to hash, so the digest is remembered, keyed by the file's
path, size and modification time (a rewritten file is hashed again)."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_DIGESTS: dict[tuple[str, int, int], str] = {}
_LOCK = threading.Lock()


def sha256_file(path: str | Path) -> str:
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _LOCK:
        known = _DIGESTS.get(key)
    if known is not None:
        return known
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    with _LOCK:
        _DIGESTS[key] = digest
    return digest
