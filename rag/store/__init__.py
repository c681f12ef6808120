"""The index: immutable segments, commits that list them, one writer at a time, merges in the background.

- ``segment``: documents, chunks, vectors, FAISS and BM25 of part of the corpus, written once, never changed.
- ``commit``: ``CURRENT`` -> ``gen-N/manifest.json`` -> the live segments; the write lock; garbage collection.
- ``columns``: a segment's chunks as arrays (``ChunkTable``), and a snapshot's rows over its segments (``Rows``).
- ``index``: ``CorpusIndex``, one snapshot over a commit's segments, searched as one (its invariants are in its
  docstring); ``apply`` (``changes``: the write planner), ``save``, ``load`` (``loading``: the three formats read).
- ``search``: dense and BM25 search over several segments (or shards) with whole-index statistics.
- ``remote``: ``RemoteIndex``, a snapshot whose shards are served by other processes (rag/distributed/routing.py).
- ``merge``: the policy that picks adjacent segments to write again as one.
- ``files``: checksums, fsync, document records.
"""

from rag.store.changes import EMBED_BATCH, Prepared, Progress
from rag.store.commit import CURRENT, KEEP_GENERATIONS, LOCK_FILE, SEGMENTS, read_current, write_lock
from rag.store.files import check_files, sha256
from rag.store.index import CorpusIndex, replace_segments
from rag.store.loading import FORMAT_VERSION, current_generation, index_exists, stored_checksums
from rag.store.remote import RemoteIndex
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
    "RemoteIndex",
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
