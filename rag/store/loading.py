"""Reading a commit: the live commit's manifest, checked against the model and settings asked for, and its
segments, in any of the three formats this program reads.

- 3: segments, and commits that list each segment's deleted documents (what is written).
- 2: the same, without deletions; read as it is.
- 1: one folder per generation holding everything; read as one segment.

Formats 1 and 2 are written as format 3 by the next write (a program that reads only 2 would not leave the
deleted documents out: it refuses 3). ``read_commit`` returns plain parts (``Commit``); ``CorpusIndex.load``
(rag/store/index.py) makes the snapshot and starts again when the commit changed while it was read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rag.chunking import ChunkerSettings
from rag.errors import IndexCorrupt, IndexMismatch, IndexNotFound
from rag.lexical import LexicalSettings
from rag.store import commit as commits
from rag.store.commit import SEGMENTS, read_current
from rag.store.segment import SEGMENT_MANIFEST, IndexSettings, Segment

log = logging.getLogger(__name__)

FORMAT_VERSION = 3
READS = (1, 2, 3)


@dataclass(frozen=True)
class Commit:
    """A commit as read: its manifest, the settings it was built with, and its live segments."""

    manifest: dict[str, Any]
    settings: IndexSettings
    segments: list[Segment]


def read_commit(
    folder: Path,
    current: str | None,
    *,
    settings: IndexSettings | None,
    model: dict[str, Any] | None,
    verify: bool | str,
    reuse: Sequence[Segment] = (),
    reuse_settings: IndexSettings | None = None,
) -> Commit:
    """Read commit ``current`` of ``folder``; refuse one built with another model or other settings.

    ``reuse``: segments loaded from the same folder earlier (with ``reuse_settings``), not read again when the
    commit still lists them (segments never change)."""
    rebuild = f"rebuild it with: rag ingest <your files> --index {folder} --rebuild"
    if current is None:
        raise IndexNotFound(
            f"no index in {folder} (no {commits.CURRENT} file); build one with: rag ingest seeds/ --index {folder}"
        )
    gen = folder / current
    try:
        manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise IndexCorrupt(f"index {gen} has no readable manifest.json ({exc}); {rebuild}") from exc
    version = manifest.get("format_version")
    if version not in READS:
        raise IndexMismatch(
            f"index {gen} has format version {version}, this program reads {', '.join(map(str, READS))}; {rebuild}"
        )
    if model is not None and manifest["model"].get("checksum") != model.get("checksum"):
        raise IndexMismatch(
            f"index {gen} was built with embedding model {manifest['model'].get('id')} "
            f"(checksum {str(manifest['model'].get('checksum'))[:12]}), not the loaded {model.get('id')} "
            f"(checksum {str(model.get('checksum'))[:12]}); {rebuild}"
        )
    stored = settings_from_dict(manifest["settings"], dense_kind=(settings or IndexSettings()).dense_kind)
    # Other BM25 parameters need no re-embedding: the lexical index is rebuilt from the chunks below.
    relex = settings is not None and stored.lexical != settings.lexical
    if relex and settings is not None:
        stored = replace(stored, lexical=settings.lexical)
    if settings is not None and stored.as_dict() != settings.as_dict():
        raise IndexMismatch(
            f"index {gen} was built with settings {json.dumps(stored.as_dict(), sort_keys=True)}, "
            f"but {json.dumps(settings.as_dict(), sort_keys=True)} were asked for; {rebuild}"
        )
    dim = int(manifest["model"]["dim"])
    if version == 1:
        # Format 1: the generation folder holds one whole index, laid out as a segment. Read as one (its BM25 is
        # built again, with token counts), it is written in format 3 by the next write.
        log.info("index %s is in format 1: read as one segment; the next write saves it in format 3", gen)
        segments = [Segment.read(gen, stored, dim, verify=verify, rebuild=rebuild, legacy=manifest)]
        return Commit(manifest, stored, segments)
    known = {}
    if not relex and reuse_settings == stored:
        known = {s.name: s for s in reuse if s.stored_in(folder / SEGMENTS)}
    segments = []
    for entry in manifest["segments"]:
        path = folder / SEGMENTS / entry["name"]
        deleted = frozenset(entry.get("deleted", ()))
        segment = known.get(entry["name"])
        if segment is None:
            segment = Segment.read(path, stored, dim, verify=verify, rebuild=rebuild, relex=relex)
        if verify and segment.digest != entry.get("manifest_sha256", segment.digest):
            raise IndexCorrupt(f"segment {path} does not match its checksum in {gen}; {rebuild}")
        if segment.deleted != deleted:
            if not segment.deleted <= deleted:  # a deletion is never undone: start from the stored one
                segment = segment.base or segment
            view = segment.with_deleted(deleted)
            if view is None or view.deleted != deleted:
                raise IndexCorrupt(f"{gen} lists deleted documents segment {path} does not hold; {rebuild}")
            segment = view
        segments.append(segment)
    return Commit(manifest, stored, segments)


def stored_checksums(folder: str | Path) -> dict[str, str]:
    """doc id -> checksum of every document in the live commit, read from the manifests only (no vectors)."""
    folder = Path(folder)
    current = read_current(folder)
    if current is None:
        return {}
    manifest = json.loads((folder / current / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format_version") == 1:
        return {k: v["checksum"] for k, v in manifest["documents"].items()}
    out: dict[str, str] = {}
    for entry in manifest["segments"]:
        inner = json.loads((folder / SEGMENTS / entry["name"] / SEGMENT_MANIFEST).read_text(encoding="utf-8"))
        deleted = set(entry.get("deleted", ()))
        out.update({k: v["checksum"] for k, v in inner["documents"].items() if k not in deleted})
    return out


def index_exists(folder: str | Path) -> bool:
    return read_current(Path(folder)) is not None


def current_generation(folder: str | Path) -> str | None:
    """The live generation's folder name, or None when the folder holds no index."""
    return read_current(Path(folder))


def settings_from_dict(data: dict[str, Any], dense_kind: str) -> IndexSettings:
    return IndexSettings(
        chunker=ChunkerSettings(**data["chunker"]),
        lexical=LexicalSettings(**data["lexical"]),
        title_in_text=bool(data["title_in_text"]),
        dense_kind=dense_kind,
    )
