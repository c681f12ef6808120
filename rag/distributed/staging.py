"""The staging folder (``DIR/.staging/``): the actors' results written by the driver as they stream in, one
``.npz`` per batch, so an interrupted ingest resumes without embedding again what it already staged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.store import Prepared
from rag.store.files import fsync_dir

STAGING = ".staging"


class Staging:
    """Results staged by the driver as they stream in: one .npz per batch, written atomically."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any]) -> None:
        self.folder = folder
        stamp = folder / "staging.json"
        if folder.is_dir():
            try:
                same = json.loads(stamp.read_text(encoding="utf-8")) == fingerprint
            except (OSError, json.JSONDecodeError):
                same = False
            if not same:  # staged with another model or other settings: useless now
                shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(fingerprint, sort_keys=True), encoding="utf-8")

    def checksums(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in sorted(self.folder.glob("part-*.npz")):
            with np.load(part, allow_pickle=False) as arrays:
                out.update(zip(arrays["id"].tolist(), arrays["checksum"].tolist(), strict=True))
        return out

    def write(
        self, ids: Sequence[str], checksums: Sequence[str], spans: Sequence[bytes], vectors: Sequence[bytes], dim: int
    ) -> None:
        name = hashlib.sha256("\n".join(f"{i}\t{c}" for i, c in zip(ids, checksums, strict=True)).encode()).hexdigest()
        span_arrays = [np.frombuffer(s, dtype=np.int64).reshape(-1, 2) for s in spans]
        tmp = self.folder / f".tmp-{name[:24]}-{os.getpid()}.npz"
        np.savez(
            tmp,
            id=np.array(ids, dtype=str),
            checksum=np.array(checksums, dtype=str),
            count=np.array([len(s) for s in span_arrays], dtype=np.int64),
            spans=np.concatenate(span_arrays) if span_arrays else np.zeros((0, 2), dtype=np.int64),
            vectors=np.frombuffer(b"".join(vectors), dtype=np.float32).reshape(-1, dim),
        )
        with open(tmp, "rb") as fh:  # staged work survives a power loss, not only a crash
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / f"part-{name[:24]}.npz")
        fsync_dir(self.folder)

    def prepared(self) -> dict[str, tuple[str, Prepared]]:
        """doc id -> (checksum, (spans, vectors)) of everything staged."""
        out: dict[str, tuple[str, Prepared]] = {}
        for part in sorted(self.folder.glob("part-*.npz")):
            with np.load(part, allow_pickle=False) as arrays:
                row = 0
                for doc_id, checksum, count in zip(arrays["id"], arrays["checksum"], arrays["count"], strict=True):
                    n = int(count)
                    spans = [(int(a), int(b)) for a, b in arrays["spans"][row : row + n]]
                    out[str(doc_id)] = (str(checksum), (spans, arrays["vectors"][row : row + n]))
                    row += n
        return out

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
