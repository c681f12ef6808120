"""Every error the library raises, in one tree.

    RagError
    ├── LoadError            a file or record could not be read as a document
    ├── ValidationError      a caller passed a bad value (the message names it)
    ├── DocumentNotFound     an id that is not in the index
    ├── IndexNotFound        no index in the folder
    ├── IndexMismatch        an index built with another model or other settings
    ├── IndexCorrupt         an index folder whose files do not match its manifest
    ├── ReadOnlyIndex        a write to an index served read-only (a sharded index)
    ├── IndexBusy            another writer held the index's write lock for too long
    ├── ShardsUnavailable    no replica of a shard served elsewhere answered (rag serve --ray)
    └── ModelError           a model could not be loaded

The service maps these to HTTP status codes at its edge; library code never raises HTTP errors.
"""

from __future__ import annotations

__all__ = [
    "DocumentNotFound",
    "IndexBusy",
    "IndexCorrupt",
    "IndexMismatch",
    "IndexNotFound",
    "LoadError",
    "ModelError",
    "RagError",
    "ReadOnlyIndex",
    "ShardsUnavailable",
    "ValidationError",
]


class RagError(Exception):
    """Base class of the library's errors."""


class LoadError(RagError):
    """A file or record could not be turned into a document."""


class ValidationError(RagError, ValueError):
    """A bad argument; the message names the value and the accepted range."""


class DocumentNotFound(RagError, KeyError):
    def __init__(self, doc_id: str) -> None:
        super().__init__(doc_id)
        self.doc_id = doc_id

    def __str__(self) -> str:
        return f"no document with id {self.doc_id!r}"


class IndexNotFound(RagError):
    """The index folder holds no index."""


class IndexMismatch(RagError):
    """The index was built with another model or other settings than the ones asked for."""


class IndexCorrupt(RagError):
    """The index folder's files are missing or do not match its manifest."""


class ReadOnlyIndex(RagError):
    """A write was asked of an index that is served read-only (a sharded index: written by ``rag ingest``)."""


class IndexBusy(RagError):
    """Another process held the index's write lock for longer than a writer waits."""


class ShardsUnavailable(RagError):
    """No replica of a shard served by other processes answered (rag serve --ray)."""


class ModelError(RagError):
    """A model's files could not be found or loaded."""
