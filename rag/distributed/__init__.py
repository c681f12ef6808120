"""Ingest on Ray Data: files are read and parsed by Ray tasks, chunked and embedded by a pool of actors that
each load the model once, and the results are written as the same index folder ``rag ingest`` writes (or as a
sharded index, rag/shards.py). Needs the ``ray`` extra (``pip install '.[ray]'``); nothing else imports it.

The driver streams the actors' output into a staging folder (``DIR/.staging/``), one file per batch of
documents, before anything else happens. An interrupted run leaves those files; the next run with the same
settings skips every document already staged (or already in the index with the same checksum) and embeds only
the rest. Once all is staged the driver applies it to the index (``CorpusIndex.apply(prepared=...)``, the
local path's own incremental update, so keys, offsets and manifests come out as the local path writes them),
saves, and removes the staging folder.

Paths must be readable from every Ray node (a shared file system) when ``address`` names a cluster.

``driver`` runs the ingest, ``workers`` holds what runs on Ray (file reading tasks, the chunk-and-embed actor),
``staging`` the staged results.
"""

from __future__ import annotations

from rag.distributed.driver import INSTALL_HINT, RayOptions, RayStats, ingest, start_ray
from rag.distributed.staging import STAGING, Staging

__all__ = ["INSTALL_HINT", "STAGING", "RayOptions", "RayStats", "Staging", "ingest", "start_ray"]
