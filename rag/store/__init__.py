"""The index: immutable segments, commits that list them, one writer at a time, merges in the background.

- ``segment``: documents, chunks, vectors, FAISS and BM25 of part of the corpus, written once, never changed.
- ``commit``: ``CURRENT`` -> ``gen-N/manifest.json`` -> the live segments; the write lock; garbage collection.
- ``index``: ``CorpusIndex``, one snapshot over a commit's segments, searched as one; ``apply`` and ``save``.
- ``search``: dense and BM25 search over several segments (or shards) with whole-index statistics.
- ``merge``: the policy that picks adjacent segments to write again as one.
- ``files``: checksums, fsync, document records.
"""

from rag.store.commit import CURRENT, KEEP_GENERATIONS, LOCK_FILE, SEGMENTS, read_current, write_lock
from rag.store.files import check_files, sha256
from rag.store.index import (
    EMBED_BATCH,
    FORMAT_VERSION,
    CorpusIndex,
    Prepared,
    Progress,
    current_generation,
    index_exists,
    replace_segments,
    stored_checksums,
)
from rag.store.segment import IndexSettings, Segment, indexed_text

__all__ = [
    "CURRENT",
    "EMBED_BATCH",
    "FORMAT_VERSION",
    "KEEP_GENERATIONS",
    "LOCK_FILE",
    "SEGMENTS",
    "CorpusIndex",
    "IndexSettings",
    "Prepared",
    "Progress",
    "Segment",
    "check_files",
    "current_generation",
    "index_exists",
    "indexed_text",
    "read_current",
    "replace_segments",
    "sha256",
    "stored_checksums",
    "write_lock",
]
